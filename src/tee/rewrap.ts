// Re-wrap: one call per PUBLISH. The sender-wrapped data key is opened with the sender's key and
// wrapped again for each recipient the policy lets read the topic. Work is independent of the
// payload size: only the 32-byte data key is handled. Paper mode (benchmark baseline) instead
// decrypts and re-encrypts the whole payload per recipient, as the original MQT-TZ did.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { randomNonce } from '../envelope/nonces.js';
import {
  ENVELOPE_VERSION, KEY_BYTES, KIND_RECIPIENT, KIND_SENDER, NONCE_BYTES, TAG_BYTES, TOPIC_TAG_LABEL, EnvelopeFormatError,
  MAX_IDENTITY_BYTES, encodeHeader, joinEnvelope, parseHeader, payloadAd, recipientHeaderEncoder, recipientWrapAd, splitEnvelope, wrapAd, type EnvelopeHeader,
} from '../envelope/envelope-layout.js';
import { TEE_ERRORS, TeeError, type TeeErrorCode } from '../envelope/errors.js';
import type { ClientKeys } from './keys.js';
import { TeeState, sha256 } from './core.js';

/** Per recipient: its new header, or the wire number of a refusal code. */
export type RecipientOutput = Uint8Array | number;

function gcmSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(ad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** undefined when authentication fails. */
function gcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer | undefined {
  try {
    const d = createDecipheriv('aes-256-gcm', key, nonce);
    d.setAAD(ad);
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]);
  } catch {
    return undefined;
  }
}

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
  const dek = keys.wrap.open(h.wrapNonce, h.wrappedKey, wrapAd(KIND_SENDER, h.seq, topic, sender, '', h.payloadNonce));
  if (dek === undefined) reject(state, 'header-auth-failed', 'wrapped data key fails authentication (tampered header, wrong topic, sender or sequence number)');
  return { h, dek };
}

/**
 * For each recipient: a synchronous refusal, a header, or (cache miss) a pending key load.
 * Loads run concurrently, so N misses cost N sealed-store reads but one round of latency.
 */
export async function forEachRecipient(
  state: TeeState,
  topic: string,
  recipients: readonly string[],
  make: (recipient: string, recipientBytes: Uint8Array, keys: ClientKeys, index: number) => Uint8Array,
): Promise<RecipientOutput[]> {
  const out: RecipientOutput[] = new Array<RecipientOutput>(recipients.length);
  const waits: Promise<void>[] = [];
  for (let i = 0; i < recipients.length; i++) {
    const r = recipients[i]!;
    const rb = Buffer.from(r); // UTF-8 once: checked here, then used in the AD and the header
    if (rb.length === 0 || rb.length > MAX_IDENTITY_BYTES) out[i] = TEE_ERRORS['recipient-bad-identity'];
    else if (state.revoked.has(r)) out[i] = TEE_ERRORS['recipient-revoked'];
    else {
      // Read access needs the key record (its token grants) unless a policy is loaded.
      const output = (keys: ClientKeys | undefined): RecipientOutput =>
        keys === undefined ? TEE_ERRORS['recipient-unknown'] : !state.mayRead(r, keys, topic) ? TEE_ERRORS['read-denied'] : make(r, rb, keys, i);
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

export async function rewrap(state: TeeState, headerBytes: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RecipientOutput[]> {
  state.counters.rewrapCalls++;
  const { h, dek } = await openSenderHeader(state, headerBytes, topic, sender);
  const nonces = randomNonce(NONCE_BYTES * recipients.length);
  const adFor = recipientWrapAd(h.seq, topic, sender, h.payloadNonce);
  const headerFor = recipientHeaderEncoder(h);
  try {
    const out = await forEachRecipient(state, topic, recipients, (_recipient, rb, keys, i) => {
      const wrapNonce = nonces.subarray(i * NONCE_BYTES, (i + 1) * NONCE_BYTES);
      return headerFor(rb, wrapNonce, keys.wrap.seal(wrapNonce, dek, adFor(rb)));
    });
    for (const o of out) if (typeof o !== 'number') state.counters.rewrapped++;
    return out;
  } finally {
    dek.fill(0);
  }
}

/** Paper mode: full payload decryption and per-recipient re-encryption. Returns whole envelopes. */
export async function reencrypt(state: TeeState, envelope: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RecipientOutput[]> {
  state.counters.reencryptCalls++;
  let parts;
  try {
    parts = splitEnvelope(envelope);
  } catch (err) {
    reject(state, 'malformed-header', (err as Error).message);
  }
  const { h, dek } = await openSenderHeader(state, parts.header, topic, sender);
  const ad = payloadAd(h.seq, topic, sender);
  const plaintext = gcmOpen(dek, h.payloadNonce, parts.payload, ad);
  dek.fill(0);
  if (plaintext === undefined) reject(state, 'header-auth-failed', 'payload fails authentication under its data key');
  try {
    return await forEachRecipient(state, topic, recipients, (recipient, _rb, keys) => {
      const freshKey = randomBytes(KEY_BYTES);
      const payloadNonce = randomBytes(NONCE_BYTES);
      const wrapNonce = randomBytes(NONCE_BYTES);
      const payload = gcmSeal(freshKey, payloadNonce, plaintext, ad);
      const wrappedKey = keys.wrap.seal(wrapNonce, freshKey, wrapAd(KIND_RECIPIENT, h.seq, topic, sender, recipient, payloadNonce));
      freshKey.fill(0);
      return joinEnvelope(encodeHeader({ ...h, version: ENVELOPE_VERSION, kind: KIND_RECIPIENT, recipient, payloadNonce, wrapNonce, wrappedKey }), payload);
    });
  } finally {
    plaintext.fill(0);
  }
}
