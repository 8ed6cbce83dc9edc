// The publisher's side of a re-wrap: a sender header (kind 4) is checked (form, sender, topic,
// revocation, publish right), its stream key opened with the sender's key, and the message's
// sequence tag, data key and payload nonce derived from it; tag and nonce must be the header's. Work is independent of
// the payload size: only the 32-byte keys are handled.
import { timingSafeEqual } from 'node:crypto';
import {
  KEY_BYTES, KIND_SENDER, NONCE_BYTES, SENDER_FIELD_AT, SEQ_FIELD_AT, SEQ_TAG_BYTES, STREAM_KEY_AT, STREAM_NONCE_AT, TOPIC_TAG_LABEL, senderHeaderNonceAt, seqTagAt, EnvelopeFormatError, parseHeader, streamAd,
  type EnvelopeHeader,
} from '../envelope/envelope-layout.js';
import { TeeError, type TeeErrorCode } from '../envelope/errors.js';
import { StreamKey } from './aead.js';
import type { ClientKeys } from './keys.js';
import { sha256, type TeeState } from './core.js';

const topicTags = new Map<string, Buffer>();
const TOPIC_TAGS_KEPT = 4096;

/** Topic tags of recent topics are kept: a stream repeats its topic, and SHA-256 costs a few µs a call. */
export function topicTag(topic: string): Buffer {
  let tag = topicTags.get(topic);
  if (tag === undefined) {
    tag = sha256(TOPIC_TAG_LABEL, Buffer.from(topic)).subarray(0, 8);
    if (topicTags.size >= TOPIC_TAGS_KEPT) topicTags.clear();
    topicTags.set(topic, tag);
  }
  return tag;
}

function reject(state: TeeState, code: TeeErrorCode, message: string): never {
  state.counters.rejectedMessages++;
  throw new TeeError(code, message);
}

/** A topic name the trusted component accepts: non-empty, without wildcards. */
export function isTopicName(topic: string): boolean {
  return topic.length > 0 && !topic.includes('+') && !topic.includes('#');
}

export interface OpenedHeader {
  h: EnvelopeHeader;
  dek: Buffer;
  /** The publisher's stream key, for its next messages. */
  streamKey: StreamKey;
}

/**
 * Authenticates a sender header for (topic, sender) and returns it with the clear data key:
 * at once when the sender's key is cached (the hot path: a stream's publisher stays cached), a
 * Promise only when its sealed key must be read first. Refusals are thrown.
 */
export function openSenderHeader(state: TeeState, headerBytes: Uint8Array, topic: string, sender: string): OpenedHeader | Promise<OpenedHeader> {
  if (!isTopicName(topic)) reject(state, 'bad-request', `invalid topic name ${JSON.stringify(topic)}`);
  let h: EnvelopeHeader;
  try {
    h = parseHeader(headerBytes);
  } catch (err) {
    reject(state, 'malformed-header', (err as EnvelopeFormatError).message);
  }
  if (h.kind !== KIND_SENDER) reject(state, 'malformed-header', 'header is not a sender header');
  if (h.sender !== sender) reject(state, 'sender-mismatch', `header names sender ${JSON.stringify(h.sender)}, the publisher is ${JSON.stringify(sender)}`);
  if (!topicTag(topic).equals(h.topicTag)) reject(state, 'wrong-topic', `header was not made for topic ${JSON.stringify(topic)}`);
  if (state.revoked.has(sender)) reject(state, 'revoked-sender', 'sender was revoked');
  const header = h;
  let keys: ClientKeys | undefined | Promise<ClientKeys | undefined>;
  try {
    keys = state.keysOf(sender);
  } catch (err) {
    keyFailure(state, err);
  }
  if (keys instanceof Promise) return keys.then((k) => openStream(state, header, headerBytes, k, topic, sender), (err: unknown) => keyFailure(state, err));
  return openStream(state, header, headerBytes, keys, topic, sender);
}

/**
 * Which of a sender header's sequence tag and payload nonce (the header at src[headerAt..], laid out
 * as isSenderHeaderOf accepts) is not the one `keystream` (the stream key's at its sequence number)
 * gives; undefined when both are. Compared in constant time: the keystream is secret.
 */
export function keystreamMismatch(keystream: Uint8Array, src: Uint8Array, headerAt: number): 'sequence tag' | 'payload nonce' | undefined {
  const n = src[headerAt + SENDER_FIELD_AT]!;
  const tagAt = headerAt + seqTagAt(n);
  const nonceAt = headerAt + senderHeaderNonceAt(n);
  if (!timingSafeEqual(keystream.subarray(0, SEQ_TAG_BYTES), src.subarray(tagAt, tagAt + SEQ_TAG_BYTES))) return 'sequence tag';
  if (!timingSafeEqual(keystream.subarray(STREAM_NONCE_AT, STREAM_NONCE_AT + NONCE_BYTES), src.subarray(nonceAt, nonceAt + NONCE_BYTES))) return 'payload nonce';
  return undefined;
}

function keyFailure(state: TeeState, err: unknown): never {
  reject(state, err instanceof TeeError ? err.code : 'internal', (err as Error).message);
}

function openStream(state: TeeState, h: EnvelopeHeader, headerBytes: Uint8Array, keys: ClientKeys | undefined, topic: string, sender: string): OpenedHeader {
  if (keys === undefined) reject(state, 'unknown-sender', `${JSON.stringify(sender)} is not enrolled`);
  if (!state.mayPublish(sender, keys, topic)) reject(state, 'publish-denied', `${JSON.stringify(sender)} may not publish to ${JSON.stringify(topic)}`);
  const raw = keys.wrap.open(h.wrapNonce, h.wrappedKey, 0, h.wrappedKey.length, streamAd(topic, sender));
  if (raw === undefined) reject(state, 'header-auth-failed', 'wrapped stream key fails authentication (tampered header, wrong topic or sender)');
  const streamKey = new StreamKey(raw);
  raw.fill(0);
  const derived = streamKey.derive(headerBytes, [SEQ_FIELD_AT]);
  const failed = keystreamMismatch(derived, headerBytes, 0);
  if (failed !== undefined) {
    derived.fill(0);
    reject(state, 'header-auth-failed', `${failed} fails authentication (tampered header or sequence number)`);
  }
  return { h, dek: derived.subarray(STREAM_KEY_AT, STREAM_KEY_AT + KEY_BYTES), streamKey };
}
