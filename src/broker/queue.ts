// Shared by every empty queue until its first push (never written): an idle session holds no array.
const NO_ITEMS: never[] = [];

/** FIFO with O(1) push and shift, for per-session offline queues. */
export class Fifo<T> {
  private items: (T | undefined)[] = NO_ITEMS;
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    if (this.items === NO_ITEMS) this.items = [item];
    else this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    // compact once the consumed prefix dominates, keeping shift amortised O(1)
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** The item `i` places from the front (0 = the next to shift). */
  at(i: number): T | undefined {
    return this.items[this.head + i];
  }

  clear(): void {
    this.items = NO_ITEMS;
    this.head = 0;
  }

  *[Symbol.iterator](): IterableIterator<T> {
    for (let i = this.head; i < this.items.length; i++) yield this.items[i]!;
  }
}
