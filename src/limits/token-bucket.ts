/**
 * A token bucket that refills at `rate` tokens per second up to `capacity` (one second's worth by
 * default, the burst it allows). `take` may drive it into debt: what was already read is counted
 * anyway, and the taker waits until the debt is paid.
 */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly capacity = rate,
    now = Date.now(),
  ) {
    if (!(rate > 0) || !(capacity > 0)) throw new RangeError(`a token bucket needs a positive rate and capacity, got ${rate} and ${capacity}`);
    this.tokens = capacity;
    this.last = now;
  }

  private refill(now: number): void {
    if (now > this.last) {
      this.tokens = Math.min(this.capacity, this.tokens + ((now - this.last) * this.rate) / 1000);
      this.last = now;
    }
  }

  /** Takes `n` tokens even if there are not enough; returns the milliseconds until the balance is back at zero (0: not in debt). */
  take(n: number, now = Date.now()): number {
    this.refill(now);
    this.tokens -= n;
    return this.debtMs(now);
  }

  /** Milliseconds until the balance is back at zero (0: not in debt). */
  debtMs(now = Date.now()): number {
    this.refill(now);
    return this.tokens >= 0 ? 0 : Math.ceil((-this.tokens * 1000) / this.rate);
  }

  /** Takes one token if there is one; false = over the rate (nothing taken). */
  tryTake(now = Date.now()): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
