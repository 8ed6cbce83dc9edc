/**
 * A session's deliveries in flight, by packet id: an open-addressing table (linear probing,
 * deletion by backward shift) instead of a Map.
 *
 * Why not a Map: every PUBLISH adds an entry and every acknowledgement deletes one, so a Map's
 * table is rebuilt every few dozen messages, and V8 links each table it drops to its successor and
 * leaves its entries in place (for live iterators). Once a full collection has moved one of those
 * tables to the old generation, that dead table keeps every later table, and every delivery they
 * named with its payload, alive until the next full collection: under load the whole stream of
 * deliveries was promoted and a full collection followed every ~150 ms. Here the arrays are
 * replaced only when the table grows, and a replaced array is cleared first.
 */
import type { Delivery } from './message.js';

const EMPTY = 0;
// Shared by every table until its first entry (grow replaces them): an idle session holds no arrays.
const NO_IDS = new Uint16Array(0);
const NO_ORDERS = new Float64Array(0);
// never written: every write is to a slot of `ids`, which has none until grow replaces both
const NO_ITEMS: (Delivery | undefined)[] = [];
const NONE_IN_FLIGHT: readonly (readonly [number, Delivery])[] = Object.freeze([]);

export class InflightTable {
  /** Packet id per slot; EMPTY (0, never a packet id) for a free slot. */
  private ids: Uint16Array = NO_IDS;
  private items: (Delivery | undefined)[] = NO_ITEMS;
  /** Order of insertion per slot, for `inOrder`. */
  private orders: Float64Array = NO_ORDERS;
  private nextOrder = 0;
  private count = 0;
  /**
   * Entries not in their home slot. Packet ids are handed out in sequence, so ids in flight
   * usually sit each in its own home slot, one run of them: a delete then needs no backward shift,
   * which would otherwise walk the whole run (the whole in-flight window) on every acknowledgement.
   */
  private displaced = 0;

  get size(): number {
    return this.count;
  }

  has(id: number): boolean {
    return this.slotOf(id) >= 0;
  }

  get(id: number): Delivery | undefined {
    const s = this.slotOf(id);
    return s < 0 ? undefined : this.items[s];
  }

  /** Adds or replaces the delivery with packet id `id` (1..65535). */
  set(id: number, d: Delivery): void {
    const existing = this.slotOf(id);
    if (existing >= 0) {
      this.items[existing] = d;
      return;
    }
    if ((this.count + 1) * 2 > this.ids.length) this.grow();
    const mask = this.ids.length - 1;
    let s = id & mask;
    while (this.ids[s] !== EMPTY) s = (s + 1) & mask;
    if (s !== (id & mask)) this.displaced++;
    this.ids[s] = id;
    this.items[s] = d;
    this.orders[s] = this.nextOrder++;
    this.count++;
  }

  delete(id: number): boolean {
    let s = this.slotOf(id);
    if (s < 0) return false;
    const ids = this.ids;
    const mask = ids.length - 1;
    if (s !== (id & mask)) this.displaced--;
    // backward shift: move later entries of the probe run into the gap, so no tombstones are needed
    // (none is to move when every entry sits in its home slot)
    for (let next = (s + 1) & mask; this.displaced > 0 && ids[next] !== EMPTY; next = (next + 1) & mask) {
      const home = ids[next]! & mask;
      // the entry at `next` may fill the gap at `s` if the gap lies on its probe run (home ... next)
      if (((next - home) & mask) >= ((next - s) & mask)) {
        ids[s] = ids[next]!;
        this.items[s] = this.items[next];
        this.orders[s] = this.orders[next]!;
        // it was displaced (it lay past its home slot) and may now be home
        if (s === home) this.displaced--;
        s = next;
      }
    }
    ids[s] = EMPTY;
    this.items[s] = undefined;
    this.count--;
    return true;
  }

  clear(): void {
    this.ids.fill(EMPTY);
    this.items.fill(undefined);
    this.count = 0;
    this.displaced = 0;
  }

  /** `[packet id, delivery]` pairs in the order they were added (oldest first). */
  inOrder(): readonly (readonly [number, Delivery])[] {
    // a resuming session usually has nothing in flight: no arrays made for it
    if (this.count === 0) return NONE_IN_FLIGHT;
    const slots: number[] = [];
    for (let s = 0; s < this.ids.length; s++) if (this.ids[s] !== EMPTY) slots.push(s);
    slots.sort((a, b) => this.orders[a]! - this.orders[b]!);
    return slots.map((s) => [this.ids[s]!, this.items[s]!]);
  }

  private slotOf(id: number): number {
    const ids = this.ids;
    if (this.count === 0 || id === EMPTY) return -1;
    const mask = ids.length - 1;
    for (let s = id & mask; ids[s] !== EMPTY; s = (s + 1) & mask) if (ids[s] === id) return s;
    return -1;
  }

  private grow(): void {
    const { ids, items, orders } = this;
    const capacity = Math.max(16, ids.length * 2);
    this.ids = new Uint16Array(capacity);
    this.items = new Array<Delivery | undefined>(capacity).fill(undefined);
    this.orders = new Float64Array(capacity);
    const mask = capacity - 1;
    this.displaced = 0;
    for (let s = 0; s < ids.length; s++) {
      const id = ids[s]!;
      if (id === EMPTY) continue;
      let t = id & mask;
      while (this.ids[t] !== EMPTY) t = (t + 1) & mask;
      if (t !== (id & mask)) this.displaced++;
      this.ids[t] = id;
      this.items[t] = items[s];
      this.orders[t] = orders[s]!;
    }
    items.fill(undefined);
  }
}
