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
import { GROUP_ID_BYTES, KEY_BYTES, NONCE_BYTES, encodeGroupMemberPart, encodeGroupMessagePart, groupKeyAd, groupWrapAd } from './envelope-layout.js';
import { TeeError } from './errors.js';
import type { TeeState } from './core.js';
import type { Lru } from './lru.js';
import { randomNonce } from './nonces.js';
import { GcmKey } from './gcm.js';
import { forEachRecipient, isTopicName, openSenderHeader, type OpenedHeader, type RecipientOutput } from './rewrap.js';

interface FormedGroup {
  readonly id: Buffer;
  /** The group key, as the AEAD that wraps each message's data key under it. */
  readonly key: GcmKey;
  /** Per member, in the host's order: its member part, or the wire number of a refusal. */
  readonly outputs: RecipientOutput[];
}

export interface GroupEntry {
  readonly topic: string;
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
    return { id, key: aead, outputs };
  })();
  const entry: GroupEntry = { topic, epoch: state.epoch, formed };
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
 * The shared part of the recipients' headers of one message, for the group `handle`. Synchronous
 * (value or throw) when the group is formed and the sender's key cached, the common case; a
 * Promise otherwise.
 */
export function groupRewrap(state: TeeState, handle: number, headerBytes: Uint8Array, topic: string, sender: string): Uint8Array | Promise<Uint8Array> {
  state.counters.rewrapCalls++;
  const entry = state.groups.get(handle);
  if (entry === undefined || entry.topic !== topic) {
    state.counters.rejectedMessages++;
    throw new TeeError('group-unknown', entry === undefined ? `no group ${handle} (never formed, or forgotten)` : `group ${handle} was formed for another topic`);
  }
  if (entry.epoch !== state.epoch) {
    state.counters.rejectedMessages++;
    throw new TeeError('group-stale', `group ${handle} predates a policy change, revocation or key rotation; form it again`);
  }
  const opened = openSenderHeader(state, headerBytes, topic, sender);
  const g = entry.ready;
  if (opened instanceof Promise || g === undefined) return wrapWhenReady(entry, opened, topic, sender);
  return wrapForGroup(g, opened, topic, sender);
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
