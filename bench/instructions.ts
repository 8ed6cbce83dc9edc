/**
 * Instructions per delivery (group `instructions` of `npm run bench`, only when named): our broker
 * and, with `--baseline DIR`, another built checkout, each run under valgrind's callgrind, which
 * counts the instructions the broker process executes in user space (our JavaScript as V8 compiled
 * it, V8, libuv, OpenSSL; not the kernel).
 *
 * Why: "no plain row slower than before by more than 3-5 %" cannot be read off msg/s on a shared
 * 2-core VM, where rounds of one build spread 20-50 %. An instruction count does not depend on what
 * else the host runs, so a few per cent is measurable. It is a proxy: it misses cache misses and
 * syscall time, so the msg/s rows stay the headline and this settles small differences.
 *
 * Each round starts a fresh broker of each build under callgrind (the builds in turns), and runs
 * every scenario on it: WARMUP messages (V8 optimises the hot paths), all delivered, the counters
 * zeroed, MEASURED messages, all delivered, the counters dumped: instructions / deliveries. Counting
 * whole messages from an idle broker to an idle broker leaves nothing half-done in the figure; under
 * callgrind the broker runs ~50x slower than the load generator, so its socket reads are full.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { QoS } from 'mqtt-packet';
import { startBrokerProcess, type BrokerName, type BrokerProcess } from './brokers.js';
import { RawClient, encodeConnect, publishBatch, type PublishBatch } from './mqtt-raw.js';
import { sleep } from './proc.js';
import { round } from './stats.js';

export interface InstructionScenario {
  id: string;
  publishers: number;
  subscribers: number;
  qos: QoS;
  payload: number;
}

/** The plain rows the "no slower than before" acceptances of issues 23, 26 and 27 were read on. */
export const INSTRUCTION_SCENARIOS: readonly InstructionScenario[] = [
  { id: 'instructions-fan-out-m1-q0-64', publishers: 1, subscribers: 1, qos: 0, payload: 64 },
  { id: 'instructions-fan-out-m8-q0-64', publishers: 1, subscribers: 8, qos: 0, payload: 64 },
  { id: 'instructions-fan-out-m1-q1-4096', publishers: 1, subscribers: 1, qos: 1, payload: 4096 },
  { id: 'instructions-fan-in-p16-q0-1024', publishers: 16, subscribers: 1, qos: 0, payload: 1024 },
  { id: 'instructions-fan-in-p16-q1-64', publishers: 16, subscribers: 1, qos: 1, payload: 64 },
];

/** Deliveries before the counters are zeroed, and counted after (per scenario and round). */
const WARMUP_DELIVERIES = 40_000;
const MEASURED_DELIVERIES = 60_000;
/** Deliveries sent and not yet received, at most (the closed loop of the throughput rows). */
const WINDOW = 1000;
/** PUBLISHes per write of one publisher. */
const BATCH = 10;
/** Starting node under valgrind takes ~20 s here. */
const START_TIMEOUT_MS = 180_000;

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
async function send(pubs: RawClient[], templates: PublishBatch[], qos: QoS, subscribers: number, deliveries: number, delivered: () => number): Promise<void> {
  const messages = Math.ceil(deliveries / subscribers);
  const start = delivered();
  const nextId = pubs.map(() => 1);
  let sent = 0;
  let turn = 0;
  while (sent < messages) {
    while ((sent + BATCH) * subscribers - (delivered() - start) > WINDOW) await sleep(1);
    const i = turn++ % pubs.length;
    const t = templates[i]!;
    const count = Math.min(BATCH, messages - sent);
    const buf = Buffer.from(t.bytes.subarray(0, count * t.packetLength));
    if (qos > 0) {
      for (let j = 0; j < count; j++) {
        buf.writeUInt16BE(nextId[i]!, t.idOffset + j * t.packetLength);
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

/** One round on one build: a fresh broker under callgrind, every scenario; instructions per delivery by scenario id. */
async function round1(name: BrokerName, baselineDir: string | undefined, scenarios: readonly InstructionScenario[]): Promise<Record<string, number>> {
  let dir = '';
  const broker: BrokerProcess = await startBrokerProcess(name, {
    baselineDir,
    startTimeoutMs: START_TIMEOUT_MS,
    // %p: the process id, so the data folder (known only once it exists) is not needed here
    wrapper: (dataDir) => {
      dir = dataDir;
      return ['valgrind', '--tool=callgrind', `--callgrind-out-file=${join(dataDir, 'callgrind.%p')}`];
    },
  });
  const out: Record<string, number> = {};
  const clients: RawClient[] = [];
  try {
    const dumps = new Set<string>();
    for (const s of scenarios) {
      let delivered = 0;
      const filter = `bench/${s.id}/#`;
      const subs: RawClient[] = [];
      for (let i = 0; i < s.subscribers; i++) {
        const c = new RawClient(broker.port, encodeConnect(`${s.id}-s${i}`), { publish: () => void delivered++ });
        clients.push(c);
        await c.ready;
        await c.subscribe(filter, s.qos);
        subs.push(c);
      }
      const pubs: RawClient[] = [];
      const templates: PublishBatch[] = [];
      for (let i = 0; i < s.publishers; i++) {
        const c = new RawClient(broker.port, encodeConnect(`${s.id}-p${i}`));
        clients.push(c);
        await c.ready;
        pubs.push(c);
        templates.push(publishBatch(`bench/${s.id}/p${i}`, s.payload, s.qos, BATCH));
      }
      await send(pubs, templates, s.qos, s.subscribers, WARMUP_DELIVERIES, () => delivered);
      await sleep(200);
      execFileSync('callgrind_control', ['--zero', String(broker.pid)], { stdio: 'ignore' });
      const counted = delivered;
      await send(pubs, templates, s.qos, s.subscribers, MEASURED_DELIVERIES, () => delivered);
      await sleep(200); // the last PUBACKs reach the broker
      out[s.id] = dumpedInstructions(broker.pid, dir, dumps) / (delivered - counted);
      for (const c of [...subs, ...pubs]) c.close();
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
  params: Record<string, number | string>;
  /** Per build: the median instructions per delivery, and every round's. */
  results: Record<string, { irPerDelivery: number; rounds: number[]; spreadPct: number }>;
  ratios: Record<string, { irPerDelivery: number }>;
};

/** `rounds` rounds of every build in turns; one line per scenario, `mqt-tz/baseline` its ratio. */
export async function runInstructions(o: { rounds: number; baselineDir?: string; scenarios?: readonly InstructionScenario[] }, emit: (l: InstructionLine) => void): Promise<InstructionLine[]> {
  const scenarios = o.scenarios ?? INSTRUCTION_SCENARIOS;
  const builds: BrokerName[] = o.baselineDir === undefined ? ['mqt-tz'] : ['mqt-tz', 'baseline'];
  const counts: Record<string, Record<string, number[]>> = {};
  for (let r = 0; r < o.rounds; r++) {
    // alternate which build goes first
    const order = r % 2 === 0 ? builds : [...builds].reverse();
    for (const b of order) {
      const got = await round1(b, o.baselineDir, scenarios);
      for (const [id, ir] of Object.entries(got)) ((counts[id] ??= {})[b] ??= []).push(Math.round(ir));
    }
  }
  const lines: InstructionLine[] = [];
  for (const s of scenarios) {
    const results: InstructionLine['results'] = {};
    for (const b of builds) {
      const rounds = counts[s.id]?.[b] ?? [];
      const m = median(rounds);
      results[b] = { irPerDelivery: Math.round(m), rounds, spreadPct: round(((Math.max(...rounds) - Math.min(...rounds)) / m) * 100, 1) };
    }
    const ratios: InstructionLine['ratios'] = {};
    if (results['baseline'] !== undefined) ratios['mqt-tz/baseline'] = { irPerDelivery: round(results['mqt-tz']!.irPerDelivery / results['baseline'].irPerDelivery, 3) };
    const line: InstructionLine = { bench: 'instructions', group: 'instructions', id: s.id, params: { publishers: s.publishers, subscribers: s.subscribers, qos: s.qos, payload: s.payload, warmup: WARMUP_DELIVERIES, measured: MEASURED_DELIVERIES }, results, ratios };
    lines.push(line);
    emit(line);
  }
  return lines;
}
