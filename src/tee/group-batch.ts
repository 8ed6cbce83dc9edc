// The batched group re-wrap (command 0x0e): the messages the host gathered in one turn of its
// event loop, tens of them under load. A message of the usual kind (a formed group, the stream of
// its latest publisher, a cached key) costs no object and no view here: its fields stay offsets
// into the frame, its data key is opened into one scratch buffer and its shared part sealed
// straight into the answer. Per-message views and objects were a quarter of this process's time
// (their allocation and the garbage collection after it). Any other message takes groupRewrap
// (groups.ts), which checks each step in turn and names the exact refusal.
import { Reader } from '../envelope/bytes.js';
import { TEE_ERRORS, TeeError } from '../envelope/errors.js';
import type { TeeState } from './core.js';
import { SENDER_FIELD_AT, groupPartLength } from '../envelope/envelope-layout.js';
import { GROUP_REWRAP_BATCH_MAX } from '../envelope/wire.js';
import { groupRewrap, groupRewrapAt, prepareBatch } from './groups.js';

/**
 * Per message: handle, topic offset and length, sender offset and length, header offset and length,
 * and the length of its shared part if it takes the fast path (0: it cannot).
 */
const FIELDS = 8;
const SENDER_FIELD = 3;

/** A message's answer: `u8 status | u16 length | shared part, or the refusal's UTF-8 detail`. */
const ANSWER_HEAD = 3;

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
    at[o] = r.u32('group handle');
    at[o + 2] = r.u16('topic');
    at[o + 1] = r.skip(at[o + 2]!, 'topic');
    at[o + 4] = r.u8('sender');
    at[o + 3] = r.skip(at[o + 4]!, 'sender');
    at[o + 6] = r.u16('header');
    at[o + 5] = r.skip(at[o + 6]!, 'header');
    at[o + 7] = fastPartLength(params, at[o + 5]!, at[o + 6]!);
    size += ANSWER_HEAD + at[o + 7]!;
  }
  r.end('group re-wrap batch');

  const out = Buffer.allocUnsafe(size);
  out[0] = n >> 8;
  out[1] = n & 0xff;
  /** Only when some message took the general path: every message's answer, to encode at the end. */
  let slow: (BatchResult | Promise<BatchResult>)[] | undefined;
  const prepared = prepareBatch(state, params, at, n, FIELDS, SENDER_FIELD);
  try {
    let pos = 2;
    for (let i = 0; i < n; i++) {
      const o = i * FIELDS;
      const length = at[o + 7]!;
      const fast =
        length > 0 &&
        groupRewrapAt(state, at[o]!, params, at[o + 1]!, at[o + 2]!, at[o + 3]!, at[o + 4]!, at[o + 5]!, at[o + 6]!, out, pos + ANSWER_HEAD, length);
      if (fast) {
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
    // keystreams made ahead serve this batch only (the waiting messages compute their own)
    for (const key of prepared) key.dropPrepared();
  }
  if (slow === undefined) return out;
  if (!slow.some((a) => a instanceof Promise)) return encodeAnswers(slow as BatchResult[]);
  return Promise.all(slow).then(encodeAnswers);
}

/** The part length of a well-formed sender header at src[at, +length), 0 when it cannot be one (then the general path decides). */
function fastPartLength(src: Uint8Array, at: number, length: number): number {
  return length > SENDER_FIELD_AT ? groupPartLength(src, at) : 0;
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

/** One message through groupRewrap, with views of its fields. */
function general(state: TeeState, src: Uint8Array, at: Uint32Array, o: number, toTeeError: (err: unknown) => TeeError): BatchResult | Promise<BatchResult> {
  const view = (from: number, length: number): Uint8Array => src.subarray(from, from + length);
  try {
    const part = groupRewrap(state, at[o]!, view(at[o + 5]!, at[o + 6]!), view(at[o + 1]!, at[o + 2]!), view(at[o + 3]!, at[o + 4]!));
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
