// Envelope seal (publisher) and open (subscriber). Layout and associated data come from
// src/envelope/envelope-layout.ts, shared with the trusted component and the broker.
import {
  ENVELOPE_VERSION, EnvelopeFormatError, KIND_GROUP, KIND_RECIPIENT, KIND_SENDER, TOPIC_TAG_BYTES, encodeHeader, groupKeyAd, groupWrapAd, joinEnvelope,
  parseHeader, payloadAd, splitEnvelope, topicTagInput, wrapAd, type EnvelopeHeader, type GroupMember,
} from '../../envelope/envelope-layout.js';
import { equalBytes, toHex, type Bytes } from '../../envelope/bytes.js';
import { Lru } from '../../envelope/lru.js';
import { MalformedEnvelopeError, NotForMeError, ReplayedMessageError, TamperedMessageError, WrongTopicError } from './errors.js';
import type { ClientKey } from './keys.js';
import type { ReplayWindow } from './replay.js';
import { aesKey, aesOpen, aesSeal, randomBytes, sha256 } from './webcrypto.js';

async function topicTag(topic: string): Promise<Uint8Array> {
  return (await sha256(topicTagInput(topic))).subarray(0, TOPIC_TAG_BYTES);
}

export interface SealOptions {
  key: ClientKey;
  sender: string;
  topic: string;
  seq: number;
  payload: Uint8Array;
}

/** Publisher side: fresh data key, payload under it, data key wrapped under the sender's key. */
export async function sealEnvelope(o: SealOptions): Promise<Bytes> {
  const dek = randomBytes(32);
  const payloadNonce = randomBytes(12);
  const wrapNonce = randomBytes(12);
  const payload = await aesSeal(dek, payloadNonce, o.payload, payloadAd(o.seq, o.topic, o.sender));
  const wrappedKey = await aesSeal(o.key.wrap, wrapNonce, dek, wrapAd(KIND_SENDER, o.seq, o.topic, o.sender, '', payloadNonce));
  dek.fill(0);
  const header = encodeHeader({
    version: ENVELOPE_VERSION, kind: KIND_SENDER, seq: o.seq, topicTag: await topicTag(o.topic), sender: o.sender, recipient: '', payloadNonce, wrapNonce, wrappedKey,
  });
  return joinEnvelope(header, payload);
}

export interface OpenOptions {
  key: ClientKey;
  /** The receiving identity: the header must be re-wrapped for it. */
  identity: string;
  /** Topic the message arrived on. */
  topic: string;
  envelope: Uint8Array;
  /** When given, each (sender, seq) is accepted once. */
  replay?: ReplayWindow;
}

export interface OpenedMessage {
  sender: string;
  seq: number;
  payload: Bytes;
}

interface KnownGroup {
  topic: string;
  nonce: Uint8Array;
  wrapped: Uint8Array;
  key: CryptoKey;
}

/** Group keys already opened, per client key: a group's member part repeats in every message. */
const groupKeys = new WeakMap<ClientKey, Lru<string, KnownGroup>>();
const GROUP_KEYS_KEPT = 256;

/** The group key of a kind-3 header, opened once per (client key, group, topic) and then remembered. */
async function groupKeyFor(key: ClientKey, topic: string, identity: string, g: GroupMember): Promise<CryptoKey> {
  let known = groupKeys.get(key);
  if (known === undefined) groupKeys.set(key, (known = new Lru(GROUP_KEYS_KEPT)));
  const id = toHex(g.id);
  const hit = known.get(id);
  if (hit !== undefined && hit.topic === topic && equalBytes(hit.nonce, g.memberNonce) && equalBytes(hit.wrapped, g.wrappedGroupKey)) return hit.key;
  const raw = await aesOpen(key.wrap, g.memberNonce, g.wrappedGroupKey, groupKeyAd(topic, identity, g.id));
  if (raw === undefined) throw new TamperedMessageError('wrapped group key fails authentication');
  const groupKey = await aesKey(raw);
  raw.fill(0);
  known.set(id, { topic, nonce: Uint8Array.from(g.memberNonce), wrapped: Uint8Array.from(g.wrappedGroupKey), key: groupKey });
  return groupKey;
}

/** The clear data key of a kind-2 or kind-3 header addressed to `o.identity`. */
async function dataKeyOf(o: OpenOptions, h: EnvelopeHeader): Promise<Bytes> {
  const dek = h.group === undefined
    ? await aesOpen(o.key.wrap, h.wrapNonce, h.wrappedKey, wrapAd(KIND_RECIPIENT, h.seq, o.topic, h.sender, o.identity, h.payloadNonce))
    : await aesOpen(await groupKeyFor(o.key, o.topic, o.identity, h.group), h.wrapNonce, h.wrappedKey, groupWrapAd(h.seq, o.topic, h.sender, h.payloadNonce, h.group.id));
  if (dek === undefined) throw new TamperedMessageError('wrapped data key fails authentication');
  return dek;
}

const REPLAY_REASONS = { duplicate: 'a duplicate', 'too-old': 'older than the replay window', expired: 'older than the maximum age' } as const;

/** Subscriber side; every failure is a ProtectedMessageError subclass with its own code. */
export async function openEnvelope(o: OpenOptions): Promise<OpenedMessage> {
  let h: EnvelopeHeader;
  let payload: Uint8Array;
  try {
    const parts = splitEnvelope(o.envelope);
    h = parseHeader(parts.header);
    payload = parts.payload;
  } catch (err) {
    throw new MalformedEnvelopeError((err as EnvelopeFormatError).message);
  }
  if (h.kind !== KIND_RECIPIENT && h.kind !== KIND_GROUP) throw new NotForMeError('header is still wrapped for its sender; the trusted component did not re-wrap it');
  if (h.recipient !== o.identity) throw new NotForMeError(`header was re-wrapped for ${JSON.stringify(h.recipient)}, not ${JSON.stringify(o.identity)}`);
  if (!equalBytes(h.topicTag, await topicTag(o.topic))) throw new WrongTopicError(`message was not published to ${JSON.stringify(o.topic)}`);
  const dek = await dataKeyOf(o, h);
  const plaintext = await aesOpen(dek, h.payloadNonce, payload, payloadAd(h.seq, o.topic, h.sender));
  dek.fill(0);
  if (plaintext === undefined) throw new TamperedMessageError('payload fails authentication');
  if (o.replay !== undefined) {
    const verdict = o.replay.check(h.sender, h.seq);
    if (verdict !== 'fresh') throw new ReplayedMessageError(`message ${h.seq} from ${JSON.stringify(h.sender)} is ${REPLAY_REASONS[verdict]}`);
    o.replay.accept(h.sender, h.seq);
  }
  return { sender: h.sender, seq: h.seq, payload: plaintext };
}
