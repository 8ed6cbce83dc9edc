// AES-256-GCM (NIST SP 800-38D, 96-bit nonces) for a key used on every message: the data-key
// wraps of the hot path. node:crypto's createCipheriv costs ~10 µs per call on a small VM, almost
// all of it setting up a fresh OpenSSL context and key schedule, for 32 bytes of work. Here the
// key schedule is made once: one AES-256-ECB context per key serves as the block cipher (counter
// blocks and the tag mask, one native call per message) and GHASH runs in JS over a table of
// multiples of H, a byte at a time (Shoup's 8-bit table method). The output is standard AES-GCM,
// byte for byte: tests check it against node:crypto in both directions.
//
// Table lookups depend on secret data (H and the ciphertext hash): cache-timing side channels are
// outside the threat model (docs/protocol.md §1), as they are for the OpenSSL build Node ships on
// CPUs without carry-less multiplication.
import { createCipheriv, type Cipher } from 'node:crypto';
import { randomNonce } from '../envelope/nonces.js';

const BLOCK = 16;
const TAG_BYTES = 16;
const NONCE_BYTES = 12;
/**
 * Reduction of the byte shifted out when z is multiplied by x^8: bit j of that byte stands for
 * x^(135-j), i.e. the GCM polynomial (0xe1 in the top byte) shifted right by 7-j bits.
 */
const REM_8BIT = Uint32Array.from({ length: 256 }, (_, b) => {
  let r = 0;
  for (let j = 0; j < 8; j++) if (b & (1 << j)) r ^= 0xe1000000 >>> (7 - j);
  return r;
});

/** out[at..at+4) = big-endian word `z` XOR mask[m..m+4). */
function putMasked(out: Uint8Array, at: number, z: number, mask: Uint8Array, m: number): void {
  const v = z ^ ((mask[m]! << 24) | (mask[m + 1]! << 16) | (mask[m + 2]! << 8) | mask[m + 3]!);
  out[at] = v >>> 24;
  out[at + 1] = (v >>> 16) & 0xff;
  out[at + 2] = (v >>> 8) & 0xff;
  out[at + 3] = v & 0xff;
}

/** `blocks` counter blocks at out[at..] for the nonce at nonces[from..]: J0 = nonce || 1, then inc32. */
function writeCounterBlocks(out: Buffer, at: number, nonces: Uint8Array, from: number, blocks: number): void {
  for (let b = 0; b < blocks; b++) {
    const o = at + b * BLOCK;
    for (let i = 0; i < NONCE_BYTES; i++) out[o + i] = nonces[from + i]!;
    out.writeUInt32BE(b + 1, o + NONCE_BYTES);
  }
}

/** Messages in one batch from which a key gets its wide table (below: a key on a slow stream keeps 4 KiB). */
const WIDE_FROM_BATCH = 8;

export class GcmKey {
  private readonly ecb: Cipher;
  /** b·H for every byte value b, four big-endian 32-bit words each (4 KiB). */
  private readonly table = new Uint32Array(256 * 4);
  /**
   * For keys of busy streams: b·H·x^(8p) for every byte value b at every byte position p (64 KiB),
   * so multiplying by H is sixteen lookups with no shifting or reduction in between (~2x faster
   * than the byte-at-a-time walk over `table`). Made at the first batch of WIDE_FROM_BATCH messages.
   */
  private wide: Uint32Array | undefined;
  /** The running hash, four big-endian words. */
  private z0 = 0;
  private z1 = 0;
  private z2 = 0;
  private z3 = 0;
  /** The tag an opened message must carry (compared, then overwritten by the next open). */
  private readonly expected = Buffer.alloc(TAG_BYTES);
  /** A zero-padded last block. */
  private readonly last = new Uint8Array(BLOCK);
  /** Counter blocks in, keystream out: J0 (tag mask) then J0+1, J0+2... */
  private counters = Buffer.alloc(3 * BLOCK);
  /**
   * The keystream of the operation under way: E(J0) at ks[ksAt], the blocks for the data after it.
   * Offsets instead of views: a batch's keystreams are one buffer, and a view per message was a
   * tenth of the trusted process's time (allocation and the garbage collection that follows).
   */
  private ks: Buffer = this.counters;
  private ksAt = 0;
  private ksBlocks = 0;
  /**
   * Keystreams made ahead, in one call of the block cipher, for nonces known in advance (the
   * messages of a batch): `aheadBlocks` blocks per nonce, each used once, in any order of use.
   */
  private ahead: Buffer | undefined;
  private aheadNonces: Buffer | undefined;
  private aheadBlocks = 0;
  private aheadCount = 0;
  /** Nonces before this index are used (or skipped); fresh nonces are handed out from here. */
  private aheadNext = 0;

  constructor(key: Uint8Array) {
    if (key.length !== 32) throw new RangeError('AES-256-GCM needs a 32-byte key');
    this.ecb = createCipheriv('aes-256-ecb', key, null);
    this.ecb.setAutoPadding(false);
    const h = this.ecb.update(Buffer.alloc(BLOCK));
    this.initTable(h.readUInt32BE(0), h.readUInt32BE(4), h.readUInt32BE(8), h.readUInt32BE(12));
    h.fill(0);
  }

  /** `ciphertext || tag`. */
  seal(nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES);
    this.sealInto(out, 0, nonce, plaintext, ad);
    return out;
  }

  /** Writes `ciphertext || tag` to out[at, at + plaintext.length + 16): no allocation besides the keystream. */
  sealInto(out: Uint8Array, at: number, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): void {
    if (out.length < at + plaintext.length + TAG_BYTES) throw new RangeError('output too short for ciphertext and tag');
    if (nonce.length !== NONCE_BYTES) throw new RangeError('this AES-GCM takes 12-byte nonces only');
    this.selectKeystream(nonce, 0, plaintext.length);
    this.sealSelected(out, at, plaintext, 0, plaintext.length, ad);
  }

  /** The plaintext, or undefined when `sealed` fails authentication (nothing is decrypted then). */
  open(nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer | undefined {
    if (sealed.length < TAG_BYTES) return undefined;
    if (nonce.length !== NONCE_BYTES) throw new RangeError('this AES-GCM takes 12-byte nonces only');
    const n = sealed.length - TAG_BYTES;
    this.selectKeystream(nonce, 0, n);
    if (!this.authentic(sealed, 0, n, ad)) return undefined;
    const out = Buffer.allocUnsafe(n);
    this.decryptSelected(sealed, 0, n, out, 0);
    return out;
  }

  /**
   * `open` by offsets: `ciphertext || tag` at src[sealedAt, +sealedLength) under the nonce at
   * nonceSrc[nonceAt, +12), the plaintext written to out[outAt..]. false, with nothing written,
   * when it fails authentication.
   */
  openInto(nonceSrc: Uint8Array, nonceAt: number, src: Uint8Array, sealedAt: number, sealedLength: number, ad: Uint8Array, out: Uint8Array, outAt: number): boolean {
    const n = sealedLength - TAG_BYTES;
    if (n < 0 || src.length < sealedAt + sealedLength || nonceSrc.length < nonceAt + NONCE_BYTES) return false;
    if (out.length < outAt + n) throw new RangeError('output too short for the plaintext');
    this.selectKeystream(nonceSrc, nonceAt, n);
    if (!this.authentic(src, sealedAt, n, ad)) return false;
    this.decryptSelected(src, sealedAt, n, out, outAt);
    return true;
  }

  /**
   * Makes the keystreams for `count` nonces (12 bytes each, back to back in `nonces`) of messages of
   * `bytes` bytes, in one call of the block cipher; opens and seals with those nonces then use them.
   * Replaces (and zeroes) what an earlier call made and was not used.
   */
  prepare(nonces: Uint8Array, count: number, bytes: number): void {
    this.dropPrepared();
    if (this.wide === undefined && count >= WIDE_FROM_BATCH) this.wide = this.widen();
    const blocks = 1 + Math.ceil(bytes / BLOCK);
    const c = Buffer.allocUnsafe(count * blocks * BLOCK);
    for (let k = 0; k < count; k++) writeCounterBlocks(c, k * blocks * BLOCK, nonces, k * NONCE_BYTES, blocks);
    this.ahead = this.ecb.update(c);
    this.aheadNonces = Buffer.from(nonces.subarray(0, count * NONCE_BYTES));
    this.aheadBlocks = blocks;
    this.aheadCount = count;
    this.aheadNext = 0;
  }

  /** `prepare` for `count` fresh random nonces, which `sealFreshAt` then hands out in turn. */
  prepareFresh(count: number, bytes: number): void {
    this.prepare(randomNonce(count * NONCE_BYTES), count, bytes);
  }

  /** Zeroes and forgets the keystreams made ahead and not used. */
  dropPrepared(): void {
    this.ahead?.fill(0);
    this.ahead = undefined;
    this.aheadNonces = undefined;
    this.aheadCount = 0;
    this.aheadNext = 0;
  }

  /**
   * Seals src[from, +length) under a fresh random nonce, written to out[nonceAt, +12), `ciphertext ||
   * tag` right after it: a nonce made ahead by `prepareFresh` when one is left, else a new one.
   */
  sealFreshAt(out: Uint8Array, nonceAt: number, src: Uint8Array, from: number, length: number, ad: Uint8Array): void {
    const at = nonceAt + NONCE_BYTES;
    if (out.length < at + length + TAG_BYTES) throw new RangeError('output too short for nonce, ciphertext and tag');
    const blocks = 1 + Math.ceil(length / BLOCK);
    const k = this.aheadNext;
    if (k < this.aheadCount) {
      // the nonce is taken (never handed out again) whether or not its keystream fits this length
      this.aheadNext = k + 1;
      const nonces = this.aheadNonces!;
      for (let i = 0; i < NONCE_BYTES; i++) out[nonceAt + i] = nonces[k * NONCE_BYTES + i]!;
      if (blocks === this.aheadBlocks) this.useKeystream(this.ahead!, k * blocks * BLOCK, blocks);
      else this.computeKeystream(out, nonceAt, blocks);
    } else {
      out.set(randomNonce(NONCE_BYTES), nonceAt);
      this.computeKeystream(out, nonceAt, blocks);
    }
    this.sealSelected(out, at, src, from, length, ad);
  }

  /** Encrypts src[from, +n) to out[at..] and writes the tag after it, with the selected keystream; then zeroes it. */
  private sealSelected(out: Uint8Array, at: number, src: Uint8Array, from: number, n: number, ad: Uint8Array): void {
    const ks = this.ks;
    const s = this.ksAt + BLOCK;
    for (let i = 0; i < n; i++) out[at + i] = src[from + i]! ^ ks[s + i]!;
    this.tag(ad, out, at, n, out, at + n);
    this.dropKeystream();
  }

  /** Whether the tag after src[at, +n) is the one the selected keystream gives; zeroes the keystream if not. */
  private authentic(src: Uint8Array, at: number, n: number, ad: Uint8Array): boolean {
    const expected = this.expected;
    this.tag(ad, src, at, n, expected, 0);
    let diff = 0; // constant time, as timingSafeEqual
    for (let i = 0; i < TAG_BYTES; i++) diff |= expected[i]! ^ src[at + n + i]!;
    expected.fill(0);
    if (diff !== 0) this.dropKeystream();
    return diff === 0;
  }

  /** Decrypts src[at, +n) to out[outAt..] with the selected keystream, then zeroes it. */
  private decryptSelected(src: Uint8Array, at: number, n: number, out: Uint8Array, outAt: number): void {
    const ks = this.ks;
    const s = this.ksAt + BLOCK;
    for (let i = 0; i < n; i++) out[outAt + i] = src[at + i]! ^ ks[s + i]!;
    this.dropKeystream();
  }

  /** Selects the keystream for the nonce at nonceSrc[nonceAt, +12) and `n` bytes: made ahead, or computed now. */
  private selectKeystream(nonceSrc: Uint8Array, nonceAt: number, n: number): void {
    const blocks = 1 + Math.ceil(n / BLOCK);
    if (this.aheadNext < this.aheadCount && blocks === this.aheadBlocks) {
      const k = this.preparedFor(nonceSrc, nonceAt);
      if (k >= 0) return this.useKeystream(this.ahead!, k * blocks * BLOCK, blocks);
    }
    this.computeKeystream(nonceSrc, nonceAt, blocks);
  }

  /** The index of the keystream made ahead for this nonce, marked used; -1 if none. */
  private preparedFor(nonceSrc: Uint8Array, nonceAt: number): number {
    const nonces = this.aheadNonces!;
    for (let k = this.aheadNext; k < this.aheadCount; k++) {
      let same = true;
      for (let i = 0; i < NONCE_BYTES && same; i++) same = nonces[k * NONCE_BYTES + i] === nonceSrc[nonceAt + i];
      if (!same) continue;
      // entries skipped on the way are never used: a keystream serves one message only
      this.aheadNext = k + 1;
      return k;
    }
    return -1;
  }

  /** E(J0) and `blocks - 1` keystream blocks for the nonce at nonceSrc[nonceAt, +12), in one call of the block cipher. */
  private computeKeystream(nonceSrc: Uint8Array, nonceAt: number, blocks: number): void {
    if (this.counters.length !== blocks * BLOCK) this.counters = Buffer.alloc(blocks * BLOCK);
    writeCounterBlocks(this.counters, 0, nonceSrc, nonceAt, blocks);
    this.useKeystream(this.ecb.update(this.counters), 0, blocks);
  }

  private useKeystream(ks: Buffer, at: number, blocks: number): void {
    this.ks = ks;
    this.ksAt = at;
    this.ksBlocks = blocks;
  }

  /** Zeroes the keystream just used (a keystream serves one message only). */
  private dropKeystream(): void {
    this.ks.fill(0, this.ksAt, this.ksAt + this.ksBlocks * BLOCK);
    this.ksBlocks = 0;
  }

  /** GHASH(ad, ct[ctAt, +ctLength)) XOR E(J0), written to out[at..at+16). */
  private tag(ad: Uint8Array, ct: Uint8Array, ctAt: number, ctLength: number, out: Uint8Array, at: number): void {
    this.z0 = this.z1 = this.z2 = this.z3 = 0;
    this.absorb(ad, 0, ad.length);
    this.absorb(ct, ctAt, ctLength);
    // length block: bit lengths of AD and ciphertext as two 64-bit big-endian numbers
    const adBits = ad.length * 8;
    const ctBits = ctLength * 8;
    this.multiplyH(Math.floor(adBits / 0x100000000), adBits >>> 0, Math.floor(ctBits / 0x100000000), ctBits >>> 0);
    const ks = this.ks;
    const m = this.ksAt;
    putMasked(out, at, this.z0, ks, m);
    putMasked(out, at + 4, this.z1, ks, m + 4);
    putMasked(out, at + 8, this.z2, ks, m + 8);
    putMasked(out, at + 12, this.z3, ks, m + 12);
    this.z0 = this.z1 = this.z2 = this.z3 = 0;
  }

  /** z = (z XOR block)·H for each 16-byte block of d[from, from + n), the last one zero-padded. */
  private absorb(d: Uint8Array, from: number, n: number): void {
    const end = from + n;
    let at = from;
    for (; at + BLOCK <= end; at += BLOCK) {
      this.multiplyH(
        (d[at]! << 24) | (d[at + 1]! << 16) | (d[at + 2]! << 8) | d[at + 3]!,
        (d[at + 4]! << 24) | (d[at + 5]! << 16) | (d[at + 6]! << 8) | d[at + 7]!,
        (d[at + 8]! << 24) | (d[at + 9]! << 16) | (d[at + 10]! << 8) | d[at + 11]!,
        (d[at + 12]! << 24) | (d[at + 13]! << 16) | (d[at + 14]! << 8) | d[at + 15]!,
      );
    }
    if (at < end) {
      const last = this.last;
      last.fill(0);
      for (let i = 0; at + i < end; i++) last[i] = d[at + i]!;
      this.absorb(last, 0, BLOCK);
    }
  }

  /** z = (z XOR w)·H in GF(2^128), a byte at a time from the last byte to the first. */
  private multiplyH(w0: number, w1: number, w2: number, w3: number): void {
    if (this.wide !== undefined) return this.multiplyWide(this.wide, this.z0 ^ w0, this.z1 ^ w1, this.z2 ^ w2, this.z3 ^ w3);
    const t = this.table;
    const x0 = this.z0 ^ w0;
    const x1 = this.z1 ^ w1;
    const x2 = this.z2 ^ w2;
    const x3 = this.z3 ^ w3;
    let m = (x3 & 0xff) << 2;
    let z0 = t[m]!;
    let z1 = t[m + 1]!;
    let z2 = t[m + 2]!;
    let z3 = t[m + 3]!;
    // bytes 14..0: the rest of x3 from its second-lowest byte, then x2, x1, x0 from their lowest
    for (let i = 14; i >= 0; i--) {
      const word = i >= 12 ? x3 : i >= 8 ? x2 : i >= 4 ? x1 : x0;
      const rem = z3 & 0xff;
      z3 = (z3 >>> 8) | (z2 << 24);
      z2 = (z2 >>> 8) | (z1 << 24);
      z1 = (z1 >>> 8) | (z0 << 24);
      z0 = (z0 >>> 8) ^ REM_8BIT[rem]!;
      m = ((word >>> ((3 - (i & 3)) << 3)) & 0xff) << 2;
      z0 ^= t[m]!;
      z1 ^= t[m + 1]!;
      z2 ^= t[m + 2]!;
      z3 ^= t[m + 3]!;
    }
    this.z0 = z0;
    this.z1 = z1;
    this.z2 = z2;
    this.z3 = z3;
  }

  /** z = x·H from the wide table: the sum over the 16 bytes of x of (byte at position p)·H·x^(8p). */
  private multiplyWide(w: Uint32Array, x0: number, x1: number, x2: number, x3: number): void {
    // byte p of x (big-endian order), which the walk above multiplies by x^8 p times; unrolled (a loop
    // over the sixteen bytes took ~30 % longer)
    let m = (x0 >>> 24) << 2;
    let z0 = w[m]!;
    let z1 = w[m + 1]!;
    let z2 = w[m + 2]!;
    let z3 = w[m + 3]!;
    m = 1024 + (((x0 >>> 16) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 2048 + (((x0 >>> 8) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 3072 + ((x0 & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 4096 + (((x1 >>> 24) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 5120 + (((x1 >>> 16) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 6144 + (((x1 >>> 8) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 7168 + ((x1 & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 8192 + (((x2 >>> 24) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 9216 + (((x2 >>> 16) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 10240 + (((x2 >>> 8) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 11264 + ((x2 & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 12288 + (((x3 >>> 24) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 13312 + (((x3 >>> 16) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 14336 + (((x3 >>> 8) & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    m = 15360 + ((x3 & 0xff) << 2);
    z0 ^= w[m]!;
    z1 ^= w[m + 1]!;
    z2 ^= w[m + 2]!;
    z3 ^= w[m + 3]!;
    this.z0 = z0;
    this.z1 = z1;
    this.z2 = z2;
    this.z3 = z3;
  }

  /** wide[p][b] = table[b]·x^(8p): position 0 is the table itself, each next one shifted by a byte and reduced. */
  private widen(): Uint32Array {
    const w = new Uint32Array(16 * 256 * 4);
    w.set(this.table, 0);
    for (let p = 1; p < 16; p++) {
      for (let b = 0; b < 256; b++) {
        const from = ((p - 1) * 256 + b) * 4;
        const z0 = w[from]!;
        const z1 = w[from + 1]!;
        const z2 = w[from + 2]!;
        const z3 = w[from + 3]!;
        const to = from + 256 * 4;
        w[to] = (z0 >>> 8) ^ REM_8BIT[z3 & 0xff]!;
        w[to + 1] = (z1 >>> 8) | (z0 << 24);
        w[to + 2] = (z2 >>> 8) | (z1 << 24);
        w[to + 3] = (z3 >>> 8) | (z2 << 24);
      }
    }
    return w;
  }

  /** table[b] = b·H for every byte b, built from H·x^k (bit-reflected, as GCM orders bits). */
  private initTable(h0: number, h1: number, h2: number, h3: number): void {
    const t = this.table;
    let v0 = h0;
    let v1 = h1;
    let v2 = h2;
    let v3 = h3;
    for (let bit = 128; bit >= 1; bit >>= 1) {
      t[4 * bit] = v0;
      t[4 * bit + 1] = v1;
      t[4 * bit + 2] = v2;
      t[4 * bit + 3] = v3;
      // multiply by x: shift right one bit, reduce by the GCM polynomial (0xe1 in the top byte)
      const carry = v3 & 1;
      v3 = (v3 >>> 1) | (v2 << 31);
      v2 = (v2 >>> 1) | (v1 << 31);
      v1 = (v1 >>> 1) | (v0 << 31);
      v0 = (v0 >>> 1) ^ (carry ? 0xe1000000 : 0);
    }
    // every other byte value: the sum of its highest bit's entry and the rest's (already built)
    for (let b = 3; b < 256; b++) {
      const high = 1 << (31 - Math.clz32(b));
      if (b === high) continue;
      for (let w = 0; w < 4; w++) t[4 * b + w] = t[4 * high + w]! ^ t[4 * (b ^ high) + w]!;
    }
  }
}
