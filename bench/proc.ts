/** Process accounting from /proc (CPU ticks, RSS), free ports, and waiting for a listener. */
import { readFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { round } from './stats.js';

/** Linux USER_HZ: /proc/PID/stat counts CPU time in these ticks. */
const TICKS_PER_SECOND = 100;

export interface ProcSample {
  /** CPU seconds (user + system) used so far, the process's children included. */
  cpuSeconds: number;
  /** The part of cpuSeconds its child processes used (e.g. the trusted component's process). */
  childCpuSeconds: number;
  rssBytes: number;
  /** The process's main thread (its JS event loop): seconds on a CPU, and runnable but waiting for one. */
  mainRunSeconds: number;
  mainWaitSeconds: number;
  /** Wall clock, ms (performance.now()). */
  at: number;
}

function cpuSecondsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  // the command name may contain spaces: fields start after the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** CPU seconds of the process's living children (a child that exited in between is not counted). */
function childCpuSeconds(pid: number): number {
  let children: string;
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'latin1').trim();
  } catch {
    return 0;
  }
  let sum = 0;
  for (const c of children.length > 0 ? children.split(' ') : []) {
    try {
      sum += cpuSecondsOf(Number(c));
    } catch {
      // exited meanwhile
    }
  }
  return sum;
}

/**
 * Nanoseconds a thread has run and has waited in a run queue (/proc/PID/task/TID/schedstat); NaN
 * where the kernel keeps no such statistics.
 */
function schedSeconds(pid: number, tid: number): [run: number, wait: number] {
  try {
    const f = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'latin1').split(' ');
    return [Number(f[0]) / 1e9, Number(f[1]) / 1e9];
  } catch {
    return [NaN, NaN];
  }
}

export function sampleProcess(pid: number): ProcSample {
  const children = childCpuSeconds(pid);
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  const [mainRunSeconds, mainWaitSeconds] = schedSeconds(pid, pid);
  return { cpuSeconds: cpuSecondsOf(pid) + children, childCpuSeconds: children, rssBytes: m ? Number(m[1]) * 1024 : 0, mainRunSeconds, mainWaitSeconds, at: performance.now() };
}

/** CPU use between two samples, in % of one core. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  const wall = (b.at - a.at) / 1000;
  return wall > 0 ? ((b.cpuSeconds - a.cpuSeconds) / wall) * 100 : 0;
}

/**
 * CPU seconds since boot, all cores (/proc/stat): `busy` is everything but idle, iowait and steal;
 * `steal` is time the hypervisor gave a virtual CPU's turn to another guest while it had work.
 */
export function hostCpuSeconds(): { busy: number; steal: number } {
  const line = readFileSync('/proc/stat', 'latin1').slice(0, 200).split('\n')[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  const steal = f[7] ?? 0;
  const busy = f.reduce((a, b) => a + b, 0) - (f[3] ?? 0) - (f[4] ?? 0) - steal - (f[8] ?? 0) - (f[9] ?? 0);
  return { busy: busy / TICKS_PER_SECOND, steal: steal / TICKS_PER_SECOND };
}

/** CPU and memory over one measured interval. */
export interface MeterReading {
  brokerCpuPct: number;
  /** Of brokerCpuPct, what the broker's child processes used (the trusted component, `process` backend). */
  brokerChildCpuPct: number;
  /** The broker's main (event loop) thread: % of wall time on a CPU, and runnable but waiting for one. */
  brokerMainPct: number;
  brokerMainWaitPct: number;
  loadgenCpuPct: number;
  otherCpuPct: number;
  /** CPU the hypervisor withheld from this machine's cores meanwhile (% of one core): a noisy host. */
  stealCpuPct: number;
  brokerRssMiB: number;
  seconds: number;
}

/** CPU and memory of the broker process and of this process over one measured interval. */
export class Meter {
  private b0: ProcSample;
  private host0 = hostCpuSeconds();
  private self0 = process.cpuUsage();
  private t0 = performance.now();

  constructor(private readonly pid: number) {
    this.b0 = sampleProcess(pid);
  }

  read(): MeterReading {
    const b1 = sampleProcess(this.pid);
    const self = process.cpuUsage(this.self0);
    const seconds = (performance.now() - this.t0) / 1000;
    const brokerCpuPct = cpuPercent(this.b0, b1);
    const loadgenCpuPct = ((self.user + self.system) / 1e6 / seconds) * 100;
    const host = hostCpuSeconds();
    const hostPct = ((host.busy - this.host0.busy) / seconds) * 100;
    const wall = (b1.at - this.b0.at) / 1000;
    return {
      brokerCpuPct: round(brokerCpuPct, 2),
      // of which its child processes (the trusted component of the `process` backend)
      brokerChildCpuPct: round(wall > 0 ? ((b1.childCpuSeconds - this.b0.childCpuSeconds) / wall) * 100 : 0, 2),
      // The broker's event loop thread, on a CPU and runnable but waiting for one: a broker is
      // saturated when the two add up to ~100 %, whatever its process total (GC helper threads).
      brokerMainPct: round(wall > 0 ? ((b1.mainRunSeconds - this.b0.mainRunSeconds) / wall) * 100 : NaN),
      brokerMainWaitPct: round(wall > 0 ? ((b1.mainWaitSeconds - this.b0.mainWaitSeconds) / wall) * 100 : NaN),
      loadgenCpuPct: round(loadgenCpuPct),
      // everything else the machine did meanwhile (other users' work makes a run noisy)
      otherCpuPct: round(Math.max(0, hostPct - brokerCpuPct - loadgenCpuPct)),
      stealCpuPct: round(((host.steal - this.host0.steal) / seconds) * 100),
      brokerRssMiB: round(b1.rssBytes / 1048576),
      seconds,
    };
  }
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port; rejects after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
