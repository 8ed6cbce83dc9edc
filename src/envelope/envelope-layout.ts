// Envelope layout (docs/protocol.md §3). Pure: no keys, no crypto, no `node:` imports, so the
// broker, the trusted component and the browser client all split and parse envelopes the same way.
import { Reader, TruncatedError, Writer, concat, fromUtf8, utf8, utf8Name, type Bytes } from './bytes.js';

export const ENVELOPE_VERSION = 1;
// Kind 1 (a data key wrapped under the publisher's key, per message) is retired: parseHeader refuses it.
export const KIND_RECIPIENT = 2; // data key re-wrapped by the trusted component for one subscriber
export const KIND_GROUP = 3; // data key wrapped under a recipient group's key, that key wrapped for one subscriber
export const KIND_SENDER = 4; // sender-streamed: the publisher's stream key wrapped under its key, the data key derived from it
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const KEY_BYTES = 32;
export const WRAPPED_KEY_BYTES = KEY_BYTES + TAG_BYTES;
export const TOPIC_TAG_BYTES = 8;
export const MAX_IDENTITY_BYTES = 255;
export const GROUP_ID_BYTES = 16;
/** A kind-4 header's sequence tag: it proves to the trusted component that the stream's publisher made the message. */
export const SEQ_TAG_BYTES = 16;
/**
 * What a stream key yields per message, the first bytes of its AES-256-CTR keystream at the
 * message's sequence number: the sequence tag at 0, the data key at STREAM_KEY_AT, the payload nonce
 * at STREAM_NONCE_AT (four AES blocks; the last 4 bytes are not used).
 */
export const STREAM_DERIVED_BYTES = 64;
export const STREAM_KEY_AT = SEQ_TAG_BYTES;
export const STREAM_NONCE_AT = STREAM_KEY_AT + KEY_BYTES;
/** A kind-4 header's stream part: stream nonce and wrapped stream key, the same in every message of the stream. */
export const STREAM_PART_BYTES = NONCE_BYTES + WRAPPED_KEY_BYTES;

// Fixed offsets of every header kind: version, kind, u64 sequence number, topic tag, then str8 sender.
const SEQ_AT = 2;
const TOPIC_TAG_AT = SEQ_AT + 8;
const SENDER_AT = TOPIC_TAG_AT + TOPIC_TAG_BYTES;

/** The per-subscriber part of a kind-3 header: the group key wrapped under the subscriber's key. */
export interface GroupMember {
  /** Random id the trusted component gave the group; bound into both AEADs. */
  id: Uint8Array;
  memberNonce: Uint8Array;
  wrappedGroupKey: Uint8Array;
}

export interface EnvelopeHeader {
  version: number;
  kind: number;
  seq: number;
  /** First 8 bytes of SHA-256("mqt-tz/1 topic" || topic): lets a receiver name a wrong-topic delivery. */
  topicTag: Uint8Array;
  sender: string;
  /** Empty in a sender header (kind 4). */
  recipient: string;
  payloadNonce: Uint8Array;
  /** Kind 4: the stream nonce. */
  wrapNonce: Uint8Array;
  /** Kind 2: the data key under the recipient's key; kind 3: under the group key; kind 4: the stream key under the sender's key. */
  wrappedKey: Uint8Array;
  /** Kind 3 only. */
  group?: GroupMember;
  /** Kind 4 only. */
  seqTag?: Uint8Array;
}

export type EnvelopeFormatCode = 'truncated' | 'bad-length' | 'unsupported-version' | 'bad-kind' | 'bad-identity';

/** A header or envelope whose bytes do not follow the layout; raised before any crypto. */
export class EnvelopeFormatError extends Error {
  constructor(readonly code: EnvelopeFormatCode, message: string) {
    super(message);
    this.name = 'EnvelopeFormatError';
  }
}

export interface EnvelopeParts {
  header: Uint8Array;
  /** AES-256-GCM ciphertext of the payload followed by its 16-byte tag; shared by every recipient. */
  payload: Uint8Array;
}

/** Splits `u16 headerLength | header | payload` without copying. */
export function splitEnvelope<T extends Uint8Array = Bytes>(envelope: T): { header: T; payload: T } {
  const headerLength = envelopeHeaderLength(envelope);
  // views of the caller's kind: a Buffer's subarray is a Buffer
  return { header: envelope.subarray(2, 2 + headerLength) as T, payload: envelope.subarray(2 + headerLength) as T };
}

/** The header length an envelope announces, checked as splitEnvelope checks it (the header starts at 2). */
export function envelopeHeaderLength(envelope: Uint8Array): number {
  if (envelope.length < 2) throw new EnvelopeFormatError('truncated', 'envelope shorter than its 2-byte header length');
  const headerLength = (envelope[0]! << 8) | envelope[1]!;
  if (envelope.length < 2 + headerLength + TAG_BYTES) {
    throw new EnvelopeFormatError('bad-length', `envelope of ${envelope.length} bytes cannot hold a ${headerLength}-byte header and a payload tag`);
  }
  return headerLength;
}

/** Inverse of splitEnvelope: one allocation per output envelope. */
export function joinEnvelope(header: Uint8Array, payload: Uint8Array): Bytes {
  if (header.length > 0xffff) throw new EnvelopeFormatError('bad-length', 'header longer than 65535 bytes');
  const out = new Uint8Array(2 + header.length + payload.length);
  out[0] = header.length >> 8;
  out[1] = header.length & 0xff;
  out.set(header, 2);
  out.set(payload, 2 + header.length);
  return out;
}

/** Exact-size encoding (one allocation): the trusted component builds one per recipient. */
export function encodeHeader(h: EnvelopeHeader): Bytes {
  if (h.kind === KIND_GROUP) {
    if (h.group === undefined) throw new EnvelopeFormatError('bad-kind', 'a kind-3 header needs its group part');
    return concat(encodeGroupMessagePart(h, h.wrapNonce, h.wrappedKey, h.group.id), encodeGroupMemberPart(utf8(h.recipient), h.group.memberNonce, h.group.wrappedGroupKey));
  }
  if (h.kind === KIND_SENDER) return encodeSenderHeader(h);
  if (!Number.isSafeInteger(h.seq) || h.seq < 0) throw new EnvelopeFormatError('bad-length', `sequence number ${h.seq} is not an unsigned safe integer`);
  const sender = utf8(h.sender);
  const recipient = utf8(h.recipient);
  if (sender.length > MAX_IDENTITY_BYTES || recipient.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'identity longer than 255 bytes');
  const out = new Uint8Array(SENDER_AT + 2 + sender.length + recipient.length + 2 * NONCE_BYTES + WRAPPED_KEY_BYTES);
  const view = new DataView(out.buffer);
  out[0] = h.version;
  out[1] = h.kind;
  view.setUint32(2, Math.floor(h.seq / 0x100000000));
  view.setUint32(6, h.seq >>> 0);
  let at = 10;
  for (const part of [h.topicTag, [sender.length], sender, [recipient.length], recipient, h.payloadNonce, h.wrapNonce, h.wrappedKey]) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * `encodeHeader` of the kind-2 headers of one message, for many recipients: the fields they share
 * (version, sequence number, topic tag, sender, payload nonce) are laid out once.
 */
export function recipientHeaderEncoder(h: EnvelopeHeader): (recipient: Uint8Array, wrapNonce: Uint8Array, wrappedKey: Uint8Array) => Bytes {
  const shared = encodeHeader({ ...h, kind: KIND_RECIPIENT, recipient: 'x', wrapNonce: new Uint8Array(NONCE_BYTES), wrappedKey: new Uint8Array(WRAPPED_KEY_BYTES) });
  const head = shared.subarray(0, shared.length - (1 + 1 + 2 * NONCE_BYTES + WRAPPED_KEY_BYTES)); // up to the recipient field
  const payloadNonce = h.payloadNonce;
  return (recipient, wrapNonce, wrappedKey) => {
    if (recipient.length === 0 || recipient.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'recipient identity must be 1 to 255 bytes');
    const out = new Uint8Array(head.length + 1 + recipient.length + 2 * NONCE_BYTES + WRAPPED_KEY_BYTES);
    out.set(head);
    let at = head.length;
    out[at++] = recipient.length;
    out.set(recipient, at);
    at += recipient.length;
    out.set(payloadNonce, at);
    out.set(wrapNonce, at + NONCE_BYTES);
    out.set(wrappedKey, at + 2 * NONCE_BYTES);
    return out;
  };
}

/**
 * Kind 3, the part every recipient of one message shares (the trusted component returns it once per
 * message): `u8 version | u8 3 | u64 seq | topic tag | str8 sender | payload nonce | wrap nonce |
 * data key wrapped under the group key | group id`.
 */
export function encodeGroupMessagePart(h: Pick<EnvelopeHeader, 'seq' | 'topicTag' | 'sender' | 'payloadNonce'>, wrapNonce: Uint8Array, wrappedKey: Uint8Array, groupId: Uint8Array): Bytes {
  const sender = utf8Name(h.sender);
  if (sender.length === 0 || sender.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'sender identity must be 1 to 255 bytes');
  const w = new Writer(2 + 8 + h.topicTag.length + 1 + sender.length + h.payloadNonce.length + wrapNonce.length + wrappedKey.length + groupId.length);
  return w.u8(ENVELOPE_VERSION).u8(KIND_GROUP).u64(h.seq).raw(h.topicTag).bytes8(sender).raw(h.payloadNonce).raw(wrapNonce).raw(wrappedKey).raw(groupId).finish();
}

/** Kind 3, the part of one member (formed once per group): `str8 recipient | member nonce | wrapped group key`. */
export function encodeGroupMemberPart(recipient: Uint8Array, memberNonce: Uint8Array, wrappedGroupKey: Uint8Array): Bytes {
  if (recipient.length === 0 || recipient.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'recipient identity must be 1 to 255 bytes');
  const out = new Uint8Array(1 + recipient.length + NONCE_BYTES + WRAPPED_KEY_BYTES);
  out[0] = recipient.length;
  out.set(recipient, 1);
  out.set(memberNonce, 1 + recipient.length);
  out.set(wrappedGroupKey, 1 + recipient.length + NONCE_BYTES);
  return out;
}

/**
 * Kind 4, sender-streamed: `u8 version | u8 4 | u64 seq | topic tag | str8 sender | payload nonce |
 * stream nonce | stream key wrapped under the sender's key | sequence tag`.
 */
function encodeSenderHeader(h: EnvelopeHeader): Bytes {
  if (!Number.isSafeInteger(h.seq) || h.seq < 0) throw new EnvelopeFormatError('bad-length', `sequence number ${h.seq} is not an unsigned safe integer`);
  if (h.recipient !== '') throw new EnvelopeFormatError('bad-identity', 'a sender header names no recipient');
  if (h.seqTag === undefined) throw new EnvelopeFormatError('bad-kind', 'a kind-4 header needs its sequence tag');
  const sender = utf8Name(h.sender);
  if (sender.length === 0 || sender.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'sender identity must be 1 to 255 bytes');
  const w = new Writer(SENDER_HEADER_FIXED + sender.length);
  return w.u8(h.version).u8(KIND_SENDER).u64(h.seq).raw(h.topicTag).bytes8(sender).raw(h.payloadNonce).raw(h.wrapNonce).raw(h.wrappedKey).raw(h.seqTag).finish();
}

/** Bytes of a sender header (kind 4) besides its sender identity. */
const SENDER_HEADER_FIXED = SENDER_AT + 1 + NONCE_BYTES + STREAM_PART_BYTES + SEQ_TAG_BYTES;

/**
 * Whether `bytes` (its `length` bytes from `start`: a header may be read inside its envelope, no
 * view cut for it) is a sender header that parseHeader accepts and that names `sender` (its UTF-8
 * bytes), checked without decoding or allocating: the broker's check of every PUBLISH to a
 * protected topic. False says nothing about why; parse the header to find out.
 */
export function isSenderHeaderOf(bytes: Uint8Array, sender: Uint8Array, start = 0, length = bytes.length - start): boolean {
  const n = sender.length;
  if (n === 0 || n > MAX_IDENTITY_BYTES || length !== SENDER_HEADER_FIXED + n || bytes.length < start + length) return false;
  // version, kind, a sequence number below 2^53 (its top 11 bits clear)
  if (bytes[start] !== ENVELOPE_VERSION || bytes[start + 1] !== KIND_SENDER || bytes[start + 2] !== 0 || bytes[start + 3]! > 0x1f) return false;
  const at = start + SENDER_AT;
  if (bytes[at] !== n) return false;
  for (let i = 0; i < n; i++) if (bytes[at + 1 + i] !== sender[i]) return false;
  return true;
}

/** Offset of a header's `str8 sender` (its length byte). */
export const SENDER_FIELD_AT = SENDER_AT;

/**
 * End of a header's `str8 sender` field (from SENDER_FIELD_AT), or -1 when the header is too short
 * to hold the sender it announces. Read in place, nothing decoded.
 */
export function senderFieldEnd(header: Uint8Array): number {
  if (header.length <= SENDER_AT) return -1;
  const end = SENDER_AT + 1 + header[SENDER_AT]!;
  return end <= header.length ? end : -1;
}

/** Whether a header (of any kind; the one at bytes[start, start + length)) carries the topic tag `tag`, compared in place. */
export function hasTopicTag(bytes: Uint8Array, tag: Uint8Array, start = 0, length = bytes.length - start): boolean {
  if (length < TOPIC_TAG_AT + TOPIC_TAG_BYTES || bytes.length < start + length) return false;
  for (let i = 0; i < TOPIC_TAG_BYTES; i++) if (bytes[start + TOPIC_TAG_AT + i] !== tag[i]) return false;
  return true;
}

/** Offset of the payload nonce in a sender header whose sender has `n` bytes (the stream part and sequence tag follow). */
export function senderHeaderNonceAt(n: number): number {
  return SENDER_AT + 1 + n;
}

/** Offset of the stream part (stream nonce, wrapped stream key) in a sender header whose sender has `n` bytes. */
export function streamPartAt(n: number): number {
  return senderHeaderNonceAt(n) + NONCE_BYTES;
}

/** Offset of the sequence tag in a sender header whose sender has `n` bytes (it ends the header). */
export function seqTagAt(n: number): number {
  return streamPartAt(n) + STREAM_PART_BYTES;
}

/** Offset of the u64 sequence number in every header kind. */
export const SEQ_FIELD_AT = SEQ_AT;

/**
 * The AES-256-CTR counter blocks a stream key turns into a message's sequence tag, data key and
 * payload nonce: `u64 seq | u64 j` for j = 0 to 3 (the sequence number copied from src[seqAt, +8)),
 * written to out[outAt, +STREAM_DERIVED_BYTES). The first is the initial counter block of one
 * AES-256-CTR call over STREAM_DERIVED_BYTES.
 */
export function writeStreamCounterBlocks(out: Uint8Array, outAt: number, src: Uint8Array, seqAt: number): void {
  for (let j = 0; j < STREAM_DERIVED_BYTES / 16; j++) {
    const b = outAt + 16 * j;
    for (let i = 0; i < 8; i++) out[b + i] = src[seqAt + i]!;
    for (let i = 8; i < 15; i++) out[b + i] = 0;
    out[b + 15] = j;
  }
}

/** Length of the kind-3 part shared by the recipients of a message whose sender header is `header`. */
export function groupPartLength(header: Uint8Array, start = 0): number {
  return senderHeaderNonceAt(header[start + SENDER_AT]!) + NONCE_BYTES + GROUP_PART_TAIL;
}

/**
 * Writes to out[at, at + length) (length: groupPartLength) the kind-3 part a message's recipients
 * share, laid out from its sender header at src[headerAt..] (one that isSenderHeaderOf accepted):
 * version, sequence number, topic tag, sender and payload nonce are the header's own bytes, the
 * group id is set; the caller writes the wrap nonce at `at + length - GROUP_PART_TAIL` and the
 * wrapped data key right after it. Equal to encodeGroupMessagePart.
 */
export function writeGroupPartAt(out: Uint8Array, at: number, length: number, src: Uint8Array, headerAt: number, groupId: Uint8Array): void {
  const end = senderHeaderNonceAt(src[headerAt + SENDER_AT]!) + NONCE_BYTES; // up to the payload nonce, as the sender header has them
  for (let i = 0; i < end; i++) out[at + i] = src[headerAt + i]!;
  out[at + 1] = KIND_GROUP;
  for (let i = 0; i < GROUP_ID_BYTES; i++) out[at + length - GROUP_ID_BYTES + i] = groupId[i]!;
}

/** Bytes of a kind-3 shared part after its payload nonce: wrap nonce, wrapped data key, group id. */
export const GROUP_PART_TAIL = NONCE_BYTES + WRAPPED_KEY_BYTES + GROUP_ID_BYTES;

/** The sender field of a header that parseHeader already accepted, without parsing the rest. */
export function senderOf(header: Uint8Array): string {
  const at = SENDER_AT;
  return fromUtf8(header.subarray(at + 1, at + 1 + header[at]!));
}

/** The fields kinds 3 and 4 start with: seq, topic tag, sender, payload nonce, a nonce and the key sealed under it (`what`). */
function readLeadingFields(r: Reader, what: 'data key' | 'stream key') {
  return {
    seq: r.u64('sequence number'),
    topicTag: r.take(TOPIC_TAG_BYTES, 'topic tag'),
    sender: r.str8('sender identity'),
    payloadNonce: r.take(NONCE_BYTES, 'payload nonce'),
    wrapNonce: r.take(NONCE_BYTES, what === 'data key' ? 'wrap nonce' : 'stream nonce'),
    wrappedKey: r.take(WRAPPED_KEY_BYTES, `wrapped ${what}`),
  };
}

function parseGroupHeader(r: Reader, version: number): EnvelopeHeader {
  const lead = readLeadingFields(r, 'data key');
  const id = r.take(GROUP_ID_BYTES, 'group id');
  const recipient = r.str8('recipient identity');
  const group = { id, memberNonce: r.take(NONCE_BYTES, 'member nonce'), wrappedGroupKey: r.take(WRAPPED_KEY_BYTES, 'wrapped group key') };
  r.end('envelope header');
  if (lead.sender.length === 0 || recipient.length === 0) throw new EnvelopeFormatError('bad-identity', 'group header without sender or recipient');
  return { version, kind: KIND_GROUP, ...lead, recipient, group };
}

function parseSenderHeader(r: Reader, version: number): EnvelopeHeader {
  const lead = readLeadingFields(r, 'stream key');
  const seqTag = r.take(SEQ_TAG_BYTES, 'sequence tag');
  r.end('envelope header');
  if (lead.sender.length === 0) throw new EnvelopeFormatError('bad-identity', 'header names no sender');
  return { version, kind: KIND_SENDER, ...lead, recipient: '', seqTag };
}

export function parseHeader(bytes: Uint8Array): EnvelopeHeader {
  const r = new Reader(bytes);
  try {
    const version = r.u8('version');
    if (version !== ENVELOPE_VERSION) throw new EnvelopeFormatError('unsupported-version', `envelope version ${version} is not supported (expected ${ENVELOPE_VERSION})`);
    const kind = r.u8('kind');
    if (kind === KIND_GROUP) return parseGroupHeader(r, version);
    if (kind === KIND_SENDER) return parseSenderHeader(r, version);
    if (kind === 1) throw new EnvelopeFormatError('bad-kind', 'header kind 1 (a data key wrapped per message) is retired: publish with a current client');
    if (kind !== KIND_RECIPIENT) throw new EnvelopeFormatError('bad-kind', `unknown header kind ${kind}`);
    const h: EnvelopeHeader = {
      version,
      kind,
      seq: r.u64('sequence number'),
      topicTag: r.take(TOPIC_TAG_BYTES, 'topic tag'),
      sender: r.str8('sender identity'),
      recipient: r.str8('recipient identity'),
      payloadNonce: r.take(NONCE_BYTES, 'payload nonce'),
      wrapNonce: r.take(NONCE_BYTES, 'wrap nonce'),
      wrappedKey: r.take(WRAPPED_KEY_BYTES, 'wrapped data key'),
    };
    r.end('envelope header');
    if (h.sender.length === 0) throw new EnvelopeFormatError('bad-identity', 'header names no sender');
    if (h.recipient.length === 0) throw new EnvelopeFormatError('bad-identity', 'recipient-wrapped header names no recipient');
    return h;
  } catch (err) {
    if (err instanceof EnvelopeFormatError) throw err;
    if (err instanceof TruncatedError) throw new EnvelopeFormatError('truncated', `envelope header ${err.message}`);
    throw new EnvelopeFormatError('bad-length', `envelope header: ${(err as Error).message}`);
  }
}

const PAYLOAD_LABEL = utf8('mqt-tz/1 payload');
const WRAP_LABEL = utf8('mqt-tz/1 wrap');
export const TOPIC_TAG_LABEL = utf8('mqt-tz/1 topic');

// The associated data below are built on every message by the trusted component and the clients:
// each string is encoded once and the buffer is allocated at its exact size.

/** Associated data of the payload AEAD: version, sequence number, topic and sender. */
export function payloadAd(seq: number, topic: string, sender: string): Bytes {
  const t = utf8Name(topic);
  const s = utf8Name(sender);
  return new Writer(PAYLOAD_LABEL.length + 1 + 8 + 2 + t.length + 1 + s.length).raw(PAYLOAD_LABEL).u8(ENVELOPE_VERSION).u64(seq).u16(t.length).raw(t).bytes8(s).finish();
}

const STREAM_LABEL = utf8('mqt-tz/1 stream');

/** Associated data of a stream key wrapped under its publisher's key: the stream is bound to one topic and sender. */
export function streamAd(topic: string, sender: string): Bytes {
  const t = utf8Name(topic);
  const s = utf8Name(sender);
  return new Writer(STREAM_LABEL.length + 1 + 2 + t.length + 1 + s.length).raw(STREAM_LABEL).u8(ENVELOPE_VERSION).u16(t.length).raw(t).bytes8(s).finish();
}

/** Associated data of a recipient's data-key wrap (kind 2), naming the recipient. */
export function wrapAd(kind: number, seq: number, topic: string, sender: string, recipient: string, payloadNonce: Uint8Array): Bytes {
  const t = utf8Name(topic);
  const s = utf8Name(sender);
  const r = utf8Name(recipient);
  return new Writer(WRAP_LABEL.length + 2 + 8 + 2 + t.length + 2 + s.length + r.length + payloadNonce.length)
    .raw(WRAP_LABEL).u8(ENVELOPE_VERSION).u8(kind).u64(seq).u16(t.length).raw(t).bytes8(s).bytes8(r).raw(payloadNonce).finish();
}

const GROUP_WRAP_LABEL = utf8('mqt-tz/1 group wrap');
const GROUP_KEY_LABEL = utf8('mqt-tz/1 group key');

/** Associated data of a data key wrapped under a group key (kind 3). */
export function groupWrapAd(seq: number, topic: string, sender: string, payloadNonce: Uint8Array, groupId: Uint8Array): Bytes {
  const t = utf8Name(topic);
  const s = utf8Name(sender);
  return new Writer(GROUP_WRAP_LABEL.length + 1 + 8 + 2 + t.length + 1 + s.length + payloadNonce.length + groupId.length)
    .raw(GROUP_WRAP_LABEL).u8(ENVELOPE_VERSION).u64(seq).u16(t.length).raw(t).bytes8(s).raw(payloadNonce).raw(groupId).finish();
}

/**
 * An associated data made once for a stream of messages (one sender, one topic): only the sequence
 * number and the payload nonce change from message to message, and `fillAd` writes them in place.
 */
export interface AdTemplate {
  readonly bytes: Bytes;
  readonly seqAt: number;
  readonly nonceAt: number;
}

/** `groupWrapAd(·, topic, sender, ·, groupId)`. */
export function groupWrapAdTemplate(topic: string, sender: string, groupId: Uint8Array): AdTemplate {
  const bytes = groupWrapAd(0, topic, sender, new Uint8Array(NONCE_BYTES), groupId);
  return { bytes, seqAt: GROUP_WRAP_LABEL.length + 1, nonceAt: bytes.length - NONCE_BYTES - groupId.length };
}

/**
 * Writes the sequence number and payload nonce of a sender header (one that isSenderHeaderOf
 * accepted) into the template, without allocating; returns the template's bytes.
 */
export function fillAd(t: AdTemplate, header: Uint8Array, start = 0): Bytes {
  const ad = t.bytes;
  for (let i = 0; i < 8; i++) ad[t.seqAt + i] = header[start + SEQ_AT + i]!;
  const from = start + senderHeaderNonceAt(header[start + SENDER_AT]!);
  for (let i = 0; i < NONCE_BYTES; i++) ad[t.nonceAt + i] = header[from + i]!;
  return ad;
}

/** Associated data of a group key wrapped for one member: the group is bound to one topic. */
export function groupKeyAd(topic: string, recipient: string | Uint8Array, groupId: Uint8Array): Bytes {
  const t = utf8Name(topic);
  const r = typeof recipient === 'string' ? utf8Name(recipient) : recipient;
  if (r.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'identity longer than 255 bytes');
  return new Writer(GROUP_KEY_LABEL.length + 1 + 2 + t.length + 1 + r.length + groupId.length)
    .raw(GROUP_KEY_LABEL).u8(ENVELOPE_VERSION).u16(t.length).raw(t).bytes8(r).raw(groupId).finish();
}

/**
 * `wrapAd(KIND_RECIPIENT, ...)` for the many recipients of one message: the part they share is
 * built once, each recipient costs one small allocation (the re-wrap hot path).
 */
export function recipientWrapAd(seq: number, topic: string, sender: string, payloadNonce: Uint8Array): (recipient: string | Uint8Array) => Bytes {
  const prefix = new Writer().raw(WRAP_LABEL).u8(ENVELOPE_VERSION).u8(KIND_RECIPIENT).u64(seq).str16(topic).str8(sender).finish();
  return (recipient) => {
    const r = typeof recipient === 'string' ? utf8Name(recipient) : recipient;
    if (r.length > MAX_IDENTITY_BYTES) throw new EnvelopeFormatError('bad-identity', 'identity longer than 255 bytes');
    const out = new Uint8Array(prefix.length + 1 + r.length + payloadNonce.length);
    out.set(prefix);
    out[prefix.length] = r.length;
    out.set(r, prefix.length + 1);
    out.set(payloadNonce, prefix.length + 1 + r.length);
    return out;
  };
}

/** Input of the topic tag hash (the caller hashes it with its own SHA-256). */
export function topicTagInput(topic: string): Bytes {
  return concat(TOPIC_TAG_LABEL, utf8(topic));
}

/** Identities are non-empty UTF-8 strings of at most 255 bytes (they travel in a u8-prefixed field). */
export function checkIdentity(identity: string): boolean {
  if (identity.length === 0 || identity.length > MAX_IDENTITY_BYTES) return false;
  return utf8(identity).length <= MAX_IDENTITY_BYTES;
}
