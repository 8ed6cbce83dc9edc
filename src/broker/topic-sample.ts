/**
 * The busiest topics, estimated from a sample: about one received PUBLISH in SAMPLE_EVERY has its
 * topic counted, the gap between samples drawn at random so a round of publishers taking turns
 * cannot hide one of them. Per message the cost is one decrement; counts halve every minute (so the
 * list follows what is busy now) and the table keeps at most MAX_TOPICS topics.
 */
const SAMPLE_EVERY = 16;
const MAX_TOPICS = 1000;
const HALF_LIFE_MS = 60_000;

export interface TopicEstimate {
  topic: string;
  /** Messages estimated since counting started, halved each minute. */
  messages: number;
}

export class TopicSample {
  private countdown = 1;
  private readonly counts = new Map<string, number>();
  private halvedAt = Date.now();

  /** Called for every received PUBLISH. */
  seen(topic: string): void {
    if (--this.countdown !== 0) return;
    this.countdown = 1 + Math.floor(Math.random() * 2 * SAMPLE_EVERY);
    this.counts.set(topic, (this.counts.get(topic) ?? 0) + 1);
    if (this.counts.size > MAX_TOPICS) this.halve();
  }

  /** The `n` topics with the most sampled messages, most first. */
  top(n: number): TopicEstimate[] {
    if (Date.now() - this.halvedAt >= HALF_LIFE_MS) this.halve();
    return [...this.counts]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([topic, c]) => ({ topic, messages: c * SAMPLE_EVERY }));
  }

  private halve(): void {
    this.halvedAt = Date.now();
    for (const [topic, c] of this.counts) {
      if (c <= 1) this.counts.delete(topic);
      else this.counts.set(topic, c >> 1);
    }
  }
}
