// The one re-wrap command (0x0e): the messages the host gathered in one turn of its event loop,
// tens of them under load; a single message is a batch of one. A message of the usual kind (a
// formed group, the stream of its latest publisher, its stream key opened) costs a share of one
// AES call, one AEAD and no parsing: its fields stay offsets into the frame and its shared part is
// sealed straight into the answer. Per-message views and objects were a quarter of this process's
// time (their allocation and the garbage collection after it). Any other message takes
// rewrapMessage (groups.ts), which checks each step in turn and names the exact refusal.
import { Reader, equalBytesAt } from '../envelope/bytes.js';
import { TEE_ERRORS, TeeError } from '../envelope/errors.js';
import type { StreamKey } from './aead.js';
import type { TeeState } from './core.js';
import {
  SENDER_FIELD_AT, SEQ_FIELD_AT, STREAM_DERIVED_BYTES, STREAM_PART_BYTES, groupPartLength, hasTopicTag, isSenderHeaderOf, streamPartAt,
} from '../envelope/envelope-layout.js';
import { GROUP_REWRAP_BATCH_MAX } from '../envelope/wire.js';
import { rewrapMessage, wrapStreamAt } from './groups.js';

/**
 * Where each message's fields are, in the frame: per message FIELDS numbers in one Uint32Array
 * (no object per message), read through these names.
 */
const HANDLE = 0;
const TOPIC_AT = 1;
const TOPIC_LENGTH = 2;
const SENDER_AT = 3;
const SENDER_LENGTH = 4;
const HEADER_AT = 5;
const HEADER_LENGTH = 6;
/** The length of its shared part if it can take the fast path (0: it cannot). */
const PART_LENGTH = 7;
const FIELDS = 8;

/** A message's answer: `u8 status | u16 length | shared part, or the refusal's UTF-8 detail`. */
const ANSWER_HEAD = 3;

/**
 * Consecutive messages in one publisher's stream (messages [from, to) of the batch), whose
 * keystreams one AES call derived with `key`: a call costs ~1 µs whatever its length, so a run of
 * them shares it. At most RUN_MAX messages (16 KiB of keystream).
 */
interface Run {
  readonly key: StreamKey | undefined;
  readonly keystreams: Buffer | undefined;
  readonly from: number;
  readonly to: number;
}
const RUN_MAX = 256;

type BatchResult = Uint8Array | TeeError;

/**
 * `u16 n | n x (u32 handle | str16 topic | str8 sender | bytes16 header)` -> `u16 n | n x answer`,
 * in order. The whole frame is read (and refused if malformed) before any message is worked on; a
 * refusal refuses only its message. Synchronous unless some message waits for a key or a group.
 */
export function groupRewrapBatch(state: TeeState, params: Uint8Array, toTeeError: (err: unknown) => TeeError): Uint8Array | Promise<Uint8Array> {
  const r = new Reader(params);
  const n = r.u16('message count');
  if (n > GROUP_REWRAP_BATCH_MAX) throw new TeeError('bad-request', `a batch carries at most ${GROUP_REWRAP_BATCH_MAX} messages, not ${n}`);
  const at = new Uint32Array(n * FIELDS);
  // the answer's size if every message takes the fast path (its part's length follows from its header)
  let size = 2;
  for (let i = 0; i < n; i++) {
    const o = i * FIELDS;
    at[o + HANDLE] = r.u32('group handle');
    at[o + TOPIC_LENGTH] = r.u16('topic');
    at[o + TOPIC_AT] = r.skip(at[o + TOPIC_LENGTH]!, 'topic');
    at[o + SENDER_LENGTH] = r.u8('sender');
    at[o + SENDER_AT] = r.skip(at[o + SENDER_LENGTH]!, 'sender');
    at[o + HEADER_LENGTH] = r.u16('header');
    at[o + HEADER_AT] = r.skip(at[o + HEADER_LENGTH]!, 'header');
    at[o + PART_LENGTH] = at[o + HEADER_LENGTH]! > SENDER_FIELD_AT ? groupPartLength(params, at[o + HEADER_AT]!) : 0;
    size += ANSWER_HEAD + at[o + PART_LENGTH]!;
  }
  r.end('group re-wrap batch');

  const out = Buffer.allocUnsafe(size);
  out[0] = n >> 8;
  out[1] = n & 0xff;
  /** Only when some message took the general path: every message's answer, to encode at the end. */
  let slow: (BatchResult | Promise<BatchResult>)[] | undefined;
  let pos = 2;
  let run: Run = { key: undefined, keystreams: undefined, from: 0, to: 0 };
  try {
    for (let i = 0; i < n; i++) {
      const o = i * FIELDS;
      const length = at[o + PART_LENGTH]!;
      if (length > 0 && i >= run.to) {
        run.keystreams?.fill(0);
        run = streamRun(state, params, at, i, n);
      }
      if (length > 0 && rewrapInPlace(state, params, at, o, out, pos + ANSWER_HEAD, run, i)) {
        out[pos] = 0;
        out[pos + 1] = length >> 8;
        out[pos + 2] = length & 0xff;
        if (slow !== undefined) slow.push(out.subarray(pos + ANSWER_HEAD, pos + ANSWER_HEAD + length));
      } else {
        slow ??= answersSoFar(out, i);
        slow.push(general(state, params, at, o, toTeeError));
      }
      pos += ANSWER_HEAD + length;
    }
  } finally {
    run.keystreams?.fill(0);
  }
  if (slow === undefined) return out;
  if (!slow.some((a) => a instanceof Promise)) return encodeAnswers(slow as BatchResult[]);
  return Promise.all(slow).then(encodeAnswers);
}

/**
 * The run that starts at message i: the messages from i on to the same group whose headers carry
 * the stream part of the group's latest stream, their keystreams derived together. Only a guess of
 * which messages will take the fast path (rewrapInPlace checks each in full); a run of none when
 * the group has no such stream.
 */
function streamRun(state: TeeState, src: Uint8Array, at: Uint32Array, i: number, n: number): Run {
  const o = i * FIELDS;
  const s = state.groups.peek(at[o + HANDLE]!)?.ready?.last;
  const opened = s?.opened;
  if (s === undefined || opened === undefined) return { key: undefined, keystreams: undefined, from: i, to: i + 1 };
  const partAt = streamPartAt(s.senderBytes.length);
  const seqAts: number[] = [];
  let j = i;
  for (; j < n && j - i < RUN_MAX; j++) {
    const p = j * FIELDS;
    if (at[p + HANDLE] !== at[o + HANDLE] || at[p + HEADER_LENGTH]! < partAt + STREAM_PART_BYTES || !equalBytesAt(opened.part, src, at[p + HEADER_AT]! + partAt, STREAM_PART_BYTES)) break;
    seqAts.push(at[p + HEADER_AT]! + SEQ_FIELD_AT);
  }
  if (j === i) return { key: undefined, keystreams: undefined, from: i, to: i + 1 };
  return { key: opened.key, keystreams: opened.key.derive(src, seqAts), from: i, to: j };
}

/**
 * The fast path of message i (fields at `o`), read in place: a formed group for its topic under
 * the current epoch, the stream of the group's latest sender, a well-formed header of that sender
 * for this topic, a cached key, and the stream's key in the run. Writes its shared part to
 * out[partAt, +PART_LENGTH) and returns true; false, having changed nothing, when the message needs
 * the general path.
 */
function rewrapInPlace(state: TeeState, src: Uint8Array, at: Uint32Array, o: number, out: Uint8Array, partAt: number, run: Run, i: number): boolean {
  const handle = at[o + HANDLE]!;
  const entry = state.groups.peek(handle);
  if (entry === undefined || entry.epoch !== state.epoch || !equalBytesAt(entry.topicBytes, src, at[o + TOPIC_AT]!, at[o + TOPIC_LENGTH]!)) return false;
  const g = entry.ready;
  const s = g?.last;
  if (g === undefined || s === undefined || !equalBytesAt(s.senderBytes, src, at[o + SENDER_AT]!, at[o + SENDER_LENGTH]!)) return false;
  const headerAt = at[o + HEADER_AT]!;
  const headerLength = at[o + HEADER_LENGTH]!;
  if (!isSenderHeaderOf(src, s.senderBytes, headerAt, headerLength) || !hasTopicTag(src, entry.topicTag, headerAt, headerLength)) return false;
  // the sender is still enrolled, its key cached (a rotation would have moved the epoch on)
  const keys = state.keysOf(s.sender);
  if (keys === undefined || keys instanceof Promise || run.key === undefined || run.key !== s.opened?.key) return false;
  const keystream = run.keystreams!.subarray((i - run.from) * STREAM_DERIVED_BYTES, (i - run.from + 1) * STREAM_DERIVED_BYTES);
  if (!wrapStreamAt(g, s, keystream, src, headerAt, out, partAt, at[o + PART_LENGTH]!)) return false;
  state.groups.get(handle); // the group is used: newest in the table, as the general path leaves it
  state.counters.rewrapCalls++;
  return true;
}

/** The answers written so far (all fast), as parts. */
function answersSoFar(out: Buffer, count: number): BatchResult[] {
  const parts: BatchResult[] = [];
  let pos = 2;
  for (let i = 0; i < count; i++) {
    const length = (out[pos + 1]! << 8) | out[pos + 2]!;
    parts.push(out.subarray(pos + ANSWER_HEAD, pos + ANSWER_HEAD + length));
    pos += ANSWER_HEAD + length;
  }
  return parts;
}

/** One message through the general path (rewrapMessage), with views of its fields. */
function general(state: TeeState, src: Uint8Array, at: Uint32Array, o: number, toTeeError: (err: unknown) => TeeError): BatchResult | Promise<BatchResult> {
  const view = (from: number, length: number): Uint8Array => src.subarray(from, from + length);
  try {
    const part = rewrapMessage(state, at[o + HANDLE]!, view(at[o + HEADER_AT]!, at[o + HEADER_LENGTH]!), view(at[o + TOPIC_AT]!, at[o + TOPIC_LENGTH]!), view(at[o + SENDER_AT]!, at[o + SENDER_LENGTH]!));
    return part instanceof Promise ? part.catch(toTeeError) : part;
  } catch (err) {
    return toTeeError(err);
  }
}

/** `u16 n | n x answer`: the encoding of a batch in which some message took the general path. */
function encodeAnswers(answers: readonly BatchResult[]): Uint8Array {
  const bodies = answers.map((a) => (a instanceof TeeError ? Buffer.from(a.detail, 'utf8').subarray(0, 0xffff) : a));
  let size = 2;
  for (const b of bodies) size += ANSWER_HEAD + b.length;
  const out = Buffer.allocUnsafe(size);
  out[0] = answers.length >> 8;
  out[1] = answers.length & 0xff;
  let pos = 2;
  for (let i = 0; i < answers.length; i++) {
    const a = answers[i]!;
    const b = bodies[i]!;
    out[pos] = a instanceof TeeError ? TEE_ERRORS[a.code] : 0;
    out[pos + 1] = b.length >> 8;
    out[pos + 2] = b.length & 0xff;
    out.set(b, pos + ANSWER_HEAD);
    pos += ANSWER_HEAD + b.length;
  }
  return out;
}
