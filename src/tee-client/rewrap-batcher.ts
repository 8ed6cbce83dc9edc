// Group re-wraps cross to the trusted component in batches (command 0x0e): the hot path of the
// protected topics on the host side, behind `TrustedComponent.groupRewrap` and `groupRewrapTo`.
import { Reader, utf8Name } from '../envelope/bytes.js';
import { SENDER_FIELD_AT, senderFieldEnd } from '../envelope/envelope-layout.js';
import { TeeError, codeFromNumber } from '../envelope/errors.js';
import type { RewrapReceiver, Transport } from './host.js';
import { CMD, GROUP_REWRAP_BATCH_MAX } from '../envelope/wire.js';

/**
 * One message of a group re-wrap batch, waiting for the end of this turn of the event loop. A class,
 * not an object literal: see MessageRecord in src/broker/message.ts (V8's pretenuring).
 */
class BatchEntry {
  declare readonly handle: number;
  declare readonly header: Uint8Array;
  declare readonly topic: Uint8Array;
  /** undefined: the sender the header names, its `str8 sender` copied as is (up to `senderEnd`). */
  declare readonly sender: Uint8Array | undefined;
  declare readonly senderEnd: number;
  declare readonly to: RewrapReceiver;

  constructor(handle: number, header: Uint8Array, topic: Uint8Array, sender: Uint8Array | undefined, senderEnd: number, to: RewrapReceiver) {
    this.handle = handle;
    this.header = header;
    this.topic = topic;
    this.sender = sender;
    this.senderEnd = senderEnd;
    this.to = to;
  }
}

/**
 * Batches that may wait for the trusted component at once. While they do, new messages gather into
 * the next batch: under load a batch grows to what arrived during one round trip (fewer, larger
 * frames, fewer wake-ups of the trusted process), while a message that finds nothing in flight
 * leaves at the end of its turn.
 */
const BATCHES_IN_FLIGHT = 1;

/**
 * @internal (exported for its tests) Group re-wraps cross to the trusted component in batches, one
 * command 0x0e each: one frame, one dispatch and one answer per batch instead of per message, each
 * message still answered or refused on its own. A batch leaves at the end of the turn of the event
 * loop that asked for it (see `schedule`), or, while one waits (BATCHES_IN_FLIGHT), as soon as that
 * one is answered.
 */
export class RewrapBatcher {
  private entries: BatchEntry[] = [];
  private size = 2;
  private inFlight = 0;
  private scheduled = false;
  /** Topic of the message added last: a change tells messages of many publishers from one stream. */
  private lastTopic = '';

  constructor(private readonly t: Transport) {}

  /** `sender` undefined: the one the header names. */
  add(handle: number, header: Uint8Array, topic: string, sender: string | undefined, to: RewrapReceiver): void {
    const topicBytes = utf8Name(topic);
    let senderBytes: Uint8Array | undefined;
    let senderEnd = 0;
    let senderLength: number;
    if (sender !== undefined) {
      senderBytes = utf8Name(sender);
      senderLength = senderBytes.length;
      if (senderLength > 255) return refuseLater(to, new TeeError('bad-identity', 'sender identity longer than 255 bytes'));
    } else {
      senderEnd = senderFieldEnd(header);
      if (senderEnd < 0) return refuseLater(to, new TeeError('malformed-header', 'header too short for the sender it names'));
      senderLength = senderEnd - SENDER_FIELD_AT - 1;
    }
    if (topicBytes.length > 0xffff || header.length > 0xffff) return refuseLater(to, new TeeError('bad-request', 'topic or header longer than 65535 bytes'));
    this.entries.push(new BatchEntry(handle, header, topicBytes, senderBytes, senderEnd, to));
    this.size += 4 + 2 + topicBytes.length + 1 + senderLength + 2 + header.length;
    if (this.entries.length >= GROUP_REWRAP_BATCH_MAX) this.flush();
    else {
      const spread = topic !== this.lastTopic;
      this.lastTopic = topic;
      this.schedule(spread);
    }
  }

  /**
   * A batch leaves at the end of the current callback, so one publisher's message is on its way
   * before the turn's other reads are handled. Messages on changing topics (many publishers, each
   * socket with a message or two, as in a ward of ECG patients) wait for the end of the poll phase
   * instead, so the sockets read together share one batch and one wake-up of the trusted process.
   */
  private schedule(spread = false): void {
    if (this.scheduled || this.inFlight >= BATCHES_IN_FLIGHT || this.entries.length === 0) return;
    this.scheduled = true;
    if (spread) setImmediate(this.flush);
    else process.nextTick(this.flush);
  }

  private readonly flush = (): void => {
    this.scheduled = false;
    const batch = this.entries;
    if (batch.length === 0) return;
    const params = Buffer.allocUnsafe(this.size);
    this.entries = [];
    this.size = 2;
    let at = params.writeUInt16BE(batch.length, 0);
    for (const e of batch) {
      at = params.writeUInt32BE(e.handle, at);
      at = params.writeUInt16BE(e.topic.length, at);
      params.set(e.topic, at);
      at += e.topic.length;
      if (e.sender !== undefined) {
        params[at++] = e.sender.length;
        params.set(e.sender, at);
        at += e.sender.length;
      } else {
        // `str8 sender` as the header has it
        const h = e.header;
        for (let i = SENDER_FIELD_AT; i < e.senderEnd; i++) params[at++] = h[i]!;
      }
      at = params.writeUInt16BE(e.header.length, at);
      params.set(e.header, at);
      at += e.header.length;
    }
    this.inFlight++;
    this.t.call(CMD.groupRewrapBatch, params).then(
      (answer) => this.answered(batch, answer, undefined),
      (err: Error) => this.answered(batch, undefined, err),
    );
  };

  private answered(batch: readonly BatchEntry[], answer: Uint8Array | undefined, err: Error | undefined): void {
    this.inFlight--;
    // the next batch leaves before this one's deliveries are written
    this.schedule();
    if (answer !== undefined) settleBatch(batch, answer);
    else {
      const e = err instanceof TeeError ? err : new TeeError('internal', err?.message ?? 'no answer');
      for (const entry of batch) answer1(entry.to, undefined, e);
    }
  }
}

/** `u16 n | n x (u8 status | bytes16 part or UTF-8 detail)`, one per message in the order sent. */
function settleBatch(batch: readonly BatchEntry[], answer: Uint8Array): void {
  let done = 0;
  try {
    const r = new Reader(answer);
    const n = r.u16();
    if (n !== batch.length) throw new TeeError('internal', `group re-wrap batch answered ${n} messages of ${batch.length}`);
    for (; done < n; done++) {
      const status = r.u8();
      const body = r.bytes16();
      const to = batch[done]!.to;
      if (status === 0) answer1(to, body, undefined);
      else answer1(to, undefined, new TeeError(codeFromNumber(status), Buffer.from(body).toString()));
    }
  } catch (err) {
    const e = err instanceof TeeError ? err : new TeeError('internal', `unreadable group re-wrap answer: ${(err as Error).message}`);
    for (; done < batch.length; done++) answer1(batch[done]!.to, undefined, e);
  }
}

/** One receiver's answer; a receiver that throws is reported and does not disturb the others. */
function answer1(to: RewrapReceiver, part: Uint8Array | undefined, err: TeeError | undefined): void {
  try {
    if (part !== undefined) to.rewrapped(part);
    else to.refused(err!);
  } catch (thrown) {
    process.emitWarning(thrown as Error);
  }
}

function refuseLater(to: RewrapReceiver, err: TeeError): void {
  process.nextTick(() => answer1(to, undefined, err));
}

/** The Promise form of a receiver (calls off the hot path, tests). */
export class PromisedPart implements RewrapReceiver {
  rewrapped!: (part: Uint8Array) => void;
  refused!: (err: TeeError) => void;
  readonly promise = new Promise<Uint8Array>((resolve, reject) => {
    this.rewrapped = resolve;
    this.refused = reject;
  });
}
