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
  GROUP_ID_BYTES, GROUP_PART_TAIL, KEY_BYTES, MAX_IDENTITY_BYTES, NONCE_BYTES, STREAM_DERIVED_BYTES, STREAM_KEY_AT, STREAM_PART_BYTES, encodeGroupMemberPart,
  encodeGroupMessagePart, fillAd, groupKeyAd, groupWrapAd, groupWrapAdTemplate, streamPartAt, writeGroupPartAt, type AdTemplate,
} from '../envelope/envelope-layout.js';
import { TEE_ERRORS, TeeError } from '../envelope/errors.js';
import type { Lru } from '../envelope/lru.js';
import { AeadKey, type StreamKey } from './aead.js';
import type { TeeState } from './core.js';
import type { ClientKeys } from './keys.js';
import { isTopicName, keystreamMismatch, openSenderHeader, topicTag, type OpenedHeader } from './sender-header.js';

/** Per member of a group: its member part, or the wire number of a refusal code. */
export type RecipientOutput = Uint8Array | number;

/**
 * What every message of one publisher to one group shares, made (after the publish checks) on its
 * first message: the group wrap's associated data, only sequence number and payload nonce rewritten
 * per message, and, once a header of it authenticated, the publisher's stream key and the stream
 * part it came in. Valid as long as its group: any change that could alter the checks (a key
 * rotation among them) moves the epoch on.
 */
export interface SenderStream {
  readonly sender: string;
  readonly senderBytes: Uint8Array;
  readonly sealAd: AdTemplate;
  /** The publisher's stream key, opened under the current epoch, and the stream part (stream nonce, wrapped key) it came in. */
  opened?: { readonly key: StreamKey; readonly part: Uint8Array };
}

/**
 * Publishers remembered per group: a topic usually has one, or a few. Bounds the memory the host
 * can make this component spend on streams (~350 bytes each) to 16 × the group table; more
 * publishers on one topic than this only fall back to the general path.
 */
const STREAMS_KEPT = 16;

export interface FormedGroup {
  readonly id: Buffer;
  /** The group key, as the AEAD that wraps each message's data key under it. */
  readonly key: AeadKey;
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
    const outputs = await forEachRecipient(state, topic, members, (rb, keys) => {
      const sealed = keys.wrap.seal(key, groupKeyAd(topic, rb, id));
      return encodeGroupMemberPart(rb, sealed.subarray(0, NONCE_BYTES), sealed.subarray(NONCE_BYTES));
    });
    state.counters.groupsFormed++;
    for (const o of outputs) if (typeof o !== 'number') state.counters.rewrapped++;
    const aead = new AeadKey(key);
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
 * The general path of one message of a batch: the shared part of its recipients' headers for the
 * group `handle`, topic and sender as the host sent them (UTF-8). Checks each step in turn and names
 * the exact refusal (thrown); a Promise when a key must be loaded or the group is still forming.
 * Makes the sender's stream, so the publisher's next messages take the fast path.
 */
export function rewrapMessage(state: TeeState, handle: number, headerBytes: Uint8Array, topicBytes: Uint8Array, senderBytes: Uint8Array): Uint8Array | Promise<Uint8Array> {
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
  const stream = g === undefined ? undefined : streamOf(state, g, entry.topic, senderBytes);
  const sender = stream?.sender ?? fromUtf8(senderBytes);
  const opened = openSenderHeader(state, headerBytes, entry.topic, sender);
  if (opened instanceof Promise || g === undefined) return wrapWhenReady(entry, opened, entry.topic, sender);
  if (stream !== undefined) {
    // the publisher's next messages in this stream take the fast path
    const at = streamPartAt(stream.senderBytes.length);
    stream.opened = { key: opened.streamKey, part: Uint8Array.from(headerBytes.subarray(at, at + STREAM_PART_BYTES)) };
  }
  return wrapForGroup(g, opened, entry.topic, sender);
}

/** The group's stream of this sender, made once the sender passes the publish checks; undefined if it does not. */
export function streamOf(state: TeeState, g: FormedGroup, topic: string, senderBytes: Uint8Array): SenderStream | undefined {
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
    s = { sender, senderBytes: Uint8Array.from(senderBytes), sealAd: groupWrapAdTemplate(topic, sender, g.id) };
    if (g.streams.size >= STREAMS_KEPT) g.streams.clear();
    g.streams.set(sender, s);
  }
  g.last = s;
  return s;
}

/**
 * Writes to out[partAt, +partLength) the shared part for the header at src[headerAt..], already
 * checked against its stream (isSenderHeaderOf, topic tag), given the keystream the stream's key
 * yields at its sequence number: equal to what the general path makes, with no parsing and one AEAD
 * (the group's wrap). false, with nothing usable written, when the
 * header comes in another stream part than the stream's key, or its sequence tag or payload nonce
 * is not the stream key's (the general path then opens that stream part, or names the refusal).
 */
export function wrapStreamAt(g: FormedGroup, s: SenderStream, keystream: Buffer, src: Uint8Array, headerAt: number, out: Uint8Array, partAt: number, partLength: number): boolean {
  const n = s.senderBytes.length;
  if (keystream.length !== STREAM_DERIVED_BYTES || s.opened === undefined || !equalBytesAt(s.opened.part, src, headerAt + streamPartAt(n), STREAM_PART_BYTES)) return false;
  if (keystreamMismatch(keystream, src, headerAt) !== undefined) return false; // the general path names which
  writeGroupPartAt(out, partAt, partLength, src, headerAt, g.id);
  g.key.sealInto(out, partAt + partLength - GROUP_PART_TAIL, keystream.subarray(STREAM_KEY_AT, STREAM_KEY_AT + KEY_BYTES), fillAd(s.sealAd, src, headerAt)); // wrap nonce | wrapped data key
  return true;
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
    const sealed = g.key.seal(dek, groupWrapAd(h.seq, topic, sender, h.payloadNonce, g.id));
    return encodeGroupMessagePart(h, sealed.subarray(0, NONCE_BYTES), sealed.subarray(NONCE_BYTES), g.id);
  } finally {
    dek.fill(0);
  }
}

/**
 * For each member: a synchronous refusal, its part, or (cache miss) a pending key load. Loads run
 * concurrently, so N misses cost N sealed-store reads but one round of latency.
 */
async function forEachRecipient(
  state: TeeState, topic: string, recipients: readonly string[], make: (recipientBytes: Uint8Array, keys: ClientKeys) => Uint8Array,
): Promise<RecipientOutput[]> {
  const out: RecipientOutput[] = new Array<RecipientOutput>(recipients.length);
  const waits: Promise<void>[] = [];
  for (let i = 0; i < recipients.length; i++) {
    const r = recipients[i]!;
    const rb = Buffer.from(r); // UTF-8 once: checked here, then used in the AD and the member part
    if (rb.length === 0 || rb.length > MAX_IDENTITY_BYTES) out[i] = TEE_ERRORS['recipient-bad-identity'];
    else if (state.revoked.has(r)) out[i] = TEE_ERRORS['recipient-revoked'];
    else {
      // Read access needs the key record (its token grants) unless a policy is loaded.
      const output = (keys: ClientKeys | undefined): RecipientOutput =>
        keys === undefined ? TEE_ERRORS['recipient-unknown'] : !state.mayRead(r, keys, topic) ? TEE_ERRORS['read-denied'] : make(rb, keys);
      const k = state.keysOf(r);
      if (k instanceof Promise) {
        waits.push(k.then((keys) => { out[i] = output(keys); }, () => { out[i] = TEE_ERRORS['recipient-sealed-invalid']; }));
      } else out[i] = output(k);
    }
  }
  if (waits.length > 0) await Promise.all(waits);
  for (const o of out) if (typeof o === 'number') state.counters.refusals++;
  return out;
}
