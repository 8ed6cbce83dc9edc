// The fuzzer's only knowledge of the trusted component's pipe: frames (src/tee/wire.ts) carry a
// type, a request id, a code byte and a payload. Command parameters, results and storage
// requests are never decoded here: the hostile host replays and mutates the payloads a real
// session exchanged, so a change to a command's layout changes nothing in the fuzzer.
import { FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FrameDecoder, HEADER_BYTES, MAX_FRAME_BYTES, WIRE_VERSION, encodeFrame, type Frame } from '../src/envelope/wire.js';

export { FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, type Frame };

/** A frame's parts, the payload copied out of the read it came in. */
export interface RecordedFrame {
  type: number;
  id: number;
  code: number;
  payload: Buffer;
}

export function frameBytes(f: RecordedFrame): Buffer {
  return encodeFrame(f.type, f.id, f.code, f.payload);
}

/** Splits a byte stream into frames; a stream that breaks the framing throws (RangeError). */
export class FrameReader {
  private readonly decoder: FrameDecoder;

  constructor(onFrame: (f: RecordedFrame) => void) {
    this.decoder = new FrameDecoder((f) => onFrame({ type: f.type, id: f.id, code: f.code, payload: Buffer.from(f.payload) }));
  }

  push(chunk: Uint8Array): void {
    this.decoder.push(Buffer.from(chunk));
  }
}

/**
 * Bytes that break the framing itself: the trusted process must end (exit status 2, "no longer
 * speaks the protocol"), never crash. Sent last in a case, since nothing after them is read.
 */
export const FRAMING_ATTACKS: readonly ((f: RecordedFrame) => Buffer)[] = [
  (f) => {
    const b = frameBytes(f);
    b[4] = WIRE_VERSION + 1; // another wire version
    return b;
  },
  () => Buffer.from([0, 0, 0, HEADER_BYTES]), // shorter than a frame header
  () => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(MAX_FRAME_BYTES + 1);
    return b;
  },
];

/** The exit status the trusted process ends with after a framing error. */
export const FRAMING_EXIT_CODE = 2;
