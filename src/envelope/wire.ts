// Framing of the command interface (docs/protocol.md §8): `u32 length | body`, body =
// `u8 wire version | u8 frame type | u32 request id | rest`. Request ids let calls pipeline;
// the trusted side uses its own ids for storage requests to the host (OP-TEE's supplicant RPC).

export const WIRE_VERSION = 1;
export const FRAME_COMMAND = 1; // host -> tee: u8 command | parameters
export const FRAME_RESULT = 2; // tee -> host: u8 status (0 ok, else error number) | result or UTF-8 message
export const FRAME_STORE_REQUEST = 3; // tee -> host: u8 op | u16 name length | name | blob (put)
export const FRAME_STORE_REPLY = 4; // host -> tee: u8 status (0 found/done, 1 absent, 2 failed) | blob
export const HEADER_BYTES = 6; // version, type, id: after the u32 length
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

/** Command ids. 0x08 (per-recipient re-wrap), 0x09 (paper-mode re-encryption) and 0x0d (single group re-wrap) are retired: never reuse them. */
export const CMD = {
  init: 0x01,
  info: 0x02,
  enrol: 0x03,
  rotate: 0x04,
  revoke: 0x05,
  loadPolicy: 0x06,
  setEndorsement: 0x07,
  isEnrolled: 0x0a,
  stats: 0x0b,
  formGroup: 0x0c,
  groupRewrapBatch: 0x0e,
  setMode: 0x0f,
  setOperator: 0x10,
} as const;

/** An init field the host leaves to the sealed provisioning record. */
export const NOT_ASKED = 0xff;

/** Most messages one batched group re-wrap (0x0e) may carry. */
export const GROUP_REWRAP_BATCH_MAX = 4096;

/** The stats command's answer: one u64 per field, in this order. */
export const STATS_FIELDS = [
  'calls', 'rewrapCalls', 'rewrapped', 'groupsFormed', 'refusals', 'rejectedMessages', 'enrolments', 'rotations',
  'revocations', 'cacheHits', 'cacheMisses', 'storeReads', 'storeWrites', 'cacheSize',
] as const;

export type TeeStatsCounters = Record<(typeof STATS_FIELDS)[number], number>;

/** The host's side of the storage RPC (the tee-supplicant's role in OP-TEE). */
export interface SealedStorage {
  get(name: string): Promise<Uint8Array | undefined>;
  put(name: string, blob: Uint8Array): Promise<void>;
  delete(name: string): Promise<void>;
}

export const STORE_GET = 1;
export const STORE_PUT = 2;
export const STORE_DELETE = 3;
export const STORE_OK = 0;
export const STORE_ABSENT = 1;
export const STORE_FAILED = 2;

export interface Frame {
  type: number;
  id: number;
  /** First byte after the id (command, status or op). */
  code: number;
  payload: Buffer;
}

/**
 * Writes frames so that everything written in one turn of the event loop leaves in one system
 * call (pipelined calls and their results cross the pipe together).
 */
export function corkedWriter(stream: NodeJS.WritableStream & { cork(): void; uncork(): void }): (frame: Uint8Array) => void {
  let corked = false;
  const uncork = (): void => {
    corked = false;
    stream.uncork();
  };
  return (frame) => {
    if (!corked) {
      corked = true;
      stream.cork();
      process.nextTick(uncork);
    }
    stream.write(frame);
  };
}

/** One allocation per frame: header and payload written into a single buffer. */
export function encodeFrame(type: number, id: number, code: number, ...payload: readonly Uint8Array[]): Buffer {
  let size = HEADER_BYTES + 1; // + code byte
  for (const p of payload) size += p.length;
  const out = Buffer.allocUnsafe(4 + size);
  out.writeUInt32BE(size, 0);
  out[4] = WIRE_VERSION;
  out[5] = type;
  out.writeUInt32BE(id >>> 0, 6);
  out[10] = code;
  let at = 11;
  for (const p of payload) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Incremental decoder for a byte stream; calls `onFrame` per complete frame. */
export class FrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    let buf = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let at = 0;
    while (buf.length - at >= 4) {
      const size = buf.readUInt32BE(at);
      if (size < 7 || size > MAX_FRAME_BYTES) throw new RangeError(`frame of ${size} bytes is out of bounds`);
      if (buf.length - at - 4 < size) break;
      const body = buf.subarray(at + 4, at + 4 + size);
      if (body[0] !== WIRE_VERSION) throw new RangeError(`wire version ${body[0]} is not supported`);
      this.onFrame({ type: body[1]!, id: body.readUInt32BE(2), code: body[6]!, payload: body.subarray(7) });
      at += 4 + size;
    }
    buf = buf.subarray(at);
    // Copy the tail so a large chunk's buffer is not kept alive by a few leftover bytes.
    this.pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
  }
}
