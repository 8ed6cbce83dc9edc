// A client's enrolled 256-bit key, held as non-extractable WebCrypto subkeys derived exactly as
// the trusted component derives them (HKDF-SHA256, empty salt, per-purpose labels).
import { LABELS } from '../../envelope/messages.js';
import { aesKey, hkdf, hmacKey, randomBytes } from './webcrypto.js';

export interface ClientKey {
  /** AES-256-GCM subkey that wraps and unwraps per-message data keys. */
  readonly wrap: CryptoKey;
  /** HMAC-SHA256 subkey for key confirmation and rotation proofs. */
  readonly confirm: CryptoKey;
}

export function generateClientKeyBytes(): Uint8Array {
  return randomBytes(32);
}

export async function importClientKey(raw: Uint8Array): Promise<ClientKey> {
  if (raw.length !== 32) throw new RangeError(`client key must be 32 bytes, got ${raw.length}`);
  const wrapBytes = await hkdf(raw, LABELS.wrapKey);
  const confirmBytes = await hkdf(raw, LABELS.confirmKey);
  const key = { wrap: await aesKey(wrapBytes), confirm: await hmacKey(confirmBytes, ['sign', 'verify']) };
  wrapBytes.fill(0);
  confirmBytes.fill(0);
  return key;
}
