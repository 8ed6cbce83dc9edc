// RFC 9180 HPKE sender side, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-GCM
// (aead 1 = AES-128-GCM for the RFC's test vector, 2 = AES-256-GCM used by enrolment).
import { concat, utf8, type Bytes } from '../../envelope/bytes.js';
import { aesKey, aesSeal, bs, hkdfExpand, hkdfExtract } from './webcrypto.js';

const subtle = (): SubtleCrypto => globalThis.crypto.subtle;
const VERSION = utf8('HPKE-v1');
const KEM_SUITE = new Uint8Array([0x4b, 0x45, 0x4d, 0x00, 0x20]);
const PKCS8_X25519 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

export type AesAeadId = 1 | 2;

function labeledExtract(suite: Uint8Array, salt: Uint8Array, label: string, ikm: Uint8Array): Promise<Bytes> {
  return hkdfExtract(salt, concat(VERSION, suite, utf8(label), ikm));
}

function labeledExpand(suite: Uint8Array, prk: Uint8Array, label: string, info: Uint8Array, length: number): Promise<Bytes> {
  return hkdfExpand(prk, concat(new Uint8Array([length >> 8, length & 0xff]), VERSION, suite, utf8(label), info), length);
}

/** Imports a raw X25519 private key (known-answer tests only; real senders use a fresh one). */
export function importX25519Private(raw: Uint8Array): Promise<CryptoKey> {
  return subtle().importKey('pkcs8', bs(concat(PKCS8_X25519, raw)), { name: 'X25519' }, true, ['deriveBits']);
}

export interface SenderContext {
  enc: Bytes;
  sharedSecret: Bytes;
  key: Bytes;
  baseNonce: Bytes;
  /** Seals with the next sequence number. */
  seal(aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes>;
  /** Known-answer tests skip sequence numbers. */
  setSequence(seq: number): void;
}

export async function setupBaseS(pkR: Uint8Array, info: Uint8Array, aead: AesAeadId, ephemeralPrivate?: CryptoKey): Promise<SenderContext> {
  let skE = ephemeralPrivate;
  let enc: Bytes;
  if (skE === undefined) {
    const pair = (await subtle().generateKey({ name: 'X25519' }, true, ['deriveBits'])) as CryptoKeyPair;
    skE = pair.privateKey;
    enc = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
  } else {
    // The public half of an imported private key: via JWK, which carries x.
    const jwk = await subtle().exportKey('jwk', skE);
    const pub = await subtle().importKey('jwk', { kty: 'OKP', crv: 'X25519', x: jwk.x! }, { name: 'X25519' }, true, []);
    enc = new Uint8Array(await subtle().exportKey('raw', pub));
  }
  const pub = await subtle().importKey('raw', bs(pkR), { name: 'X25519' }, false, []);
  const dh = new Uint8Array(await subtle().deriveBits({ name: 'X25519', public: pub }, skE, 256));
  if (dh.every((b) => b === 0)) throw new Error('X25519 produced the all-zero shared secret');
  const eaePrk = await labeledExtract(KEM_SUITE, new Uint8Array(0), 'eae_prk', dh);
  const sharedSecret = await labeledExpand(KEM_SUITE, eaePrk, 'shared_secret', concat(enc, pkR), 32);

  const suite = new Uint8Array([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, aead]);
  const empty = new Uint8Array(0);
  const context = concat(new Uint8Array([0]), await labeledExtract(suite, empty, 'psk_id_hash', empty), await labeledExtract(suite, empty, 'info_hash', info));
  const secret = await labeledExtract(suite, sharedSecret, 'secret', empty);
  const key = await labeledExpand(suite, secret, 'key', context, aead === 1 ? 16 : 32);
  const baseNonce = await labeledExpand(suite, secret, 'base_nonce', context, 12);
  const cryptoKey = await aesKey(key);
  let seq = 0;
  return {
    enc,
    sharedSecret,
    key,
    baseNonce,
    async seal(aad, plaintext) {
      const nonce = Uint8Array.from(baseNonce);
      for (let i = 11, s = seq; i >= 6 && s > 0; i--, s = Math.floor(s / 256)) nonce[i]! ^= s & 0xff;
      seq++;
      return aesSeal(cryptoKey, nonce, plaintext, aad);
    },
    setSequence(s) {
      seq = s;
    },
  };
}
