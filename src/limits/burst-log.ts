/** Logs an abuse event once per burst: the first event of a kind, then a summary once it has been quiet. */
import type { Logger } from 'pino';

interface Burst {
  message: string;
  /** Events after the first one. */
  more: number;
  last: number;
  timer: NodeJS.Timeout;
}

export class BurstLog {
  private readonly bursts = new Map<string, Burst>();

  constructor(
    private readonly log: Pick<Logger, 'warn' | 'info'>,
    /** A burst ends after this long without an event of its kind. */
    private readonly quietMs = 10_000,
  ) {}

  /** One event of `kind`: logged (warn) if it starts a burst, else only counted until the burst ends. */
  note(kind: string, fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    const burst = this.bursts.get(kind);
    if (burst) {
      burst.more++;
      burst.last = now;
      return;
    }
    this.log.warn({ ...fields, limit: kind }, `${message} (further ones are summed up when the burst ends)`);
    const timer = setInterval(() => this.check(kind), this.quietMs);
    timer.unref();
    this.bursts.set(kind, { message, more: 0, last: now, timer });
  }

  private check(kind: string): void {
    const burst = this.bursts.get(kind);
    if (!burst || Date.now() - burst.last < this.quietMs) return;
    clearInterval(burst.timer);
    this.bursts.delete(kind);
    if (burst.more > 0) this.log.info({ limit: kind, more: burst.more }, `burst over: ${burst.more} more of "${burst.message}"`);
  }

  /** Stops the timers (the broker is closing). */
  close(): void {
    for (const burst of this.bursts.values()) clearInterval(burst.timer);
    this.bursts.clear();
  }
}
