// Resident memory of a process from /proc/PID/status, sampled over a run, with the growth bound
// the fuzzer enforces after a warm-up.
import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';

const MIB = 1024 * 1024;

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
 * The bound: after the warm-up, RSS may not exceed the warm-up's last sample by more than
 * max(+50 %, +64 MiB). The broker's own state under this traffic is capped by the fuzz config
 * (256 KiB queued per session, a few dozen client ids and topics: a few MiB in all), so growth
 * beyond that is a leak; the margin is V8's: the old generation grows in steps of tens of MiB
 * before a major GC brings it back.
 */
export function rssLimit(baseline: number): number {
  return Math.max(baseline * 1.5, baseline + 64 * MIB);
}

export interface RssSummary {
  baseline: number | undefined;
  start: number | undefined;
  end: number | undefined;
  max: number | undefined;
  samples: number;
}

export class RssMonitor {
  private baseline: number | undefined;
  private max = 0;
  private last: number | undefined;
  private samples = 0;
  private readonly started = Date.now();

  /** `warmupMs`: samples before it set no bound; `logFile`: one CSV line per sample. */
  constructor(
    private readonly pids: { broker?: number; tee?: number },
    private readonly warmupMs: number,
    private readonly logFile: string | undefined,
  ) {
    if (logFile !== undefined) writeFileSync(logFile, 'seconds,process,rss_kib\n');
  }

  /** Takes one sample; returns a failure message when the bound is passed. */
  sample(): string | undefined {
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    let failure: string | undefined;
    for (const [name, pid] of Object.entries(this.pids)) {
      if (pid === undefined) continue;
      const rss = readRss(pid);
      if (rss === undefined) continue;
      if (this.logFile !== undefined) appendFileSync(this.logFile, `${seconds},${name},${Math.round(rss / 1024)}\n`);
      if (name !== Object.keys(this.pids)[0]) continue; // the bound is on the first (main) process
      this.samples++;
      this.last = rss;
      if (Date.now() - this.started < this.warmupMs) continue;
      this.baseline ??= rss;
      this.max = Math.max(this.max, rss);
      if (rss > rssLimit(this.baseline)) failure = `RSS ${mib(rss)} passed the bound ${mib(rssLimit(this.baseline))} (baseline after warm-up ${mib(this.baseline)})`;
    }
    return failure;
  }

  summary(): RssSummary {
    return { baseline: this.baseline, start: this.baseline, end: this.last, max: this.baseline === undefined ? undefined : this.max, samples: this.samples };
  }
}

export function mib(bytes: number | undefined): string {
  return bytes === undefined ? '-' : `${(bytes / MIB).toFixed(1)} MiB`;
}
