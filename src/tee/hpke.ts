// RFC 9180 HPKE, base mode only, KEM DHKEM(X25519, HKDF-SHA256), KDF HKDF-SHA256, and the AEADs
// AES-128-GCM (1), AES-256-GCM (2, the suite the protocol uses) and ChaCha20-Poly1305 (3, so the
// RFC's second X25519 test vector can be checked too).
import { createCipheriv, createDecipheriv, createHmac, createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, hkdfSync, type KeyObject } from 'node:crypto';

export const KEM_X25519_HKDF_SHA256 = 0x0020;
export const KDF_HKDF_SHA256 = 0x0001;
export type AeadId = 1 | 2 | 3;
export const AEAD_AES_256_GCM: AeadId = 2;

// Typed as GCM for node's overloads; ChaCha20-Poly1305 takes the same options (tag length 16).
const AEADS: Record<AeadId, { cipher: 'aes-256-gcm'; nk: number }> = {
  1: { cipher: 'aes-128-gcm' as 'aes-256-gcm', nk: 16 },
  2: { cipher: 'aes-256-gcm', nk: 32 },
  3: { cipher: 'chacha20-poly1305' as 'aes-256-gcm', nk: 32 },
};
const NN = 12;
const NT = 16;
const NH = 32;
const VERSION_LABEL = Buffer.from('HPKE-v1');
const KEM_SUITE = Buffer.from([0x4b, 0x45, 0x4d, 0x00, 0x20]); // "KEM" || I2OSP(0x0020, 2)
const PKCS8_X25519 = Buffer.from('302e020100300506032b656e04220420', 'hex');
const SPKI_X25519 = Buffer.from('302a300506032b656e032100', 'hex');

function hpkeSuite(aead: AeadId): Buffer {
  return Buffer.from([0x48, 0x50, 0x4b, 0x45, 0x00, 0x20, 0x00, 0x01, 0x00, aead]); // "HPKE" || kem || kdf || aead
}

/**
 * LabeledExtract then LabeledExpand (RFC 9180 §4) of the secret that extract yields: exactly one
 * HKDF-SHA256 (RFC 5869) of node:crypto, its IKM and info labelled.
 */
function labeledKdf(suite: Buffer, salt: Uint8Array, extractLabel: string, ikm: Uint8Array, expandLabel: string, info: Uint8Array, length: number): Buffer {
  const labeledIkm = Buffer.concat([VERSION_LABEL, suite, Buffer.from(extractLabel), ikm]);
  const labeledInfo = Buffer.concat([Buffer.from([length >> 8, length & 0xff]), VERSION_LABEL, suite, Buffer.from(expandLabel), info]);
  return Buffer.from(hkdfSync('sha256', labeledIkm, salt, labeledInfo, length));
}

/** LabeledExtract alone, for the hashes the key schedule uses as data: HKDF-Extract is HMAC(salt, IKM) (RFC 5869 §2.2). */
function labeledExtract(suite: Buffer, salt: Uint8Array, label: string, ikm: Uint8Array): Buffer {
  return createHmac('sha256', salt).update(Buffer.concat([VERSION_LABEL, suite, Buffer.from(label), ikm])).digest();
}

export function x25519PrivateKey(raw: Uint8Array): KeyObject {
  return createPrivateKey({ key: Buffer.concat([PKCS8_X25519, raw]), format: 'der', type: 'pkcs8' });
}

export function x25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError('X25519 public key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([SPKI_X25519, raw]), format: 'der', type: 'spki' });
}

export function rawPublicKey(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ format: 'der', type: 'spki' }).subarray(-32);
}

export function rawPrivateKey(key: KeyObject): Buffer {
  return key.export({ format: 'der', type: 'pkcs8' }).subarray(-32);
}

export function generateX25519(): { privateKey: KeyObject; publicKey: Buffer } {
  const { privateKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: rawPublicKey(privateKey) };
}

/** RFC 9180 §7.1.3 DeriveKeyPair for X25519. */
export function deriveKeyPair(ikm: Uint8Array): { privateKey: Buffer; publicKey: Buffer } {
  const sk = labeledKdf(KEM_SUITE, Buffer.alloc(0), 'dkp_prk', ikm, 'sk', Buffer.alloc(0), 32);
  return { privateKey: sk, publicKey: rawPublicKey(x25519PrivateKey(sk)) };
}

function dh(sk: KeyObject, pkRaw: Uint8Array): Buffer {
  const z = diffieHellman({ privateKey: sk, publicKey: x25519PublicKey(pkRaw) });
  if (z.every((b) => b === 0)) throw new Error('X25519 produced the all-zero shared secret');
  return z;
}

function extractAndExpand(dhOut: Buffer, enc: Uint8Array, pkR: Uint8Array): Buffer {
  return labeledKdf(KEM_SUITE, Buffer.alloc(0), 'eae_prk', dhOut, 'shared_secret', Buffer.concat([enc, pkR]), NH);
}

/** An HPKE encryption context (RFC 9180 §5.2): one nonce per sequence number. */
export class HpkeContext {
  private seq = 0;
  constructor(
    readonly aead: AeadId,
    readonly key: Buffer,
    readonly baseNonce: Buffer,
    /** Kept for the RFC's known-answer tests; this protocol exports nothing. */
    readonly exporterSecret: Buffer,
  ) {}

  private nonce(): Buffer {
    const n = Buffer.from(this.baseNonce);
    let s = this.seq;
    for (let i = NN - 1; i >= NN - 6 && s > 0; i--, s = Math.floor(s / 256)) n[i]! ^= s & 0xff;
    return n;
  }

  seal(aad: Uint8Array, plaintext: Uint8Array): Buffer {
    const c = createCipheriv(AEADS[this.aead].cipher, this.key, this.nonce(), { authTagLength: NT });
    c.setAAD(aad);
    const out = Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
    this.seq++;
    return out;
  }

  /** Throws when the ciphertext or its associated data were altered. */
  open(aad: Uint8Array, ciphertext: Uint8Array): Buffer {
    if (ciphertext.length < NT) throw new Error('HPKE ciphertext shorter than its tag');
    const d = createDecipheriv(AEADS[this.aead].cipher, this.key, this.nonce(), { authTagLength: NT });
    d.setAAD(aad);
    d.setAuthTag(ciphertext.subarray(ciphertext.length - NT));
    const out = Buffer.concat([d.update(ciphertext.subarray(0, ciphertext.length - NT)), d.final()]);
    this.seq++;
    return out;
  }

  /** Skips to a sequence number (for test vectors that list non-consecutive ones). */
  setSequence(seq: number): void {
    this.seq = seq;
  }
}

function keySchedule(aead: AeadId, sharedSecret: Buffer, info: Uint8Array): HpkeContext {
  const suite = hpkeSuite(aead);
  const empty = Buffer.alloc(0);
  const pskIdHash = labeledExtract(suite, empty, 'psk_id_hash', empty);
  const infoHash = labeledExtract(suite, empty, 'info_hash', info);
  const context = Buffer.concat([Buffer.from([0]), pskIdHash, infoHash]);
  // secret = LabeledExtract(shared_secret, "secret", psk = ""), expanded three ways
  const fromSecret = (label: string, length: number): Buffer => labeledKdf(suite, sharedSecret, 'secret', empty, label, context, length);
  return new HpkeContext(aead, fromSecret('key', AEADS[aead].nk), fromSecret('base_nonce', NN), fromSecret('exp', NH));
}

/** Sender side. `ephemeral` is for known-answer tests only; production callers let it be random. */
export function setupBaseS(pkR: Uint8Array, info: Uint8Array, aead: AeadId, ephemeral?: KeyObject): { enc: Buffer; ctx: HpkeContext; sharedSecret: Buffer } {
  const skE = ephemeral ?? generateX25519().privateKey;
  const enc = rawPublicKey(skE);
  const sharedSecret = extractAndExpand(dh(skE, pkR), enc, pkR);
  return { enc, ctx: keySchedule(aead, sharedSecret, info), sharedSecret };
}

/** Recipient side: throws on a malformed `enc`. */
export function setupBaseR(enc: Uint8Array, skR: KeyObject, info: Uint8Array, aead: AeadId): { ctx: HpkeContext; sharedSecret: Buffer } {
  const sharedSecret = extractAndExpand(dh(skR, enc), enc, rawPublicKey(skR));
  return { ctx: keySchedule(aead, sharedSecret, info), sharedSecret };
}
