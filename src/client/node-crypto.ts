// The SDK's per-message primitives on node:crypto, for Node clients (installed by the Node entry,
// src/client/index.ts). Same bytes as WebCrypto's AES-256-GCM, AES-256-CTR and SHA-256; keys the SDK holds as
// non-extractable CryptoKeys are used through KeyObject.from, never exported.
import { KeyObject, createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import type { Bytes } from '../envelope/bytes.js';
import { randomNonce } from '../envelope/nonces.js';
import type { FastCrypto } from './crypto/webcrypto.js';

const TAG_BYTES = 16;
const keyObjects = new WeakMap<CryptoKey, KeyObject>();

function keyOf(key: CryptoKey | Uint8Array): KeyObject | Uint8Array {
  if (key instanceof Uint8Array) return key;
  let o = keyObjects.get(key);
  if (o === undefined) {
    o = KeyObject.from(key);
    keyObjects.set(key, o);
  }
  return o;
}

function bytesOf(b: Buffer): Bytes {
  return new Uint8Array(b.buffer, b.byteOffset, b.length) as Bytes;
}

export const nodeCrypto: FastCrypto = {
  seal(key, nonce, plaintext, ad) {
    const c = createCipheriv('aes-256-gcm', keyOf(key), nonce, { authTagLength: TAG_BYTES });
    c.setAAD(ad);
    const out = Buffer.allocUnsafe(plaintext.length + TAG_BYTES);
    const n = c.update(plaintext).copy(out, 0);
    c.final();
    c.getAuthTag().copy(out, n);
    return bytesOf(out);
  },
  open(key, nonce, sealed, ad) {
    if (sealed.length < TAG_BYTES) return undefined;
    const d = createDecipheriv('aes-256-gcm', keyOf(key), nonce, { authTagLength: TAG_BYTES });
    d.setAAD(ad);
    d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
    const plaintext = d.update(sealed.subarray(0, sealed.length - TAG_BYTES));
    try {
      d.final();
    } catch {
      plaintext.fill(0); // authentication failed: nothing decrypted leaves
      return undefined;
    }
    return bytesOf(plaintext);
  },
  keystream(key, counter, length) {
    return bytesOf(createCipheriv('aes-256-ctr', key, counter).update(Buffer.alloc(length)));
  },
  sha256(data) {
    return bytesOf(createHash('sha256').update(data).digest());
  },
  // from a pool filled 4 KiB at a time: one generator call per ~70 envelopes, not three per envelope
  random: (n) => bytesOf(randomNonce(n)),
};
