// Target 1: the broker as a child process, several fuzzed connections per case, a liveness probe
// and an RSS bound throughout. A crash, a hang or RSS past the bound ends the run and writes the
// last cases' bytes out for --replay.
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBrokerChild, type BrokerChild } from './broker-child.js';
import { failurePath, writeFailure, type BrokerCaseRecord } from './case-file.js';
import { enrolAndSeal } from './envelopes.js';
import type { EnvelopePool } from './mqtt-gen.js';
import { Prng } from './prng.js';
import { HANG_MS, Probe } from './probe.js';
import { flatnessFailure, flatnessNote, mib, RssMonitor } from './rss.js';
import { replayCase, runCase } from './session-run.js';
import { caseScripts } from './session-gen.js';

/** PRNG stream label of the broker target (the trusted component's is another). */
export const BROKER_STREAM = 1;
/**
 * Cases kept for the failure file: those started in the last 8 s (a hang is seen 5 s after it
 * begins, and state one case leaves can break a later one); cases that wrote nothing (started
 * after a crash) are left out.
 */
const KEPT_MS = HANG_MS + 3000;
/** Cases run at once (each waits on its sockets most of the time). */
const LANES = 3;

export interface RunOptions {
  seed: number;
  ms: number;
  rssLog?: string;
  log: (line: string) => void;
}

export interface TargetResult {
  failure?: string;
  failureFile?: string;
}

/** The checks every 250 ms: the process (and its trusted component) alive, the probe, the RSS bound. */
export class Watch {
  failure: string | undefined;
  private readonly timer: NodeJS.Timeout;
  private ticks = 0;

  constructor(broker: BrokerChild, probe: Probe, rss: RssMonitor) {
    this.timer = setInterval(() => {
      if (this.failure !== undefined) return;
      if (broker.exit !== undefined) this.failure = `crash: the broker process ended (${broker.exit})`;
      else if (!alive(broker.teePid)) this.failure = `crash: the trusted component process ${broker.teePid} ended`;
      else {
        rss.heapCollected(broker.fullCollections);
        this.failure = probe.failure() ?? (++this.ticks % 4 === 0 ? rss.sample() : undefined);
      }
    }, 250);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Runs `body` with a broker started on a fresh data folder, or on a copy of `from`. */
async function withBroker<T>(body: (broker: BrokerChild, dataDir: string) => Promise<T>, from?: string): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-fuzz-broker-'));
  if (from !== undefined) cpSync(from, dataDir, { recursive: true });
  let broker: BrokerChild | undefined;
  try {
    broker = await startBrokerChild(dataDir);
    return await body(broker, dataDir);
  } finally {
    await broker?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

/** A crash's stack trace is in the last lines of the broker's stderr: wait a little for them. */
async function describe(failure: string, broker: BrokerChild): Promise<string> {
  await new Promise((resolve) => setTimeout(resolve, 300));
  return broker.exit === undefined ? failure : `${failure}\n${broker.tail().filter((l) => !l.startsWith('{')).join('\n')}`;
}

interface CasesRun {
  failure: string | undefined;
  /** Index of the last case started. */
  last: number;
  /** The cases kept for the failure file. */
  recent: BrokerCaseRecord[];
}

/** Runs cases in LANES lanes until the time is up or the watch sees a failure. */
async function runCases(o: RunOptions, broker: BrokerChild, envelopes: EnvelopePool): Promise<CasesRun> {
  const probe = await Probe.start(broker.port);
  const rss = new RssMonitor({ broker: broker.pid, tee: broker.teePid }, Math.min(60_000, o.ms / 4), o.rssLog);
  const watch = new Watch(broker, probe, rss);
  const recent: BrokerCaseRecord[] = [];
  const started = Date.now();
  const end = started + o.ms;
  let index = 0;
  let connections = 0;
  let writes = 0;
  const lane = async (): Promise<void> => {
    while (Date.now() < end && watch.failure === undefined) {
      const p = new Prng(o.seed, BROKER_STREAM, index);
      const record: BrokerCaseRecord = { index: index++, startedAt: Date.now() - started, connections: [] };
      recent.push(record);
      while (recent[0]!.startedAt < record.startedAt - KEPT_MS) recent.shift();
      const scripts = caseScripts(p, envelopes);
      await runCase(broker.port, scripts, p.fork(0xacc), record.connections);
      connections += scripts.length;
      for (const c of record.connections) writes += c.events.length;
    }
  };
  await Promise.all(Array.from({ length: LANES }, lane));
  if (watch.failure === undefined) await new Promise((resolve) => setTimeout(resolve, 600)); // the last case's effects
  watch.stop();
  await probe.stop();
  const s = rss.summary();
  o.log(`broker: ${index} cases, ${connections} connections, ${writes} writes; probe ${probe.roundTrips} round trips, slowest ${probe.maxRoundTripMs} ms; ` +
    `RSS: warm-up peak ${mib(s.baseline)}, then max ${mib(s.max)}, end ${mib(s.end)}, lowest in the first / last minute ${mib(s.firstFloor)} / ${mib(s.lastFloor)}, ` +
    `${flatnessNote(s)}; ` +
    `${broker.errorCount} error lines in the broker log`);
  for (const e of broker.errors.slice(0, 5)) o.log(`  broker logged: ${e}`);
  return { failure: watch.failure ?? flatnessFailure(s), last: index - 1, recent: recent.filter((c) => c.connections.some((r) => r.events.length > 0)) };
}

export function fuzzBroker(o: RunOptions): Promise<TargetResult> {
  return withBroker(async (broker, dataDir) => {
    const envelopes = await enrolAndSeal(broker.port, dataDir, broker.fingerprint);
    // The data folder as the cases found it (enrolled keys): a failure keeps it for the replay.
    const snapshot = mkdtempSync(join(tmpdir(), 'mqt-tz-fuzz-snapshot-'));
    try {
      cpSync(dataDir, snapshot, { recursive: true });
      const run = await runCases(o, broker, envelopes);
      if (run.failure === undefined) return {};
      const failure = await describe(run.failure, broker);
      const data = failurePath('broker', o.seed, run.last, '.data');
      cpSync(snapshot, data, { recursive: true });
      return { failure, failureFile: writeFailure({ target: 'broker', seed: o.seed, caseIndex: run.last, failure, data, cases: run.recent }) };
    } finally {
      rmSync(snapshot, { recursive: true, force: true });
    }
  });
}

/** Sends a failure file's cases to a fresh broker and says whether the failure comes back. */
export function replayBroker(cases: readonly BrokerCaseRecord[], data: string | undefined, log: (line: string) => void): Promise<TargetResult> {
  return withBroker(async (broker) => {
    const probe = await Probe.start(broker.port);
    const rss = new RssMonitor({ broker: broker.pid }, 0, undefined);
    const watch = new Watch(broker, probe, rss);
    const first = cases[0]?.startedAt ?? 0;
    const started = Date.now();
    await Promise.all(cases.map(async (c) => {
      await new Promise((resolve) => setTimeout(resolve, c.startedAt - first - (Date.now() - started)));
      log(`replaying case ${c.index} (${c.connections.length} connections)`);
      if (watch.failure === undefined) await replayCase(broker.port, c.connections);
    }));
    const until = Date.now() + HANG_MS + 1000;
    while (watch.failure === undefined && Date.now() < until) await new Promise((resolve) => setTimeout(resolve, 100));
    watch.stop();
    await probe.stop();
    return watch.failure === undefined ? {} : { failure: await describe(watch.failure, broker) };
  }, data !== undefined && existsSync(data) ? data : undefined);
}
