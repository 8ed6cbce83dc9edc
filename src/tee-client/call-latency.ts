/**
 * Round-trip time of calls to the trusted component, as fixed histogram buckets (Prometheus
 * style, cumulative when read). Recorded per call, i.e. once per batch of re-wraps on the hot path,
 * with plain integer increments; read by the metrics at scrape time.
 */
export const CALL_LATENCY_BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000] as const;

export interface CallLatencySnapshot {
  /** Upper bounds in milliseconds, ascending (+Inf is implied by `count`). */
  bucketsMs: readonly number[];
  /** Calls at or below each bound (cumulative). */
  cumulative: number[];
  count: number;
  sumMs: number;
}

export class CallLatency {
  private readonly counts = new Array<number>(CALL_LATENCY_BUCKETS_MS.length + 1).fill(0);
  private count = 0;
  private sumMs = 0;

  observe(ms: number): void {
    let i = 0;
    while (i < CALL_LATENCY_BUCKETS_MS.length && ms > CALL_LATENCY_BUCKETS_MS[i]!) i++;
    this.counts[i]!++;
    this.count++;
    this.sumMs += ms;
  }

  snapshot(): CallLatencySnapshot {
    const cumulative: number[] = [];
    let running = 0;
    for (let i = 0; i < CALL_LATENCY_BUCKETS_MS.length; i++) cumulative.push((running += this.counts[i]!));
    return { bucketsMs: CALL_LATENCY_BUCKETS_MS, cumulative, count: this.count, sumMs: this.sumMs };
  }
}
