/**
 * Durations as fixed histogram buckets (Prometheus style, cumulative when read): calls to the
 * trusted component (once per batch of re-wraps on the hot path) and durable-state commits (once
 * per group commit). Recorded with plain integer increments; read by the metrics at scrape time.
 */
export const LATENCY_BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000] as const;

export interface LatencySnapshot {
  /** Upper bounds in milliseconds, ascending (+Inf is implied by `count`). */
  bucketsMs: readonly number[];
  /** Calls at or below each bound (cumulative). */
  cumulative: number[];
  count: number;
  sumMs: number;
}

export class LatencyHistogram {
  private readonly counts = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  private count = 0;
  private sumMs = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumMs += ms;
  }

  snapshot(): LatencySnapshot {
    const cumulative: number[] = [];
    let running = 0;
    for (let i = 0; i < LATENCY_BUCKETS_MS.length; i++) cumulative.push((running += this.counts[i]!));
    return { bucketsMs: LATENCY_BUCKETS_MS, cumulative, count: this.count, sumMs: this.sumMs };
  }
}
