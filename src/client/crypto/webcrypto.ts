// Thin WebCrypto wrappers (globalThis.crypto.subtle only: runs in Node 20 and browsers). The
// per-message operations (AES-GCM, SHA-256, random bytes) can be taken over by a faster backend:
// the Node entry of the SDK installs node:crypto's (src/client/node-crypto.ts; a seal of a small
// envelope ~6x faster than WebCrypto in Node 20); browsers keep WebCrypto.
import type { Bytes } from '../../envelope/bytes.js';

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;

/** A synchronous implementation of the per-message primitives, byte for byte the same as WebCrypto's. */
export interface FastCrypto {
  /** AES-256-GCM `ciphertext || tag` under an imported key or raw key bytes. */
  seal(key: CryptoKey | Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Bytes;
  /** undefined when authentication fails. */
  open(key: CryptoKey | Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Bytes | undefined;
  sha256(data: Uint8Array): Bytes;
  /** `length` bytes of the AES-256-CTR keystream of raw key bytes from the 16-byte counter block `counter`. */
  keystream(key: Uint8Array, counter: Uint8Array, length: number): Bytes;
  /** `n` bytes from a cryptographically secure generator. */
  random(n: number): Bytes;
}

let fast: FastCrypto | undefined;

/** Installs (or, with undefined, removes) the backend of the per-message primitives. */
export function useFastCrypto(backend: FastCrypto | undefined): void {
  fast = backend;
}

/** WebCrypto's typings want ArrayBuffer-backed views; every Uint8Array we pass is one. */
export function bs(u: Uint8Array): Bytes {
  return u as Bytes;
}

export function randomBytes(n: number): Bytes {
  if (fast !== undefined) return fast.random(n);
  return globalThis.crypto.getRandomValues(new Uint8Array(n));
}

export async function sha256(data: Uint8Array): Promise<Bytes> {
  if (fast !== undefined) return fast.sha256(data);
  return new Uint8Array(await subtle().digest('SHA-256', bs(data)));
}

export async function hmacKey(raw: Uint8Array, usages: KeyUsage[] = ['sign']): Promise<CryptoKey> {
  // HMAC keys may not be empty in WebCrypto; an empty HKDF salt means HashLen zero bytes (RFC 5869).
  return subtle().importKey('raw', bs(raw.length === 0 ? new Uint8Array(32) : raw), { name: 'HMAC', hash: 'SHA-256' }, false, usages);
}

export async function hmac(key: CryptoKey, data: Uint8Array): Promise<Bytes> {
  return new Uint8Array(await subtle().sign('HMAC', key, bs(data)));
}

export async function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Promise<Bytes> {
  return hmac(await hmacKey(salt), ikm);
}

export async function hkdfExpand(prk: Uint8Array, info: Uint8Array, length: number): Promise<Bytes> {
  const key = await hmacKey(prk);
  const out = new Uint8Array(length);
  let prev: Uint8Array = new Uint8Array(0);
  for (let i = 0, at = 0; at < length; i++, at += 32) {
    const input = new Uint8Array(prev.length + info.length + 1);
    input.set(prev);
    input.set(info, prev.length);
    input[input.length - 1] = i + 1;
    prev = await hmac(key, input);
    out.set(prev.subarray(0, Math.min(32, length - at)), at);
  }
  return out;
}

/** Full HKDF-SHA256 with an empty salt, as the trusted component derives subkeys. */
export async function hkdf(ikm: Uint8Array, info: Uint8Array, length = 32): Promise<Bytes> {
  const key = await subtle().importKey('raw', bs(ikm), 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle().deriveBits({ name: 'HKDF', hash: 'SHA-256', salt: new Uint8Array(0), info: bs(info) }, key, length * 8));
}

export async function aesKey(raw: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey('raw', bs(raw), 'AES-GCM', false, ['encrypt', 'decrypt']);
}

/**
 * AES-256-GCM `ciphertext || tag` under an imported key, or under raw key bytes (a message's
 * one-time data key: imported only when no fast backend is installed).
 */
export async function aesSeal(key: CryptoKey | Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Promise<Bytes> {
  if (fast !== undefined) return fast.seal(key, nonce, plaintext, ad);
  const k = key instanceof Uint8Array ? await aesKey(key) : key;
  return new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(ad), tagLength: 128 }, k, bs(plaintext)));
}

/** `aesSeal`'s inverse; undefined when authentication fails. */
export async function aesOpen(key: CryptoKey | Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Promise<Bytes | undefined> {
  if (fast !== undefined) return fast.open(key, nonce, sealed, ad);
  const k = key instanceof Uint8Array ? await aesKey(key) : key;
  try {
    return new Uint8Array(await subtle().decrypt({ name: 'AES-GCM', iv: bs(nonce), additionalData: bs(ad), tagLength: 128 }, k, bs(sealed)));
  } catch {
    return undefined;
  }
}

/** `aesKeystream`'s counter: the 64 low bits of the block count, as node:crypto's `aes-256-ctr` (no carry past them for our few blocks). */
const CTR_BITS = 64;

/** `length` bytes of the AES-256-CTR keystream of raw key bytes from the counter block `counter` (an encryption of zeros). */
export async function aesKeystream(key: Uint8Array, counter: Uint8Array, length: number): Promise<Bytes> {
  if (fast !== undefined) return fast.keystream(key, counter, length);
  const k = await subtle().importKey('raw', bs(key), 'AES-CTR', false, ['encrypt']);
  return new Uint8Array(await subtle().encrypt({ name: 'AES-CTR', counter: bs(counter), length: CTR_BITS }, k, new Uint8Array(length)));
}

export async function ed25519Verify(publicKey: Uint8Array, signature: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    const key = await subtle().importKey('raw', bs(publicKey), { name: 'Ed25519' }, false, ['verify']);
    return await subtle().verify({ name: 'Ed25519' }, key, bs(signature), bs(data));
  } catch {
    return false;
  }
}
