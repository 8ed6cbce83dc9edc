/** Retained messages in memory, every change also recorded in the journal (the broker reads memory only). */
import type { Message } from '../broker/message.js';
import type { StateJournal } from '../broker/journal.js';
import { MemoryRetainedStore, type RetainedStore } from '../store/retained.js';

export class JournaledRetainedStore implements RetainedStore {
  private readonly memory = new MemoryRetainedStore();

  constructor(private readonly journal: StateJournal) {}

  get size(): number {
    return this.memory.size;
  }

  set(topic: string, message: Message | null): void {
    this.memory.set(topic, message);
    this.journal.retained(topic, message);
  }

  match(filter: string, now?: number): Message[] {
    return this.memory.match(filter, now);
  }

  /** A message loaded from the store: already there, not written again. */
  restore(message: Message): void {
    this.memory.set(message.topic, message);
  }
}
