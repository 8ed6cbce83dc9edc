// Envelope seal (publisher) and open (subscriber). Layout and associated data come from
// src/envelope/envelope-layout.ts, shared with the trusted component and the broker.
import {
  ENVELOPE_VERSION, EnvelopeFormatError, KEY_BYTES, KIND_GROUP, KIND_RECIPIENT, KIND_SENDER, NONCE_BYTES, SEQ_TAG_BYTES, STREAM_DERIVED_BYTES, STREAM_KEY_AT, STREAM_NONCE_AT, TOPIC_TAG_BYTES,
  encodeHeader, groupKeyAd, groupWrapAd, joinEnvelope, parseHeader, payloadAd, splitEnvelope, streamAd, topicTagInput, wrapAd,
  type EnvelopeHeader, type GroupMember,
} from '../../envelope/envelope-layout.js';
import { Writer, equalBytes, toHex, type Bytes } from '../../envelope/bytes.js';
import { Lru } from '../../envelope/lru.js';
import { MalformedEnvelopeError, NotForMeError, ReplayedMessageError, TamperedMessageError, WrongTopicError } from './errors.js';
import type { ClientKey } from './keys.js';
import type { ReplayWindow } from './replay.js';
import { aesKey, aesKeystream, aesOpen, aesSeal, randomBytes, sha256 } from './webcrypto.js';

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

/** A publisher's stream on one topic: a random stream key, wrapped once for the trusted component. */
interface PublisherStream {
  key: Uint8Array;
  nonce: Uint8Array;
  wrapped: Uint8Array;
  /** The highest sequence number sealed in it: a keystream is never used twice. */
  lastSeq: number;
}

/** Streams per client key and (sender, topic); a new client key (a rotation) starts new streams. */
const streams = new WeakMap<ClientKey, Lru<string, Promise<PublisherStream>>>();
const STREAMS_KEPT = 256;

/** The stream for (sender, topic) under `key`; `fresh`: a new one in its place. */
function streamFor(key: ClientKey, sender: string, topic: string, fresh = false): Promise<PublisherStream> {
  let kept = streams.get(key);
  if (kept === undefined) streams.set(key, (kept = new Lru(STREAMS_KEPT)));
  const id = JSON.stringify([sender, topic]);
  let s = fresh ? undefined : kept.get(id);
  if (s === undefined) {
    const streamKey = randomBytes(KEY_BYTES);
    const nonce = randomBytes(NONCE_BYTES);
    const made = aesSeal(key.wrap, nonce, streamKey, streamAd(topic, sender)).then((wrapped) => ({ key: streamKey, nonce, wrapped, lastSeq: -1 }));
    kept.set(id, made);
    // a failed wrap is not kept: the next seal tries a new stream
    const cache = kept;
    made.catch(() => {
      if (cache.peek(id) === made) cache.delete(id);
    });
    s = made;
  }
  return s;
}

/**
 * Publisher side (kind 4): the message's sequence tag, data key and payload nonce come from the
 * stream key's AES-256-CTR keystream at its sequence number; the payload is sealed under them.
 */
export async function sealEnvelope(o: SealOptions): Promise<Bytes> {
  let stream = await streamFor(o.key, o.sender, o.topic);
  // Data key and payload nonce follow from (stream key, seq): a sequence number that does not rise
  // in this stream (two senders sharing one client key, each with its own counter) gets a new stream.
  while (o.seq <= stream.lastSeq) stream = await streamFor(o.key, o.sender, o.topic, true);
  stream.lastSeq = o.seq;
  const counter = new Writer(16).u64(o.seq).u64(0).finish(); // the first of the counter blocks (§3)
  const derived = await aesKeystream(stream.key, counter, STREAM_DERIVED_BYTES); // sequence tag | data key | payload nonce
  const payloadNonce = derived.slice(STREAM_NONCE_AT, STREAM_NONCE_AT + NONCE_BYTES);
  const payload = await aesSeal(derived.subarray(STREAM_KEY_AT, STREAM_KEY_AT + KEY_BYTES), payloadNonce, o.payload, payloadAd(o.seq, o.topic, o.sender));
  const header = encodeHeader({
    version: ENVELOPE_VERSION, kind: KIND_SENDER, seq: o.seq, topicTag: await topicTag(o.topic), sender: o.sender, recipient: '', payloadNonce,
    wrapNonce: stream.nonce, wrappedKey: stream.wrapped, seqTag: derived.slice(0, SEQ_TAG_BYTES),
  });
  derived.fill(0);
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
