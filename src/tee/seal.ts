// Sealing: everything the trusted component persists is AES-256-GCM under a key derived from a
// device secret file that only the trusted process reads (the stand-in for a hardware unique key).
// The associated data names the object, so the host cannot swap one blob for another.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdirSync, openSync, readFileSync, writeSync, closeSync } from 'node:fs';
import { dirname } from 'node:path';
import { TeeError } from './errors.js';

const SEAL_VERSION = 1;
const AD_LABEL = 'mqt-tz/1 sealed ';

/** Reads the device secret, creating it (32 random bytes, mode 0600) on first start. */
export function readDeviceSecret(path: string): Buffer {
  try {
    const secret = readFileSync(path);
    if (secret.length < 32) throw new TeeError('sealed-invalid', `device secret ${path} is shorter than 32 bytes`);
    return secret;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const secret = randomBytes(32);
  const fd = openSync(path, 'wx', 0o600); // 'wx': never overwrite a secret created concurrently
  try {
    writeSync(fd, secret);
  } finally {
    closeSync(fd);
  }
  return secret;
}

export class Sealer {
  private readonly key: Buffer;
  constructor(deviceSecret: Uint8Array) {
    this.key = Buffer.from(hkdfSync('sha256', deviceSecret, new Uint8Array(0), 'mqt-tz/1 sealing key', 32));
  }

  /** `u8 version | nonce(12) | ciphertext | tag(16)`, associated data = label || object name. */
  seal(name: string, plaintext: Uint8Array): Buffer {
    const nonce = randomBytes(12);
    const c = createCipheriv('aes-256-gcm', this.key, nonce);
    c.setAAD(Buffer.from(AD_LABEL + name));
    return Buffer.concat([Buffer.from([SEAL_VERSION]), nonce, c.update(plaintext), c.final(), c.getAuthTag()]);
  }

  unseal(name: string, blob: Uint8Array): Buffer {
    if (blob.length < 29 || blob[0] !== SEAL_VERSION) throw new TeeError('sealed-invalid', `sealed object ${name} is malformed`);
    try {
      const d = createDecipheriv('aes-256-gcm', this.key, blob.subarray(1, 13));
      d.setAAD(Buffer.from(AD_LABEL + name));
      d.setAuthTag(blob.subarray(blob.length - 16));
      return Buffer.concat([d.update(blob.subarray(13, blob.length - 16)), d.final()]);
    } catch {
      throw new TeeError('sealed-invalid', `sealed object ${name} fails authentication (altered, swapped or sealed by another device)`);
    }
  }
}
