// Pure byte utilities shared by the trusted component, the host and the browser-capable client:
// no `node:` imports and no Buffer, so this file runs anywhere a Uint8Array does.

const utf8Encoder = new TextEncoder();
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

export type Bytes = Uint8Array<ArrayBuffer>;

export function utf8(text: string): Bytes {
  return utf8Encoder.encode(text) as Bytes;
}

/**
 * As many names as the trusted component keeps groups: a fleet of publishers on topics of their
 * own (5 000 ECG patients: 10 000 names) cycled through a smaller table and encoded every name again.
 */
const NAMES_KEPT = 16_384;
const names = new Map<string, Bytes>();

/**
 * `utf8` of a topic or identity, remembered: the associated data of every message repeats the
 * same few names, and each encoding is a native call and an allocation. The bytes are shared:
 * callers copy them and never write to them.
 */
export function utf8Name(text: string): Bytes {
  let b = names.get(text);
  if (b === undefined) {
    b = utf8(text);
    if (names.size >= NAMES_KEPT) names.clear();
    names.set(text, b);
  }
  return b;
}

/** Throws a RangeError naming `what` (a malformed input, not a fault of the code) unless the bytes are UTF-8. */
export function fromUtf8(bytes: Uint8Array, what = 'string'): string {
  try {
    return utf8Decoder.decode(bytes);
  } catch {
    throw new RangeError(`${what} is not valid UTF-8`);
  }
}

export function concat(...parts: readonly Uint8Array[]): Bytes {
  let size = 0;
  for (const p of parts) size += p.length;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Whether b[at, at + length) equals a (compared in place). */
export function equalBytesAt(a: Uint8Array, b: Uint8Array, at: number, length: number): boolean {
  if (a.length !== length || b.length < at + length) return false;
  let diff = 0;
  for (let i = 0; i < length; i++) diff |= a[i]! ^ b[at + i]!;
  return diff === 0;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  return equalBytesAt(a, b, 0, b.length);
}

export function toHex(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += b.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(hex: string): Bytes {
  if (hex.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(hex)) throw new RangeError('invalid hex string');
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
  return out;
}

const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';

export function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    const chars = Math.min(4, Math.ceil(((bytes.length - i) * 8) / 6));
    for (let k = 0; k < chars; k++) s += B64URL[(n >> (18 - 6 * k)) & 63];
  }
  return s;
}

export function fromBase64Url(text: string): Bytes {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) throw new RangeError('invalid base64url string');
  const out = new Uint8Array(Math.floor((text.length * 6) / 8));
  let acc = 0;
  let bits = 0;
  let at = 0;
  for (const ch of text) {
    acc = (acc << 6) | B64URL.indexOf(ch);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[at++] = (acc >> bits) & 0xff;
    }
  }
  return out;
}

/** Thrown by Reader when input is shorter than its declared structure. */
export class TruncatedError extends Error {
  constructor(what: string) {
    super(`truncated input: ${what}`);
    this.name = 'TruncatedError';
  }
}

/** Sequential big-endian reader over a byte array; every read is bounds-checked. */
export class Reader {
  private at = 0;
  private readonly view: DataView;
  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  get offset(): number {
    return this.at;
  }
  get remaining(): number {
    return this.bytes.length - this.at;
  }
  private need(n: number, what: string): void {
    if (this.at + n > this.bytes.length) throw new TruncatedError(what);
  }
  u8(what = 'u8'): number {
    this.need(1, what);
    return this.view.getUint8(this.at++);
  }
  u16(what = 'u16'): number {
    this.need(2, what);
    const v = this.view.getUint16(this.at);
    this.at += 2;
    return v;
  }
  u32(what = 'u32'): number {
    this.need(4, what);
    const v = this.view.getUint32(this.at);
    this.at += 4;
    return v;
  }
  /** u64 limited to Number.MAX_SAFE_INTEGER so it stays a plain number. */
  u64(what = 'u64'): number {
    this.need(8, what);
    const hi = this.view.getUint32(this.at);
    const lo = this.view.getUint32(this.at + 4);
    this.at += 8;
    if (hi > 0x1fffff) throw new RangeError(`${what} exceeds 2^53-1`);
    return hi * 0x100000000 + lo;
  }
  /** Moves past `n` bytes without a view of them; returns where they start. */
  skip(n: number, what = 'bytes'): number {
    this.need(n, what);
    const at = this.at;
    this.at += n;
    return at;
  }
  take(n: number, what = 'bytes'): Uint8Array {
    this.need(n, what);
    const v = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return v;
  }
  /** u8 length-prefixed UTF-8 string. */
  str8(what = 'string'): string {
    return fromUtf8(this.take(this.u8(what), what), what);
  }
  /** u16 length-prefixed UTF-8 string. */
  str16(what = 'string'): string {
    return fromUtf8(this.take(this.u16(what), what), what);
  }
  bytes16(what = 'bytes'): Uint8Array {
    return this.take(this.u16(what), what);
  }
  bytes32(what = 'bytes'): Uint8Array {
    return this.take(this.u32(what), what);
  }
  rest(): Uint8Array {
    return this.take(this.remaining);
  }
  end(what: string): void {
    if (this.at !== this.bytes.length) throw new RangeError(`${what}: ${this.bytes.length - this.at} unexpected trailing bytes`);
  }
}

/** Growable big-endian writer; one final copy in finish(), none when the size given was exact. */
export class Writer {
  private buf: Bytes;
  private view: DataView;
  private at = 0;
  constructor(capacity = 64) {
    this.buf = new Uint8Array(capacity);
    this.view = new DataView(this.buf.buffer);
  }
  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.at));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  u8(v: number): this {
    this.room(1);
    this.view.setUint8(this.at++, v);
    return this;
  }
  u16(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RangeError(`value ${v} does not fit in u16`);
    this.room(2);
    this.view.setUint16(this.at, v);
    this.at += 2;
    return this;
  }
  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new RangeError(`value ${v} does not fit in u32`);
    this.room(4);
    this.view.setUint32(this.at, v);
    this.at += 4;
    return this;
  }
  u64(v: number): this {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`value ${v} is not a safe unsigned integer`);
    this.room(8);
    this.view.setUint32(this.at, Math.floor(v / 0x100000000));
    this.view.setUint32(this.at + 4, v >>> 0);
    this.at += 8;
    return this;
  }
  raw(bytes: Uint8Array): this {
    this.room(bytes.length);
    this.buf.set(bytes, this.at);
    this.at += bytes.length;
    return this;
  }
  str8(text: string): this {
    const b = utf8(text);
    if (b.length > 0xff) throw new RangeError('string longer than 255 bytes');
    return this.u8(b.length).raw(b);
  }
  str16(text: string): this {
    const b = utf8(text);
    return this.u16(b.length).raw(b);
  }
  /** Already UTF-8 encoded string with a u8 length. */
  bytes8(bytes: Uint8Array): this {
    if (bytes.length > 0xff) throw new RangeError('string longer than 255 bytes');
    return this.u8(bytes.length).raw(bytes);
  }
  bytes16(bytes: Uint8Array): this {
    return this.u16(bytes.length).raw(bytes);
  }
  bytes32(bytes: Uint8Array): this {
    return this.u32(bytes.length).raw(bytes);
  }
  /** The bytes written; the Writer must not be used afterwards. */
  finish(): Bytes {
    return this.at === this.buf.length ? this.buf : this.buf.slice(0, this.at);
  }
}
