/**
 * FIFO with O(1) push and shift, for per-session offline queues: a ring over an array whose length
 * is a power of two. It grows by doubling when full and halves when a quarter full, so a session
 * whose queue once held a burst does not keep its size.
 *
 * Why a ring: the array-with-a-head queue it replaced re-sliced its array every ~1 000 shifts and
 * grew it again by pushes; under a full in-flight window (hundreds queued per session) the shift
 * line was the broker's hottest JS line in a CPU profile of 1 -> 1 QoS 1.
 */
const MIN_CAPACITY = 16;

export class Fifo<T> {
  private items: (T | undefined)[] = new Array<T | undefined>(MIN_CAPACITY).fill(undefined);
  private head = 0;
  private count = 0;

  get length(): number {
    return this.count;
  }

  push(item: T): void {
    if (this.count === this.items.length) this.resize(this.items.length * 2);
    this.items[(this.head + this.count) & (this.items.length - 1)] = item;
    this.count++;
  }

  shift(): T | undefined {
    if (this.count === 0) return undefined;
    const items = this.items;
    const item = items[this.head];
    items[this.head] = undefined;
    this.head = (this.head + 1) & (items.length - 1);
    this.count--;
    if (this.count * 4 < items.length && items.length > MIN_CAPACITY) this.resize(items.length / 2);
    return item;
  }

  clear(): void {
    if (this.items.length > MIN_CAPACITY) this.items = new Array<T | undefined>(MIN_CAPACITY).fill(undefined);
    else this.items.fill(undefined);
    this.head = 0;
    this.count = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    const mask = this.items.length - 1;
    for (let i = 0; i < this.count; i++) yield this.items[(this.head + i) & mask]!;
  }

  /** Moves the items, oldest first, to the start of a new array of `capacity` slots. */
  private resize(capacity: number): void {
    const old = this.items;
    const mask = old.length - 1;
    const items = new Array<T | undefined>(capacity).fill(undefined);
    for (let i = 0; i < this.count; i++) items[i] = old[(this.head + i) & mask];
    this.items = items;
    this.head = 0;
  }
}
