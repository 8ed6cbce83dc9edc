/**
 * Retained messages in memory, every change also recorded in the journal (the broker reads memory
 * only), except on `$SYS` topics: the broker makes those anew every `sysInterval`, and writing
 * them would rewrite some forty rows that often for nothing.
 */
import type { Message } from '../broker/message.js';
import type { StateJournal } from '../broker/journal.js';
import { isSysTopic } from '../mqtt/topic.js';
import { MemoryRetainedStore, type RetainedStore } from '../store/retained.js';

export class JournaledRetainedStore implements RetainedStore {
  private readonly memory = new MemoryRetainedStore();

  constructor(private readonly journal: StateJournal) {}

  get size(): number {
    return this.memory.size;
  }

  get systemSize(): number {
    return this.memory.systemSize;
  }

  has(topic: string): boolean {
    return this.memory.has(topic);
  }

  set(topic: string, message: Message | null): void {
    this.memory.set(topic, message);
    if (!isSysTopic(topic)) this.journal.retained(topic, message);
  }

  match(filter: string, now?: number): Message[] {
    return this.memory.match(filter, now);
  }

  /** A message loaded from the store: already there, not written again. */
  restore(message: Message): void {
    this.memory.set(message.topic, message);
  }
}
