// Resident memory of a process from /proc/PID/status, sampled over a run, with the growth bound
// the fuzzer enforces after a warm-up.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

const MIB = 1024 * 1024;
/** Samples in a row over the bound before it counts: one sample can catch a short-lived allocation. */
const OVER_IN_A_ROW = 3;
/** Width of the windows whose lowest samples (after a major GC) show the trend. */
const FLOOR_WINDOW_MS = 60_000;
/**
 * Flatness is judged on the envelope of the collector's saw: the highest sample of each garbage
 * collection cycle. The broker's live heap is small and flat (10-15 MB); its RSS climbs while the
 * old generation fills with what survived the young one, until a full collection (and the memory
 * reducer a few seconds later) gives the pages back. Under the fuzz traffic one climb takes 2-3
 * minutes and ~45 MiB, so a fixed window shorter than that compares phases of the saw, not its
 * tops: a leak, or live data piling up, raises the tops; the saw does not. A cycle ends at a full
 * collection; collections less than CLUSTER_MS apart (a mark-compact, then the reducer's, and the
 * store thread's own heap) end one cycle together. The reference is the first whole cycle after
 * the warm-up (the start fills the heap to its working size, which says nothing of a leak); every
 * later cycle, the unfinished last one included, may exceed its top by at most 10 %.
 */
const CLUSTER_MS = 30_000;
const FLAT_TOLERANCE = 0.1;
/** Fewer whole cycles than this after the first collection (a short run) say nothing about a trend: not judged. */
const FLAT_MIN_CYCLES = 2;

/** VmRSS in bytes, or undefined when the process is gone (or not on Linux). */
export function readRss(pid: number): number | undefined {
  try {
    const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

/**
 * The bound: after the warm-up, RSS may not exceed the warm-up's highest sample by more than
 * max(+50 %, +64 MiB). What the fuzzed clients may legitimately make the broker keep is capped by
 * the fuzz config (256 KiB queued per session, a few dozen client ids and topics: a few MiB in
 * all); the margin is V8's: under this traffic the broker's RSS saws up and down by about 50 MiB
 * between major GCs (10-minute run: troughs near 95 MiB, peaks near 145 MiB).
 */
export function rssLimit(baseline: number): number {
  return Math.max(baseline * 1.5, baseline + 64 * MIB);
}

export interface RssSummary {
  /** Highest sample of the warm-up: the bound is computed from it. */
  baseline: number | undefined;
  end: number | undefined;
  max: number | undefined;
  /** Lowest samples of the first and the last minute after the warm-up (the trend without GC's saw). */
  firstFloor: number | undefined;
  lastFloor: number | undefined;
  /** When the first full collection was seen (ms since the start), if any. */
  collectedAt: number | undefined;
  /** Highest sample of each collection cycle after the first (the last one possibly unfinished). */
  cyclePeaks: number[];
  /** Whole cycles among them. */
  wholeCycles: number;
  /** Highest later cycle top over the first's (1.0 = level); undefined for fewer than FLAT_MIN_CYCLES whole cycles. */
  flatness: number | undefined;
}

/**
 * Where the collection cycles end: of full collections less than CLUSTER_MS apart, the last. `times`
 * in ms, ascending.
 */
export function cycleEnds(times: readonly number[]): number[] {
  return times.filter((t, i) => i === times.length - 1 || times[i + 1]! - t >= CLUSTER_MS);
}

/**
 * The highest sample of each cycle from the first end on: whole cycles (between two ends), then
 * the samples after the last end, if any (an unfinished cycle can only still rise).
 */
export function cyclePeaks(samples: readonly { at: number; rss: number }[], ends: readonly number[]): { peaks: number[]; whole: number } {
  const peaks: number[] = [];
  for (let i = 0; i < ends.length; i++) {
    const from = ends[i]!;
    const to = ends[i + 1] ?? Infinity;
    let peak = 0;
    for (const x of samples) if (x.at > from && x.at <= to) peak = Math.max(peak, x.rss);
    if (peak > 0) peaks.push(peak);
  }
  return { peaks, whole: Math.max(0, ends.length - 1) };
}

/** Highest later cycle top over the first: undefined with fewer than FLAT_MIN_CYCLES whole cycles. */
export function flatness(peaks: readonly number[], whole: number): number | undefined {
  if (whole < FLAT_MIN_CYCLES) return undefined;
  return Math.max(...peaks) / peaks[0]!;
}

/** The flatness figures of a run, for its report line. */
export function flatnessNote(s: RssSummary): string {
  const peaks = `highest per collection cycle ${s.cyclePeaks.map((p) => (p / MIB).toFixed(0)).join(' ') || '-'} MiB`;
  if (s.collectedAt === undefined) return `${peaks} (no full collection yet: flatness not judged)`;
  const from = `${s.wholeCycles} whole cycles from the first full collection at ${(s.collectedAt / 1000).toFixed(0)} s`;
  if (s.flatness === undefined) return `${peaks} (${from}: too few to judge flatness)`;
  return `${peaks} (${from}: the highest ${((s.flatness - 1) * 100).toFixed(1)} % over the first)`;
}

/** The failure message of a run whose RSS envelope rose by more than 10 %, else undefined. */
export function flatnessFailure(s: RssSummary): string | undefined {
  if (s.flatness === undefined || s.flatness <= 1 + FLAT_TOLERANCE) return undefined;
  const worst = s.cyclePeaks.indexOf(Math.max(...s.cyclePeaks));
  return `RSS not flat: the top of collection cycle ${worst + 1} (${mib(s.cyclePeaks[worst])}) is ${((s.flatness - 1) * 100).toFixed(1)} % above the first cycle's (${mib(s.cyclePeaks[0])}); at most ${FLAT_TOLERANCE * 100} % allowed`;
}

export class RssMonitor {
  private baseline: number | undefined;
  private over = 0;
  private readonly samples: { at: number; rss: number }[] = [];
  private readonly started = Date.now();
  /** Full collections counted so far, and when each was seen (ms since the start). */
  private collections = 0;
  private readonly collectionTimes: number[] = [];

  /** `pids` by name, the bounded process first; `warmupMs`: samples before it set the baseline; `logFile`: one CSV line per sample. */
  constructor(
    private readonly pids: Readonly<Record<string, number | undefined>>,
    private readonly warmupMs: number,
    private readonly logFile: string | undefined,
  ) {
    if (logFile !== undefined) writeFileSync(logFile, 'seconds,process,rss_kib\n');
  }

  /** The broker's count of full collections so far: flatness is judged from the first one seen. */
  heapCollected(count: number): void {
    if (count <= this.collections) return;
    const at = Date.now() - this.started;
    this.collections = count;
    this.collectionTimes.push(at);
    if (this.logFile !== undefined) appendFileSync(this.logFile, `${(at / 1000).toFixed(1)},full-collections,${count}\n`);
  }

  /** Takes one sample; returns a failure message when the bound is passed. */
  sample(): string | undefined {
    const at = Date.now() - this.started;
    let main: number | undefined;
    for (const [name, pid] of Object.entries(this.pids)) {
      const rss = pid === undefined ? undefined : readRss(pid);
      if (rss === undefined) continue;
      if (this.logFile !== undefined) appendFileSync(this.logFile, `${(at / 1000).toFixed(1)},${name},${Math.round(rss / 1024)}\n`);
      main ??= rss; // the bound is on the first process named
    }
    if (main === undefined) return undefined;
    if (at < this.warmupMs) {
      this.baseline = Math.max(this.baseline ?? 0, main);
      return undefined;
    }
    this.baseline ??= main;
    this.samples.push({ at, rss: main });
    this.over = main > rssLimit(this.baseline) ? this.over + 1 : 0;
    if (this.over < OVER_IN_A_ROW) return undefined;
    return `RSS ${mib(main)} passed the bound ${mib(rssLimit(this.baseline))} (highest during the warm-up ${mib(this.baseline)}) for ${this.over} samples in a row`;
  }

  summary(): RssSummary {
    const s = this.samples;
    const floor = (from: number, to: number): number | undefined => {
      const inside = s.filter((x) => x.at >= from && x.at < to).map((x) => x.rss);
      return inside.length === 0 ? undefined : Math.min(...inside);
    };
    const first = s[0]?.at ?? 0;
    const last = s.at(-1)?.at ?? 0;
    const { peaks, whole } = cyclePeaks(s, cycleEnds(this.collectionTimes));
    return {
      collectedAt: this.collectionTimes[0],
      cyclePeaks: peaks,
      wholeCycles: whole,
      flatness: flatness(peaks, whole),
      baseline: this.baseline,
      end: s.at(-1)?.rss,
      max: s.length === 0 ? undefined : Math.max(...s.map((x) => x.rss)),
      firstFloor: floor(first, first + FLOOR_WINDOW_MS),
      lastFloor: floor(last - FLOOR_WINDOW_MS, last + 1),
    };
  }
}

export function mib(bytes: number | undefined): string {
  return bytes === undefined ? '-' : `${(bytes / MIB).toFixed(1)} MiB`;
}
