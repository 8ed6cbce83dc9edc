/** Retained messages: the last retained message per topic (MQTT-3.3.1-5). */
import type { Message } from '../broker/message.js';
import { topicMatches } from '../mqtt/topic.js';

export interface RetainedStore {
  /** Stores `message` as the topic's retained message; null clears it. */
  set(topic: string, message: Message | null): void;
  /** Retained messages whose topic matches `filter`, expired ones left out. */
  match(filter: string, now?: number): Message[];
  readonly size: number;
}

export class MemoryRetainedStore implements RetainedStore {
  private readonly messages = new Map<string, Message>();

  get size(): number {
    return this.messages.size;
  }

  set(topic: string, message: Message | null): void {
    if (message === null) this.messages.delete(topic);
    else this.messages.set(topic, message);
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
    if (m.expiresAt !== 0 && m.expiresAt <= now) this.messages.delete(m.topic);
    else out.push(m);
  }
}
