// Recipient groups: trusted work per message that does not grow with the number of subscribers.
// A group is a list of readers of ONE topic that this component checked (enrolled, not revoked,
// the policy lets them read the topic) and gave a fresh random group key, wrapped once for each
// of them: the member parts, which the host keeps and reuses. A message's data key is then wrapped
// once, under the group key, into the part of the header all its recipients share.
//
// The host names groups by handles of its choosing. A handle only ever maps to a group formed
// here, for one topic, under the current policy, revocations and keys (the epoch): a hostile host
// can misuse handles only to get refusals. Any change of policy, a revocation or a key rotation
// moves the epoch on, and every older group is refused as stale until the host forms it again.
import { randomBytes } from 'node:crypto';
import { equalBytes, equalBytesAt, fromUtf8, utf8 } from '../envelope/bytes.js';
import {
  GROUP_ID_BYTES, GROUP_PART_TAIL, KEY_BYTES, NONCE_BYTES, encodeGroupMemberPart, encodeGroupMessagePart, fillAd, groupKeyAd, hasTopicTag,
  groupPartLength, groupWrapAd, groupWrapAdTemplate, isSenderHeaderOf, senderHeaderNonceAt, senderWrapAdTemplate, writeGroupPartAt, WRAPPED_KEY_BYTES, type AdTemplate,
} from '../envelope/envelope-layout.js';
import { TeeError } from '../envelope/errors.js';
import type { ClientKeys } from './keys.js';
import type { TeeState } from './core.js';
import type { Lru } from '../envelope/lru.js';
import { randomNonce } from '../envelope/nonces.js';
import { GcmKey } from './gcm.js';
import { forEachRecipient, isTopicName, openSenderHeader, topicTag, type OpenedHeader, type RecipientOutput } from './rewrap.js';

/**
 * What every message of one publisher to one group shares, made (after the publish checks) on its
 * first message: the two associated data, only sequence number and payload nonce rewritten per
 * message. Valid as long as its group: any change that could alter the checks moves the epoch on.
 */
interface SenderStream {
  readonly sender: string;
  readonly senderBytes: Uint8Array;
  readonly openAd: AdTemplate;
  readonly sealAd: AdTemplate;
}

/**
 * Publishers remembered per group: a topic usually has one, or a few. Bounds the memory the host
 * can make this component spend on streams (~350 bytes each) to 16 × the group table; more
 * publishers on one topic than this only fall back to the general path.
 */
const STREAMS_KEPT = 16;

interface FormedGroup {
  readonly id: Buffer;
  /** The group key, as the AEAD that wraps each message's data key under it. */
  readonly key: GcmKey;
  /** Per member, in the host's order: its member part, or the wire number of a refusal. */
  readonly outputs: RecipientOutput[];
  readonly streams: Map<string, SenderStream>;
  /** The stream of the latest message: found by comparing sender bytes, without decoding. */
  last?: SenderStream;
}

export interface GroupEntry {
  readonly topic: string;
  readonly topicBytes: Uint8Array;
  /** The topic tag every sender header for this topic carries. */
  readonly topicTag: Uint8Array;
  readonly epoch: number;
  readonly formed: Promise<FormedGroup>;
  /** The group once formed: messages then need no turn of the event loop. */
  ready?: FormedGroup;
}

/** Groups by host handle; an evicted or replaced group is simply forgotten. */
export type GroupTable = Lru<number, GroupEntry>;

/**
 * Forms the group `handle` for `topic` (replacing what the handle named before). Registered before
 * the first await, so a re-wrap pipelined right behind this call finds the group.
 */
export function formGroup(state: TeeState, handle: number, topic: string, members: readonly string[]): Promise<{ id: Uint8Array; outputs: RecipientOutput[] }> {
  if (!isTopicName(topic)) throw new TeeError('bad-request', `invalid topic name ${JSON.stringify(topic)}`);
  const formed = (async (): Promise<FormedGroup> => {
    const id = randomBytes(GROUP_ID_BYTES);
    const key = randomBytes(KEY_BYTES);
    const nonces = randomNonce(NONCE_BYTES * members.length);
    const outputs = await forEachRecipient(state, topic, members, (_r, rb, keys, i) => {
      const memberNonce = nonces.subarray(i * NONCE_BYTES, (i + 1) * NONCE_BYTES);
      return encodeGroupMemberPart(rb, memberNonce, keys.wrap.seal(memberNonce, key, groupKeyAd(topic, rb, id)));
    });
    state.counters.groupsFormed++;
    for (const o of outputs) if (typeof o !== 'number') state.counters.rewrapped++;
    const aead = new GcmKey(key);
    key.fill(0);
    return { id, key: aead, outputs, streams: new Map() };
  })();
  const entry: GroupEntry = { topic, topicBytes: utf8(topic), topicTag: topicTag(topic), epoch: state.epoch, formed };
  state.groups.set(handle, entry);
  formed.then(
    (g) => {
      entry.ready = g;
    },
    () => {
      if (state.groups.peek(handle) === entry) state.groups.delete(handle);
    },
  );
  return formed.then((g) => ({ id: g.id, outputs: g.outputs }));
}

/**
 * The shared part of the recipients' headers of one message, for the group `handle`; topic and
 * sender as the host sent them (UTF-8). Synchronous (value or throw) when the group is formed and
 * the sender's key cached, the common case; a Promise otherwise.
 */
export function groupRewrap(state: TeeState, handle: number, headerBytes: Uint8Array, topicBytes: Uint8Array, senderBytes: Uint8Array): Uint8Array | Promise<Uint8Array> {
  state.counters.rewrapCalls++;
  const entry = state.groups.get(handle);
  if (entry === undefined || !equalBytes(entry.topicBytes, topicBytes)) {
    state.counters.rejectedMessages++;
    throw new TeeError('group-unknown', entry === undefined ? `no group ${handle} (never formed, or forgotten)` : `group ${handle} was formed for another topic`);
  }
  if (entry.epoch !== state.epoch) {
    state.counters.rejectedMessages++;
    throw new TeeError('group-stale', `group ${handle} predates a policy change, revocation or key rotation; form it again`);
  }
  const g = entry.ready;
  // The hot path: a stream already checked, a well-formed header of its sender for this topic, a cached key.
  const stream = g === undefined ? undefined : streamOf(state, g, entry.topic, senderBytes);
  if (g !== undefined && stream !== undefined && isSenderHeaderOf(headerBytes, stream.senderBytes) && hasTopicTag(headerBytes, entry.topicTag)) {
    const keys = state.keysOf(stream.sender);
    if (keys !== undefined && !(keys instanceof Promise)) {
      const part = Buffer.allocUnsafe(groupPartLength(headerBytes)); // a slice of Node's pool, not an ArrayBuffer of its own
      if (wrapStreamAt(g, stream, keys, headerBytes, 0, part, 0, part.length)) return part;
    }
  }
  // Everything else (a first message, a key to load, anything to refuse) takes the general path,
  // which checks each step in turn and names the exact refusal.
  const sender = stream?.sender ?? fromUtf8(senderBytes);
  const opened = openSenderHeader(state, headerBytes, entry.topic, sender);
  if (opened instanceof Promise || g === undefined) return wrapWhenReady(entry, opened, entry.topic, sender);
  return wrapForGroup(g, opened, entry.topic, sender);
}

/** The group's stream of this sender, made once the sender passes the publish checks; undefined if it does not. */
function streamOf(state: TeeState, g: FormedGroup, topic: string, senderBytes: Uint8Array): SenderStream | undefined {
  const last = g.last;
  if (last !== undefined && equalBytes(last.senderBytes, senderBytes)) return last;
  let sender: string;
  try {
    sender = fromUtf8(senderBytes);
  } catch {
    return undefined;
  }
  let s = g.streams.get(sender);
  if (s === undefined) {
    if (sender.length === 0 || state.revoked.has(sender) || !state.mayPublishCached(sender, topic)) return undefined;
    s = { sender, senderBytes: Uint8Array.from(senderBytes), openAd: senderWrapAdTemplate(topic, sender), sealAd: groupWrapAdTemplate(topic, sender, g.id) };
    if (g.streams.size >= STREAMS_KEPT) g.streams.clear();
    g.streams.set(sender, s);
  }
  g.last = s;
  return s;
}

/** The data key of the message being re-wrapped: one buffer, zeroed as soon as it is wrapped again. */
const dek = Buffer.alloc(KEY_BYTES);

/**
 * Writes to out[partAt, +partLength) the shared part for the header at src[headerAt..], already
 * checked against its stream (isSenderHeaderOf, topic tag): equal to what the general path makes,
 * with no parsing and nothing allocated. false, with nothing usable written, when the data key
 * fails authentication (the general path then names the refusal).
 */
function wrapStreamAt(g: FormedGroup, s: SenderStream, keys: ClientKeys, src: Uint8Array, headerAt: number, out: Uint8Array, partAt: number, partLength: number): boolean {
  const nonceAt = headerAt + senderHeaderNonceAt(s.senderBytes.length) + NONCE_BYTES; // the wrap nonce; the wrapped key follows
  const sealedAt = nonceAt + NONCE_BYTES;
  if (!keys.wrap.openInto(src, nonceAt, src, sealedAt, WRAPPED_KEY_BYTES, fillAd(s.openAd, src, headerAt), dek, 0)) return false;
  try {
    writeGroupPartAt(out, partAt, partLength, src, headerAt, g.id);
    // a fresh wrap nonce (made ahead with its keystream when the batch prepared this stream)
    g.key.sealFreshAt(out, partAt + partLength - GROUP_PART_TAIL, dek, 0, KEY_BYTES, fillAd(s.sealAd, src, headerAt));
    return true;
  } finally {
    dek.fill(0);
  }
}

/**
 * The fast path of one message of a batch, read in place (src is the batch frame): a formed group
 * for this topic under the current epoch, the stream of its latest sender, a well-formed header of
 * that sender for this topic and a cached key. Writes the shared part to out[partAt, +partLength)
 * (partLength: groupPartLength of the header) and returns true; false, having changed nothing,
 * when the message needs the general path.
 */
export function groupRewrapAt(
  state: TeeState, handle: number, src: Uint8Array, topicAt: number, topicLength: number, senderAt: number, senderLength: number,
  headerAt: number, headerLength: number, out: Uint8Array, partAt: number, partLength: number,
): boolean {
  const entry = state.groups.peek(handle);
  if (entry === undefined || entry.epoch !== state.epoch || !equalBytesAt(entry.topicBytes, src, topicAt, topicLength)) return false;
  const g = entry.ready;
  const s = g?.last;
  if (g === undefined || s === undefined || !equalBytesAt(s.senderBytes, src, senderAt, senderLength)) return false;
  if (!isSenderHeaderOf(src, s.senderBytes, headerAt, headerLength) || !hasTopicTag(src, entry.topicTag, headerAt, headerLength)) return false;
  const keys = state.keysOf(s.sender);
  if (keys === undefined || keys instanceof Promise || !wrapStreamAt(g, s, keys, src, headerAt, out, partAt, partLength)) return false;
  state.groups.get(handle); // the group is used: newest in the table, as the general path leaves it
  state.counters.rewrapCalls++;
  return true;
}

/**
 * Makes ahead, for the messages of a batch that will take the fast path, the keystreams of both
 * AEADs: per group and its current publisher stream, one call of the block cipher for all the
 * data-key unwraps and one for all the group wraps, instead of two per message. Only keys already
 * in memory are used and nothing is checked or decided here: each message still takes its own path
 * and uses a keystream only if its nonce is the one it was made for. `at` holds per message
 * `fields` numbers: handle, then sender offset and length, then header offset and length at
 * `senderField`. Returns the keys to `dropPrepared` once the batch is done (what was not used is
 * zeroed then).
 */
export function prepareBatch(state: TeeState, src: Uint8Array, at: Uint32Array, n: number, fields: number, senderField: number): GcmKey[] {
  const prepared: GcmKey[] = [];
  if (n < 2) return prepared;
  // each handle's messages as a chain (next[i]: the next message of i's handle, -1 at its end),
  // made in one pass: a batch of many groups with a message each (a ward of ECG patients) costs
  // nothing per group, where scanning the rest of the batch for each group was quadratic
  const next = new Int16Array(n).fill(-1);
  const first = new Map<number, number>();
  const last = new Map<number, number>();
  for (let i = 0; i < n; i++) {
    const handle = at[i * fields]!;
    const prev = last.get(handle);
    if (prev === undefined) first.set(handle, i);
    else next[prev] = i;
    last.set(handle, i);
  }
  for (const [handle, i] of first) {
    if (next[i] === -1) continue; // the group's only message: nothing to share
    let length = 0;
    for (let j = i; j !== -1; j = next[j]!) length++;
    const entry = state.groups.peek(handle);
    const g = entry?.ready;
    const stream = g?.last;
    const m = i * fields + senderField;
    if (entry === undefined || g === undefined || stream === undefined || entry.epoch !== state.epoch || !equalBytesAt(stream.senderBytes, src, at[m]!, at[m + 1]!)) continue;
    const keys = state.cache.peek(stream.sender);
    if (keys === undefined) continue;
    const wrapNonceAt = senderHeaderNonceAt(stream.senderBytes.length) + NONCE_BYTES;
    const nonces = Buffer.allocUnsafe(NONCE_BYTES * length);
    let count = 0;
    for (let j = i; j !== -1; j = next[j]!) {
      const o = j * fields;
      const headerAt = at[o + senderField + 2]!;
      if (!isSenderHeaderOf(src, stream.senderBytes, headerAt, at[o + senderField + 3]!)) continue;
      for (let b = 0; b < NONCE_BYTES; b++) nonces[count * NONCE_BYTES + b] = src[headerAt + wrapNonceAt + b]!;
      count++;
    }
    if (count < 2) continue;
    keys.wrap.prepare(nonces, count, KEY_BYTES);
    g.key.prepareFresh(count, KEY_BYTES);
    prepared.push(keys.wrap, g.key);
  }
  return prepared;
}

async function wrapWhenReady(entry: GroupEntry, opened: OpenedHeader | Promise<OpenedHeader>, topic: string, sender: string): Promise<Uint8Array> {
  const o = await opened;
  try {
    return wrapForGroup(await entry.formed, o, topic, sender);
  } finally {
    o.dek.fill(0);
  }
}

function wrapForGroup(g: FormedGroup, { h, dek }: OpenedHeader, topic: string, sender: string): Uint8Array {
  try {
    const wrapNonce = randomNonce(NONCE_BYTES);
    return encodeGroupMessagePart(h, wrapNonce, g.key.seal(wrapNonce, dek, groupWrapAd(h.seq, topic, sender, h.payloadNonce, g.id)), g.id);
  } finally {
    dek.fill(0);
  }
}
