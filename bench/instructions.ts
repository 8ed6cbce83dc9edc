/**
 * Instructions per delivery (group `instructions` of `npm run bench`, only when named): our broker
 * and, with `--baseline DIR`, another built checkout, each run under valgrind's callgrind, which
 * counts the instructions the broker process executes in user space, all its threads (our
 * JavaScript as V8 compiled it, V8 and its collector, libuv, OpenSSL; not the kernel). A protected
 * broker's trusted process runs outside valgrind and is not counted.
 *
 * Why: "no plain row slower than before by more than 3-5 %" cannot be read off msg/s on a shared
 * 2-core VM, where rounds of one build spread 20-50 %. An instruction count does not depend on what
 * else the host runs, so a few per cent is measurable. It is a proxy: it misses cache misses and
 * syscall time, so the msg/s rows stay the headline and this settles small differences.
 *
 * Each round starts a fresh broker of each build under callgrind (the builds in turns; a protected
 * broker for the protected scenarios), waits until it is idle, measures what the idle broker spends
 * per second (timers, the runtime's housekeeping: under valgrind a measurement lasts ~50x longer
 * than natively, so this part would weigh 50x too much), and runs every scenario on it: WARMUP
 * deliveries (V8 optimises the hot paths), all delivered, the counters zeroed, MEASURED deliveries,
 * all delivered, the counters dumped. The figure is (instructions - idle rate x duration) /
 * deliveries. Under callgrind the broker runs ~50x slower than the load generator, so its socket
 * reads are full whichever build it is.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QoS } from 'mqtt-packet';
import { startBrokerProcess, type BrokerName, type BrokerProcess } from './brokers.js';
import { RawClient, encodeConnect, publishBatch } from './mqtt-raw.js';
import { sampleProcess, sleep } from './proc.js';
import { EnvelopePool, PoolCursor, PROTECTED_FILTER, PUBLISHER_ID, STREAM_FILTER, ensureEnrolled, subscriberIds } from './protected.js';
import { round } from './stats.js';

export interface InstructionScenario {
  id: string;
  publishers: number;
  subscribers: number;
  qos: QoS;
  payload: number;
  /** Envelopes on a protected topic (QoS 1, one publisher, the `process` trusted backend). */
  protected?: boolean;
}

/** The rows the "no slower than before" acceptances of issues 23, 26 and 27 were read on. */
export const INSTRUCTION_SCENARIOS: readonly InstructionScenario[] = [
  { id: 'instructions-fan-out-m1-q0-64', publishers: 1, subscribers: 1, qos: 0, payload: 64 },
  { id: 'instructions-fan-out-m8-q0-64', publishers: 1, subscribers: 8, qos: 0, payload: 64 },
  { id: 'instructions-fan-out-m1-q1-4096', publishers: 1, subscribers: 1, qos: 1, payload: 4096 },
  { id: 'instructions-fan-in-p16-q0-1024', publishers: 16, subscribers: 1, qos: 0, payload: 1024 },
  { id: 'instructions-fan-in-p16-q1-64', publishers: 16, subscribers: 1, qos: 1, payload: 64 },
  { id: 'instructions-protected-m1', publishers: 1, subscribers: 1, qos: 1, payload: 4096, protected: true },
  { id: 'instructions-protected-m8', publishers: 1, subscribers: 8, qos: 1, payload: 4096, protected: true },
];

/** Deliveries before the counters are zeroed, and counted after (per scenario and round). */
const WARMUP_DELIVERIES = 40_000;
const MEASURED_DELIVERIES = 60_000;
/**
 * Deliveries sent and not yet received, at most (the closed loop of the throughput rows). How much
 * one read of the broker carries still depends on how fast the load generator refills, so a busy
 * host moves the counts (fan-in 16 -> 1 at 1 KiB by up to ~25 % between runs): compare builds
 * within one run, whose rounds alternate. (A window of 8 000 overflowed the default session queue,
 * 16 MiB, at 4 KiB: the broker dropped deliveries, as configured.)
 */
const WINDOW = 1000;
/** PUBLISHes per write of one publisher. */
const BATCH = 10;
/** The idle broker's own instructions are measured over this long, once per round. */
const IDLE_MS = 10_000;
/** Starting node under valgrind takes ~20 s here. */
const START_TIMEOUT_MS = 180_000;

/** One round's figures of one scenario. */
interface Count {
  /** Instructions per delivery, all of them. */
  gross: number;
  /** Less what the idle broker would have spent in the same time. */
  net: number;
  idlePerSec: number;
}

/** What the publishers send: `count` PUBLISHes of publisher i, back to back, packet ids to be stamped at idOffset[i] + j x packetLength[i]. */
interface Source {
  packetLength: number[];
  idOffset: number[];
  next(i: number, count: number): Buffer;
}

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function valgrindMissing(): string | undefined {
  const r = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  return r.error ? 'valgrind not found (Debian: apt-get install valgrind)' : undefined;
}

/** Sends `deliveries / subscribers` messages over the publishers in turn, at most WINDOW deliveries in flight, and waits until all arrived. */
async function send(pubs: RawClient[], source: Source, qos: QoS, subscribers: number, deliveries: number, delivered: () => number, nextId: number[]): Promise<void> {
  const messages = Math.ceil(deliveries / subscribers);
  const start = delivered();
  let sent = 0;
  let turn = 0;
  while (sent < messages) {
    while ((sent + BATCH) * subscribers - (delivered() - start) > WINDOW) await sleep(1);
    const i = turn++ % pubs.length;
    const count = Math.min(BATCH, messages - sent);
    const buf = source.next(i, count);
    if (qos > 0) {
      for (let j = 0; j < count; j++) {
        buf.writeUInt16BE(nextId[i]!, source.idOffset[i]! + j * source.packetLength[i]!);
        nextId[i] = nextId[i] === 65535 ? 1 : nextId[i]! + 1;
      }
    }
    pubs[i]!.write(buf);
    sent += count;
  }
  const deadline = performance.now() + 300_000;
  while (delivered() - start < messages * subscribers) {
    if (performance.now() > deadline) throw new Error(`${messages * subscribers - (delivered() - start)} deliveries missing after 300 s`);
    await sleep(5);
  }
}

/** Copies of one PUBLISH per publisher on `bench/ID/pI`. */
function templateSource(s: InstructionScenario): Source {
  const templates = Array.from({ length: s.publishers }, (_, i) => publishBatch(`bench/${s.id}/p${i}`, s.payload, s.qos, BATCH));
  return {
    packetLength: templates.map((t) => t.packetLength),
    idOffset: templates.map((t) => t.idOffset),
    next: (i, count) => Buffer.from(templates[i]!.bytes.subarray(0, count * templates[i]!.packetLength)),
  };
}

/** Envelopes sealed before the scenario, each sent once (the trusted component refuses a replay). */
async function envelopeSource(broker: BrokerProcess, pool: EnvelopePool, messages: number): Promise<Source> {
  const cursor = new PoolCursor(pool, broker, messages);
  await cursor.reserve();
  return {
    packetLength: [pool.packetLength],
    idOffset: [pool.idOffset],
    next(_i, count) {
      const v = cursor.take(count);
      if (v === undefined) throw new Error('the envelope pool ran out');
      return v;
    },
  };
}

/**
 * Waits until the broker (under valgrind) has settled after its start: less than 5 % of a core over
 * a second. Its store thread and trusted child boot after it listens, ~50x slower than natively;
 * their start must not fall into a count.
 */
async function settled(pid: number): Promise<void> {
  const deadline = performance.now() + 120_000;
  let last = sampleProcess(pid).cpuSeconds;
  while (performance.now() < deadline) {
    await sleep(1000);
    const now = sampleProcess(pid).cpuSeconds;
    if (now - last < 0.05) return;
    last = now;
  }
  throw new Error('the broker under valgrind did not settle within 120 s of its start');
}

/** The instructions counted since the last zeroing: callgrind's dump of `pid`, newest file in `dir`. */
function dumpedInstructions(pid: number, dir: string, before: Set<string>): number {
  execFileSync('callgrind_control', ['--dump', String(pid)], { stdio: 'ignore' });
  // callgrind.PID is the final dump (at exit); each requested dump is callgrind.PID.N
  const fresh = readdirSync(dir).filter((f) => /^callgrind\.\d+\.\d+$/.test(f) && !before.has(f));
  if (fresh.length !== 1) throw new Error(`expected one new callgrind dump in ${dir}, found ${fresh.length}`);
  before.add(fresh[0]!);
  const m = /^(?:summary|totals): (\d+)/m.exec(readFileSync(join(dir, fresh[0]!), 'utf8'));
  if (m === null) throw new Error(`no instruction total in ${fresh[0]}`);
  return Number(m[1]);
}

/** One round on one build: a fresh broker under callgrind, every scenario (all plain or all protected); a Count by scenario id. */
async function round1(name: BrokerName, dirs: BuildDirs, scenarios: readonly InstructionScenario[], pool: EnvelopePool | undefined): Promise<Record<string, Count>> {
  let dir = '';
  // `--candidate DIR` stands in for this checkout: started as a baseline build is, from its folder
  const candidate = name === 'mqt-tz' ? dirs.candidateDir : undefined;
  const broker: BrokerProcess = await startBrokerProcess(candidate === undefined ? name : 'baseline', {
    baselineDir: candidate ?? dirs.baselineDir,
    startTimeoutMs: START_TIMEOUT_MS,
    protect: pool === undefined ? undefined : { filter: PROTECTED_FILTER, backend: 'process' },
    // %p: the process id, so the data folder (known only once it exists) is not needed here
    wrapper: (dataDir) => {
      dir = dataDir;
      return ['valgrind', '--tool=callgrind', `--callgrind-out-file=${join(dataDir, 'callgrind.%p')}`];
    },
  });
  const out: Record<string, Count> = {};
  const clients: RawClient[] = [];
  try {
    await settled(broker.pid);
    if (pool !== undefined) await ensureEnrolled(broker, [PUBLISHER_ID, ...subscriberIds(Math.max(...scenarios.map((s) => s.subscribers)))]);
    const dumps = new Set<string>();
    execFileSync('callgrind_control', ['--zero', String(broker.pid)], { stdio: 'ignore' });
    const idleFrom = performance.now();
    await sleep(IDLE_MS);
    const idlePerSec = dumpedInstructions(broker.pid, dir, dumps) / ((performance.now() - idleFrom) / 1000);
    for (const s of scenarios) {
      let delivered = 0;
      const filter = pool === undefined ? `bench/${s.id}/#` : STREAM_FILTER;
      const subIds = pool === undefined ? Array.from({ length: s.subscribers }, (_, i) => `${s.id}-s${i}`) : subscriberIds(s.subscribers);
      const pubIds = pool === undefined ? Array.from({ length: s.publishers }, (_, i) => `${s.id}-p${i}`) : [PUBLISHER_ID];
      const subs: RawClient[] = [];
      for (const id of subIds) {
        const c = new RawClient(broker.port, encodeConnect(id), { publish: () => void delivered++ });
        clients.push(c);
        await c.ready;
        await c.subscribe(filter, s.qos);
        subs.push(c);
      }
      const pubs: RawClient[] = [];
      for (const id of pubIds) {
        const c = new RawClient(broker.port, encodeConnect(id));
        clients.push(c);
        await c.ready;
        pubs.push(c);
      }
      const messages = (n: number): number => Math.ceil(n / s.subscribers);
      const source = pool === undefined ? templateSource(s) : await envelopeSource(broker, pool, messages(WARMUP_DELIVERIES) + messages(MEASURED_DELIVERIES));
      const ids = pubs.map(() => 1);
      await send(pubs, source, s.qos, s.subscribers, WARMUP_DELIVERIES, () => delivered, ids);
      await sleep(200);
      execFileSync('callgrind_control', ['--zero', String(broker.pid)], { stdio: 'ignore' });
      const counted = delivered;
      const from = performance.now();
      await send(pubs, source, s.qos, s.subscribers, MEASURED_DELIVERIES, () => delivered, ids);
      await sleep(200); // the last PUBACKs reach the broker
      const total = dumpedInstructions(broker.pid, dir, dumps);
      const seconds = (performance.now() - from) / 1000;
      const deliveries = delivered - counted;
      out[s.id] = { gross: total / deliveries, net: (total - idlePerSec * seconds) / deliveries, idlePerSec };
      for (const c of [...subs, ...pubs]) c.close();
      await sleep(300); // the ids connect again in the next scenario
    }
  } finally {
    for (const c of clients) c.close();
    await broker.stop();
  }
  return out;
}

export type InstructionLine = {
  bench: 'instructions';
  group: 'instructions';
  id: string;
  params: Record<string, number | string | boolean>;
  /**
   * Per build: the median instructions per delivery beyond what the idle broker spends in the same
   * time (`irPerDelivery`), every round's, their spread; the median with the idle part
   * (`grossIrPerDelivery`) and the idle broker's instructions per second.
   */
  results: Record<string, { irPerDelivery: number; rounds: number[]; spreadPct: number; grossIrPerDelivery: number; idleIrPerSec: number }>;
  ratios: Record<string, { irPerDelivery: number }>;
};

/** `rounds` rounds of every build in turns; one line per scenario, `mqt-tz/baseline` its ratio. */
/** The builds compared: this checkout (or `candidateDir`) and `baselineDir`, each a built checkout. */
interface BuildDirs {
  baselineDir?: string;
  candidateDir?: string;
}

export async function runInstructions(o: BuildDirs & { rounds: number; scenarios?: readonly InstructionScenario[] }, emit: (l: InstructionLine) => void): Promise<InstructionLine[]> {
  const scenarios = o.scenarios ?? INSTRUCTION_SCENARIOS;
  const kinds = [scenarios.filter((s) => s.protected !== true), scenarios.filter((s) => s.protected === true)].filter((k) => k.length > 0);
  const pool = kinds.some((k) => k[0]!.protected === true) ? new EnvelopePool(4096) : undefined;
  const builds: BrokerName[] = o.baselineDir === undefined ? ['mqt-tz'] : ['mqt-tz', 'baseline'];
  const counts: Record<string, Record<string, Count[]>> = {};
  for (let r = 0; r < o.rounds; r++) {
    // alternate which build goes first
    const order = r % 2 === 0 ? builds : [...builds].reverse();
    for (const b of order) {
      for (const k of kinds) {
        const got = await round1(b, o, k, k[0]!.protected === true ? pool : undefined);
        for (const [id, c] of Object.entries(got)) ((counts[id] ??= {})[b] ??= []).push(c);
        process.stderr.write(`instructions: round ${r + 1}, ${b}: ${Object.entries(got).map(([id, c]) => `${id} ${Math.round(c.net)}`).join(', ')}\n`);
      }
    }
  }
  const lines: InstructionLine[] = [];
  for (const s of scenarios) {
    const results: InstructionLine['results'] = {};
    for (const b of builds) {
      const all = counts[s.id]?.[b] ?? [];
      const rounds = all.map((x) => Math.round(x.net));
      const m = median(rounds);
      results[b] = {
        irPerDelivery: Math.round(m),
        rounds,
        spreadPct: round(((Math.max(...rounds) - Math.min(...rounds)) / m) * 100, 1),
        grossIrPerDelivery: Math.round(median(all.map((x) => x.gross))),
        idleIrPerSec: Math.round(median(all.map((x) => x.idlePerSec))),
      };
    }
    const ratios: InstructionLine['ratios'] = {};
    if (results['baseline'] !== undefined) ratios['mqt-tz/baseline'] = { irPerDelivery: round(results['mqt-tz']!.irPerDelivery / results['baseline'].irPerDelivery, 3) };
    const params = { publishers: s.publishers, subscribers: s.subscribers, qos: s.qos, payload: s.payload, protected: s.protected === true, warmup: WARMUP_DELIVERIES, measured: MEASURED_DELIVERIES };
    const line: InstructionLine = { bench: 'instructions', group: 'instructions', id: s.id, params, results, ratios };
    lines.push(line);
    emit(line);
  }
  return lines;
}
