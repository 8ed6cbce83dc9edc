// AES-256-GCM from node:crypto (OpenSSL: AES-NI and PCLMUL on this hardware, constant time), one
// cipher object per operation: node:crypto has no way to give a GCM context a new nonce. The key
// stays a Buffer of its own: a KeyObject was 1.5-2 µs slower per operation here (4.0 against
// 5.9 µs for 32 bytes). Sealing draws its nonce here, from randomness: no caller can hand one in,
// so no refactor can make two seals share a nonce.
import { createCipheriv, createDecipheriv, type Cipher } from 'node:crypto';
import { KEY_BYTES, NONCE_BYTES, STREAM_DERIVED_BYTES, TAG_BYTES, writeStreamCounterBlocks } from '../envelope/envelope-layout.js';
import { randomNonce } from '../envelope/nonces.js';

/** Bytes a sealed value takes beyond its plaintext: `nonce | ciphertext | tag`. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

export class AeadKey {
  private readonly key: Buffer;

  constructor(raw: Uint8Array) {
    if (raw.length !== KEY_BYTES) throw new RangeError('AES-256-GCM keys are 32 bytes');
    this.key = Buffer.alloc(KEY_BYTES); // not a slice of Node's shared pool
    this.key.set(raw);
  }

  /**
   * Seals `plaintext` under a fresh random nonce and writes `nonce | ciphertext | tag` to
   * out[at, at + plaintext.length + SEAL_OVERHEAD).
   */
  sealInto(out: Uint8Array, at: number, plaintext: Uint8Array, ad: Uint8Array): void {
    const nonce = randomNonce(NONCE_BYTES);
    out.set(nonce, at);
    const c = createCipheriv('aes-256-gcm', this.key, nonce);
    c.setAAD(ad);
    const body = c.update(plaintext);
    c.final();
    out.set(body, at + NONCE_BYTES);
    out.set(c.getAuthTag(), at + NONCE_BYTES + body.length);
  }

  /** `nonce | ciphertext | tag` of `plaintext` under a fresh random nonce. */
  seal(plaintext: Uint8Array, ad: Uint8Array): Buffer {
    const out = Buffer.allocUnsafe(plaintext.length + SEAL_OVERHEAD);
    this.sealInto(out, 0, plaintext, ad);
    return out;
  }

  /**
   * Opens `ciphertext | tag` (src[at, at + length)) sealed under `nonce`; the plaintext, or undefined
   * when authentication fails. The plaintext is a buffer of its own, for the caller to zero.
   */
  open(nonce: Uint8Array, src: Uint8Array, at = 0, length = src.length - at, ad: Uint8Array): Buffer | undefined {
    if (length < TAG_BYTES || src.length < at + length) return undefined;
    const d = createDecipheriv('aes-256-gcm', this.key, nonce);
    d.setAAD(ad);
    d.setAuthTag(src.subarray(at + length - TAG_BYTES, at + length));
    const plain = d.update(src.subarray(at, at + length - TAG_BYTES));
    try {
      d.final();
      return plain;
    } catch {
      plain.fill(0);
      return undefined;
    }
  }
}

/**
 * A publisher's stream key (docs/protocol.md §3, kind 4). A message's sequence tag, data key and
 * payload nonce are the first bytes of the stream key's AES-256-CTR keystream from the counter block
 * `u64 seq | u64 0`. node:crypto cannot give a CTR context a new counter, and a cipher object per
 * message is what made a re-wrap cost two of them; so the keystream blocks are computed here by one
 * kept AES-256-ECB context applied to the counter blocks: the same bytes (tested against
 * `aes-256-ctr`), one cipher call for a whole run of messages. Nothing but AES itself is computed
 * with the key.
 */
export class StreamKey {
  private readonly ecb: Cipher;

  constructor(raw: Uint8Array) {
    if (raw.length !== KEY_BYTES) throw new RangeError('stream keys are 32 bytes');
    this.ecb = createCipheriv('aes-256-ecb', raw, null);
    this.ecb.setAutoPadding(false);
  }

  /**
   * The keystreams (STREAM_DERIVED_BYTES each: sequence tag, data key, payload nonce) of the messages
   * whose u64 sequence numbers are at src[seqAts[m], +8), one after the other: a buffer of its own,
   * for the caller to zero.
   */
  derive(src: Uint8Array, seqAts: readonly number[]): Buffer {
    const blocks = Buffer.alloc(seqAts.length * STREAM_DERIVED_BYTES);
    for (let m = 0; m < seqAts.length; m++) writeStreamCounterBlocks(blocks, m * STREAM_DERIVED_BYTES, src, seqAts[m]!);
    return this.ecb.update(blocks);
  }
}
