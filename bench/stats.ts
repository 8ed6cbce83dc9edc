/** Latency samples without per-sample allocation, percentiles, and a CDF for the charts. */

export class LatencyRecorder {
  private readonly samples: Float64Array;
  private n = 0;
  /** Samples offered, including those the reservoir did not keep. */
  seen = 0;

  constructor(capacity: number) {
    this.samples = new Float64Array(Math.max(1, capacity));
  }

  add(ms: number): void {
    this.seen++;
    if (this.n < this.samples.length) {
      this.samples[this.n++] = ms;
      return;
    }
    // reservoir sampling keeps a uniform sample once full
    const j = Math.floor(Math.random() * this.seen);
    if (j < this.samples.length) this.samples[j] = ms;
  }

  sorted(): Float64Array {
    return this.samples.slice(0, this.n).sort();
  }
}

export interface Percentiles {
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

export function percentiles(sorted: Float64Array): Percentiles {
  return {
    p50: round(percentile(sorted, 0.5), 3),
    p90: round(percentile(sorted, 0.9), 3),
    p99: round(percentile(sorted, 0.99), 3),
    max: round(sorted.length ? sorted[sorted.length - 1]! : NaN, 3),
  };
}

/** `points` (latency ms, cumulative fraction) pairs spread over the distribution. */
export function cdf(sorted: Float64Array, points = 100): [number, number][] {
  const out: [number, number][] = [];
  if (sorted.length === 0) return out;
  for (let k = 1; k <= points; k++) {
    const q = k / points;
    out.push([round(percentile(sorted, q), 3), q]);
  }
  return out;
}

export function round(x: number, digits = 1): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}
