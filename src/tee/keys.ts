// Bounded LRU of unsealed client keys. A Map keeps insertion order, so re-inserting on a hit
// makes the first entry the least recently used one. Evicted keys are not wiped: a call still in
// flight may hold them (pipelined re-wraps), and the garbage collector may have copied them anyway.
import { hkdfSync } from 'node:crypto';

export interface ClientKeys {
  /** Subkey wrapping data keys (AES-256-GCM). */
  wrap: Buffer;
  /** Subkey for key confirmation and rotation proofs (HMAC-SHA256). */
  confirm: Buffer;
  generation: number;
}

function subkey(raw: Uint8Array, label: string): Buffer {
  return Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), label, 32));
}

export function deriveClientKeys(raw: Uint8Array, generation: number): ClientKeys {
  return { wrap: subkey(raw, 'mqt-tz/1 wrap key'), confirm: subkey(raw, 'mqt-tz/1 confirm key'), generation };
}

export class KeyCache {
  private readonly entries = new Map<string, ClientKeys>();
  hits = 0;
  misses = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`key cache capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** Counts a hit or a miss. */
  get(identity: string): ClientKeys | undefined {
    const keys = this.entries.get(identity);
    if (keys === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.entries.delete(identity);
    this.entries.set(identity, keys);
    return keys;
  }

  set(identity: string, keys: ClientKeys): void {
    this.entries.delete(identity);
    this.entries.set(identity, keys);
    if (this.entries.size > this.capacity) {
      this.entries.delete(this.entries.keys().next().value as string);
    }
  }

  delete(identity: string): void {
    this.entries.delete(identity);
  }

  has(identity: string): boolean {
    return this.entries.has(identity);
  }
}
