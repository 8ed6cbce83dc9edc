// Client subkeys and the bounded LRU of unsealed ones. Evicted keys are not wiped: a call still in
// flight may hold them (pipelined re-wraps), and the garbage collector may have copied them anyway.
import { hkdfSync } from 'node:crypto';
import { AeadKey } from './aead.js';
import { Lru } from '../envelope/lru.js';
import type { Grants } from '../envelope/messages.js';

export interface ClientKeys {
  /** Subkey wrapping data keys and group keys (AES-256-GCM). */
  wrap: AeadKey;
  /** Subkey for key confirmation and rotation proofs (HMAC-SHA256). */
  confirm: Buffer;
  generation: number;
  /** What the identity's enrolment token granted (sealed with the key); a loaded policy overrides it. */
  grants: Grants;
}

function subkey(raw: Uint8Array, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), label, 32));
}

export function deriveClientKeys(raw: Uint8Array, generation: number, grants: Grants): ClientKeys {
  const wrapKey = subkey(raw, 'mqt-tz/1 wrap key');
  const wrap = new AeadKey(wrapKey);
  wrapKey.fill(0);
  return { wrap, confirm: subkey(raw, 'mqt-tz/1 confirm key'), generation, grants };
}

/** The LRU of unsealed client keys, counting hits and misses. */
export class KeyCache extends Lru<string, ClientKeys> {
  hits = 0;
  misses = 0;

  /** Counts a hit or a miss. */
  override get(identity: string): ClientKeys | undefined {
    const keys = super.get(identity);
    if (keys === undefined) this.misses++;
    else this.hits++;
    return keys;
  }
}
