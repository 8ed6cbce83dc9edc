// Bounded least-recently-used map. A Map keeps insertion order, so re-inserting on a hit makes the
// first entry the least recently used one. Pure (no `node:` imports): the client uses it too.

export class Lru<K, V> {
  private readonly entries = new Map<K, V>();
  /** The most recently used key: a hit on it needs no re-insertion (which would, in a small Map, rebuild its table every few calls). */
  private newest: K | undefined;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The value, now the most recently used. */
  get(key: K): V | undefined {
    const v = this.entries.get(key);
    if (v !== undefined && key !== this.newest) {
      this.entries.delete(key);
      this.entries.set(key, v);
      this.newest = key;
    }
    return v;
  }

  /** The value, without touching its place. */
  peek(key: K): V | undefined {
    return this.entries.get(key);
  }

  /** Stores `value` as the most recently used; drops the least recently used past capacity. */
  set(key: K, value: V): void {
    this.entries.delete(key);
    this.entries.set(key, value);
    this.newest = key;
    if (this.entries.size > this.capacity) this.entries.delete(this.entries.keys().next().value as K);
  }

  delete(key: K): void {
    this.entries.delete(key);
    if (key === this.newest) this.newest = undefined;
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }
}
