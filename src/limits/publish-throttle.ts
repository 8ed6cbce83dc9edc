/**
 * Per-client publish rate and byte rate: a client over its budget is slowed, never disconnected.
 * The PUBLISH that finds the budget spent waits, with everything the client sent after it, and
 * the client's socket is not read until the budget has refilled (TCP flow control then holds the
 * client back).
 */
import { TokenBucket } from './token-bucket.js';

/** What the throttle needs of a connection. */
export interface Pausable {
  pauseReading(): void;
  /** Handles what was held back and reads on (or pauses again). */
  resumeReading(): void;
}

export class PublishThrottle {
  private readonly packets: TokenBucket | undefined;
  private readonly bytes: TokenBucket | undefined;
  private timer: NodeJS.Timeout | undefined;

  /** `rate` PUBLISHes and `byteRate` bytes per second (0 = that one unlimited), each with one second's burst. */
  constructor(rate: number, byteRate: number, now = Date.now()) {
    this.packets = rate > 0 ? new TokenBucket(rate, rate, now) : undefined;
    this.bytes = byteRate > 0 ? new TokenBucket(byteRate, byteRate, now) : undefined;
  }

  /**
   * A PUBLISH of `size` bytes (the whole packet): 0 = within budget, handle it (counted; the one
   * that empties the budget may overdraw it); else the milliseconds until it may go (not counted).
   */
  admit(size: number, now = Date.now()): number {
    const wait = Math.max(this.packets?.debtMs(now) ?? 0, this.bytes?.debtMs(now) ?? 0);
    if (wait > 0) return wait;
    this.packets?.take(1, now);
    this.bytes?.take(size, now);
    return 0;
  }

  /** Stops reading `client` for `ms`, then lets it resume. */
  pause(client: Pausable, ms: number): void {
    clearTimeout(this.timer);
    client.pauseReading();
    // +1: a timer may fire within the millisecond before Date.now() shows the budget refilled
    this.timer = setTimeout(() => {
      this.timer = undefined;
      client.resumeReading();
    }, ms + 1);
  }

  /** The connection is gone: no resume. */
  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
