// Sealing: everything the trusted component persists is AES-256-GCM under a key derived from a
// device secret file that only the trusted process reads (the stand-in for a hardware unique key).
// The associated data names the object and the version it was written at, so the host can neither
// swap one blob for another nor hand back an older blob of the same object.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { TeeError } from '../envelope/errors.js';

const SEAL_VERSION = 1;
const AD_LABEL = 'mqt-tz/1 sealed ';

function sealAd(name: string, version: number): Buffer {
  const n = Buffer.from(name);
  const ad = Buffer.alloc(AD_LABEL.length + 2 + n.length + 8);
  let at = ad.write(AD_LABEL);
  at = ad.writeUInt16BE(n.length, at);
  at += n.copy(ad, at);
  ad.writeBigUInt64BE(BigInt(version), at);
  return ad;
}

export class Sealer {
  private readonly key: Buffer;
  constructor(deviceSecret: Uint8Array) {
    this.key = Buffer.from(hkdfSync('sha256', deviceSecret, new Uint8Array(0), 'mqt-tz/1 sealing key', 32));
  }

  /** `u8 version | nonce(12) | ciphertext | tag(16)`, associated data = label || u16 name length || name || u64 object version. */
  seal(name: string, version: number, plaintext: Uint8Array): Buffer {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, nonce);
    c.setAAD(sealAd(name, version));
    return Buffer.concat([Buffer.from([SEAL_VERSION]), nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  unseal(name: string, version: number, blob: Uint8Array): Buffer {
    if (blob.length < 29 || blob[0] !== SEAL_VERSION) throw new TeeError('sealed-invalid', `sealed object ${name} is malformed`);
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, blob.subarray(1, 13));
      d.setAAD(sealAd(name, version));
      d.setAuthTag(blob.subarray(blob.length - 16));
      return Buffer.concat([d.update(blob.subarray(13, blob.length - 16)), d.final()]);
    } catch {
      throw new TeeError('sealed-invalid', `sealed object ${name} fails authentication (altered, swapped, an older version or sealed by another device)`);
    }
  }
}
