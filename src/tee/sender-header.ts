// The publisher's side of a re-wrap: a sender-wrapped header is checked (form, sender, topic,
// revocation, publish right) and its data key opened with the sender's key. Work is independent of
// the payload size: only the 32-byte data key is handled.
import { KIND_SENDER, TOPIC_TAG_LABEL, EnvelopeFormatError, parseHeader, wrapAd, type EnvelopeHeader } from '../envelope/envelope-layout.js';
import { TeeError, type TeeErrorCode } from '../envelope/errors.js';
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
}

/**
 * Authenticates a sender-wrapped header for (topic, sender) and returns it with the clear data key:
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
  if (h.kind !== KIND_SENDER) reject(state, 'malformed-header', 'header is not sender-wrapped');
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
  if (keys instanceof Promise) return keys.then((k) => unwrapSenderKey(state, header, k, topic, sender), (err: unknown) => keyFailure(state, err));
  return unwrapSenderKey(state, header, keys, topic, sender);
}

function keyFailure(state: TeeState, err: unknown): never {
  reject(state, err instanceof TeeError ? err.code : 'internal', (err as Error).message);
}

function unwrapSenderKey(state: TeeState, h: EnvelopeHeader, keys: ClientKeys | undefined, topic: string, sender: string): OpenedHeader {
  if (keys === undefined) reject(state, 'unknown-sender', `${JSON.stringify(sender)} is not enrolled`);
  if (!state.mayPublish(sender, keys, topic)) reject(state, 'publish-denied', `${JSON.stringify(sender)} may not publish to ${JSON.stringify(topic)}`);
  const dek = keys.wrap.open(h.wrapNonce, h.wrappedKey, 0, h.wrappedKey.length, wrapAd(KIND_SENDER, h.seq, topic, sender, '', h.payloadNonce));
  if (dek === undefined) reject(state, 'header-auth-failed', 'wrapped data key fails authentication (tampered header, wrong topic, sender or sequence number)');
  return { h, dek };
}
