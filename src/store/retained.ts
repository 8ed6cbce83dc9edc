/** Retained messages: the last retained message per topic (MQTT-3.3.1-5). */
import type { Message } from '../broker/message.js';
import { isSysTopic, topicMatches } from '../mqtt/topic.js';

export interface RetainedStore {
  /** Stores `message` as the topic's retained message; null clears it. */
  set(topic: string, message: Message | null): void;
  /** Retained messages whose topic matches `filter`, expired ones left out. */
  match(filter: string, now?: number): Message[];
  /** Whether the topic has a retained message (expired or not). */
  has(topic: string): boolean;
  readonly size: number;
  /** Of `size`, those on `$SYS` topics (the broker's own). */
  readonly systemSize: number;
}

export class MemoryRetainedStore implements RetainedStore {
  private readonly messages = new Map<string, Message>();
  private system = 0;

  get size(): number {
    return this.messages.size;
  }

  get systemSize(): number {
    return this.system;
  }

  has(topic: string): boolean {
    return this.messages.has(topic);
  }

  set(topic: string, message: Message | null): void {
    if (message === null) this.remove(topic);
    else {
      if (isSysTopic(topic) && !this.messages.has(topic)) this.system++;
      this.messages.set(topic, message);
    }
  }

  private remove(topic: string): void {
    if (this.messages.delete(topic) && isSysTopic(topic)) this.system--;
  }

  match(filter: string, now = Date.now()): Message[] {
    const out: Message[] = [];
    const exact = !filter.includes('+') && !filter.includes('#');
    if (exact) {
      const m = this.messages.get(filter);
      if (m) this.keepIfLive(m, now, out);
      return out;
    }
    for (const m of this.messages.values()) {
      if (topicMatches(filter, m.topic)) this.keepIfLive(m, now, out);
    }
    return out;
  }

  private keepIfLive(m: Message, now: number, out: Message[]): void {
    if (m.expiresAt !== 0 && m.expiresAt <= now) this.remove(m.topic);
    else out.push(m);
  }
}
