// Resident memory of a process from /proc/PID/status, sampled over a run, with the growth bound
// the fuzzer enforces after a warm-up.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

const MIB = 1024 * 1024;
/** Samples in a row over the bound before it counts: one sample can catch a short-lived allocation. */
const OVER_IN_A_ROW = 3;
/** Width of the windows whose lowest samples (after a major GC) show the trend. */
const FLOOR_WINDOW_MS = 60_000;
/**
 * Flatness: from the end of the warm-up or the broker's first full collection, whichever is later,
 * the highest sample of every 30 s window may exceed the first window's highest by at most 10 %.
 * Until its first full collection V8 lets the old generation fill with garbage up to the size the
 * broker's flags give it (64 MiB; ~3 minutes of this traffic), and the young generation grows to
 * its maximum: RSS climbs while the heap reaches its working size, which says nothing of a leak.
 * After it, a window's highest sample is the top of the collector's saw, so what is compared is the
 * envelope: a leak, or live data piling up, raises it; the saw inside a window does not.
 */
const FLAT_WINDOW_MS = 30_000;
const FLAT_TOLERANCE = 0.1;
/** Fewer full windows than this after the warm-up (a short run) say nothing about a trend: not judged. */
const FLAT_MIN_WINDOWS = 3;

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
  /** Highest sample of each full 30 s window from then on (and after the warm-up). */
  windowPeaks: number[];
  /** Highest window peak over the first window's (1.0 = level); undefined for fewer than 3 windows. */
  flatness: number | undefined;
}

/** The highest sample of each full `width` window from the first sample on (a partial last window is left out). */
export function windowPeaks(samples: readonly { at: number; rss: number }[], width: number): number[] {
  if (samples.length === 0) return [];
  const first = samples[0]!.at;
  const full = Math.floor((samples.at(-1)!.at - first) / width);
  const peaks = new Array<number>(full).fill(0);
  for (const x of samples) {
    const w = Math.floor((x.at - first) / width);
    if (w < full) peaks[w] = Math.max(peaks[w]!, x.rss);
  }
  return peaks;
}

/** Highest window peak over the first: undefined when too few windows to show a trend. */
export function flatness(peaks: readonly number[]): number | undefined {
  if (peaks.length < FLAT_MIN_WINDOWS) return undefined;
  return Math.max(...peaks) / peaks[0]!;
}

/** The flatness figures of a run, for its report line. */
export function flatnessNote(s: RssSummary): string {
  const peaks = `highest per 30 s window ${s.windowPeaks.map((p) => (p / MIB).toFixed(0)).join(' ') || '-'} MiB`;
  if (s.collectedAt === undefined) return `${peaks} (no full collection yet: flatness not judged)`;
  const from = `from the first full collection at ${(s.collectedAt / 1000).toFixed(0)} s`;
  if (s.flatness === undefined) return `${peaks} (${from}: too few windows to judge flatness)`;
  return `${peaks} (${from}: the highest ${((s.flatness - 1) * 100).toFixed(1)} % over the first)`;
}

/** The failure message of a run whose RSS envelope rose by more than 10 %, else undefined. */
export function flatnessFailure(s: RssSummary): string | undefined {
  if (s.flatness === undefined || s.flatness <= 1 + FLAT_TOLERANCE) return undefined;
  const worst = s.windowPeaks.indexOf(Math.max(...s.windowPeaks));
  return `RSS not flat: the highest sample of 30 s window ${worst + 1} (${mib(s.windowPeaks[worst])}) is ${((s.flatness - 1) * 100).toFixed(1)} % above the first window's (${mib(s.windowPeaks[0])}); at most ${FLAT_TOLERANCE * 100} % allowed`;
}

export class RssMonitor {
  private baseline: number | undefined;
  private over = 0;
  private readonly samples: { at: number; rss: number }[] = [];
  private readonly started = Date.now();
  /** When the broker was first seen to have run a full collection (ms since the start). */
  private collectedAt: number | undefined;

  /** `pids` by name, the bounded process first; `warmupMs`: samples before it set the baseline; `logFile`: one CSV line per sample. */
  constructor(
    private readonly pids: Readonly<Record<string, number | undefined>>,
    private readonly warmupMs: number,
    private readonly logFile: string | undefined,
  ) {
    if (logFile !== undefined) writeFileSync(logFile, 'seconds,process,rss_kib\n');
  }

  /** The broker has run a full collection: flatness is judged from the first one seen. */
  heapCollected(): void {
    this.collectedAt ??= Date.now() - this.started;
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
    const collectedAt = this.collectedAt;
    const peaks = collectedAt === undefined ? [] : windowPeaks(s.filter((x) => x.at >= collectedAt), FLAT_WINDOW_MS);
    return {
      collectedAt,
      windowPeaks: peaks,
      flatness: flatness(peaks),
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
