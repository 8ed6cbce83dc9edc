/**
 * Durable state (group `durable` of `npm run bench`): QoS 1 fan-in 16 → 1 persistent subscriber,
 * 64 B, online, offline-then-drained, and the acknowledged messages lost at kill -9, on our broker at each sync level and without persistence,
 * on mosquitto saving on every change and on aedes with aedes-persistence-level; each variant a
 * fresh process, the variants of a scenario run one after another in a rotating order. Group
 * `durable-startup` (only when named: ~1 min): a start on a store holding 1 000 000 queued messages
 * and a soak that watches the state files.
 */
import { existsSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqttPacket from 'mqtt-packet';
import { startBrokerProcess, type BrokerName, type BrokerProcess } from './brokers.js';
import { encodeConnect, encodePublish, RawClient } from './mqtt-raw.js';
import type { DurableLine } from './report.js';
import { Meter, sleep } from './proc.js';
import { LatencyRecorder, percentiles, round } from './stats.js';
import { openSqliteStore, STATE_FILE } from '../src/persistence/sqlite-store.js';
import type { Change } from '../src/persistence/store.js';

const PUBLISHERS = 16;
const PAYLOAD = 64;
/** Unacknowledged PUBLISHes per publisher. */
const WINDOW = 64;
/** Messages sent and not yet delivered, over all publishers: the load follows the subscriber, so no queue grows without bound. */
const DELIVERY_WINDOW = 1024;
const BATCH = 16;
const SUBSCRIBER = 'durable-subscriber';

/** Our broker's persistence (`normal`, `full`, `off`) or a peer with persistence on. */
/** `baseline`: another build of ours (`--baseline DIR`) at `normal`, for a same-run before/after. */
export type DurableVariant = 'normal' | 'full' | 'off' | 'mosquitto' | 'aedes' | 'baseline';
export const DURABLE_VARIANTS: readonly DurableVariant[] = ['normal', 'full', 'off', 'mosquitto', 'aedes'];
const PEERS: readonly DurableVariant[] = ['mosquitto', 'aedes'];

export interface DurableOptions {
  quick: boolean;
  /** `node --cpu-prof` profiles of our broker go here. */
  profileDir?: string;
  /** A built checkout run as the variant `baseline` (online and offline scenarios). */
  baselineDir?: string;
}

function brokerOf(v: DurableVariant): BrokerName {
  return v === 'mosquitto' || v === 'aedes' || v === 'baseline' ? v : 'mqt-tz';
}

/** A fresh broker of the variant; our broker with unbounded queues (the offline scenario fills one). */
export function startDurable(v: DurableVariant, o: DurableOptions & { dataDir?: string; keepDataDir?: boolean; startTimeoutMs?: number }): Promise<BrokerProcess> {
  const name = brokerOf(v);
  const at = { dataDir: o.dataDir, keepDataDir: o.keepDataDir, startTimeoutMs: o.startTimeoutMs };
  if (name === 'mosquitto' || name === 'aedes') return startBrokerProcess(name, { persistent: true, ...at });
  const sync = v === 'baseline' ? 'normal' : v;
  const config = { tee: null, persistence: sync === 'off' ? false : { sync }, limits: { maxQueuedMessages: 0, maxQueuedBytes: 0 } };
  return startBrokerProcess(name, { config, cpuProfileDir: o.profileDir, baselineDir: o.baselineDir, ...at });
}

function subscriberConnect(): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: false, clientId: SUBSCRIBER, keepalive: 60 });
}

/** 16 QoS 1 publishers, each with WINDOW messages unacknowledged; every payload carries its send time. */
class Publishers {
  acked = 0;
  sent = 0;
  /** Per publisher: its first `ackedBy[i]` messages (numbered from 0) are acknowledged (PUBACKs come in order). */
  readonly ackedBy = new Int32Array(PUBLISHERS);
  private readonly sentBy = new Int32Array(PUBLISHERS);
  /** Set by the online scenario: messages the subscriber has received. */
  delivered: (() => number) | undefined;
  private running = false;
  private left: number;
  private readonly clients: RawClient[] = [];
  private readonly inflight = new Int32Array(PUBLISHERS);
  private readonly nextId = new Int32Array(PUBLISHERS).fill(1);
  private readonly templates: Buffer[] = [];

  private constructor(limit: number) {
    this.left = limit;
  }

  static async open(port: number, limit = Infinity): Promise<Publishers> {
    const p = new Publishers(limit);
    for (let i = 0; i < PUBLISHERS; i++) {
      p.templates.push(encodePublish(`durable/${i}`, Buffer.alloc(PAYLOAD, 0x61), 1));
      const c = new RawClient(port, encodeConnect(`durable-publisher-${i}`), {
        pubacks: (n) => {
          p.inflight[i] -= n;
          p.acked += n;
          p.ackedBy[i] += n;
          p.pump(i);
        },
      });
      p.clients.push(c);
      await c.ready;
    }
    return p;
  }

  start(): void {
    this.running = true;
    this.pumpAll();
  }

  pumpAll(): void {
    for (let i = 0; i < PUBLISHERS; i++) this.pump(i);
  }

  /** Sends no more; the connections stay open (messages in flight are still acknowledged). */
  pause(): void {
    this.running = false;
  }

  stop(): void {
    this.running = false;
    for (const c of this.clients) c.close();
  }

  private pump(i: number): void {
    const t = this.templates[i]!;
    const delivered = this.delivered;
    while (this.running && this.left > 0 && this.inflight[i]! + BATCH <= WINDOW && (delivered === undefined || this.sent - delivered() + BATCH <= DELIVERY_WINDOW)) {
      const n = Math.min(BATCH, this.left);
      const buf = Buffer.allocUnsafe(t.length * n);
      const now = performance.now();
      for (let j = 0; j < n; j++) {
        const o = j * t.length;
        t.copy(buf, o);
        const id = this.nextId[i]!;
        this.nextId[i] = id === 65535 ? 1 : id + 1;
        buf.writeUInt16BE(id, o + t.length - PAYLOAD - 2);
        buf.writeDoubleLE(now, o + t.length - PAYLOAD);
        // which message it is: publisher and number (the kill scenario counts the lost ones)
        buf.writeUInt32LE(i, o + t.length - PAYLOAD + 8);
        buf.writeUInt32LE(this.sentBy[i]++, o + t.length - PAYLOAD + 12);
      }
      this.inflight[i] += n;
      this.left -= n;
      this.sent += n;
      this.clients[i]!.write(buf);
    }
  }
}

async function subscribe(port: number, onMessage: (sentAt: number, publisher: number, n: number) => void, onChunk?: () => void): Promise<RawClient> {
  const sub = new RawClient(port, subscriberConnect(), {
    publish: (buf, start) => onMessage(buf.readDoubleLE(start), buf.readUInt32LE(start + 8), buf.readUInt32LE(start + 12)),
    chunk: onChunk,
  });
  await sub.ready;
  await sub.subscribe('durable/#', 1);
  return sub;
}

/** Our state database and its WAL, MiB, as they are now (undefined for the peers). */
function stateFiles(dataDir: string): { dbMiB: number; walMiB: number } | undefined {
  const mib = (suffix: string): number => {
    const f = join(dataDir, STATE_FILE + suffix);
    return existsSync(f) ? round(statSync(f).size / 2 ** 20, 2) : 0;
  };
  return existsSync(join(dataDir, STATE_FILE)) ? { dbMiB: mib(''), walMiB: mib('-wal') } : undefined;
}

/** Streams to the online persistent subscriber for warm-up + measurement, and `sample` is called once a second meanwhile. */
async function online(broker: BrokerProcess, warmupMs: number, measureMs: number, sample?: () => void): Promise<Record<string, unknown>> {
  let delivered = 0;
  let measuring = false;
  const latency = new LatencyRecorder(200_000);
  let pubs: Publishers | undefined;
  const sub = await subscribe(
    broker.port,
    (sentAt) => {
      delivered++;
      if (measuring) latency.add(performance.now() - sentAt);
    },
    () => pubs?.pumpAll(),
  );
  pubs = await Publishers.open(broker.port);
  pubs.delivered = () => delivered;
  pubs.start();
  await sleep(warmupMs);
  measuring = true;
  const meter = new Meter(broker.pid);
  const from = delivered;
  const t0 = performance.now();
  for (let left = measureMs; left > 0; left -= 1000) {
    await sleep(Math.min(1000, left));
    sample?.();
  }
  const rate = ((delivered - from) * 1000) / (performance.now() - t0);
  const cpu = meter.read();
  measuring = false;
  const files = stateFiles(broker.dataDir);
  pubs.stop();
  sub.close();
  const p = percentiles(latency.sorted());
  // CPU per delivery moves much less with a busy host than msg/s; the main thread's is what bounds a run
  const perDelivery = (pct: number): number => (rate > 0 ? round((pct * 1e4) / rate, 2) : NaN);
  return {
    deliveredPerSec: Math.round(rate),
    p50: round(p.p50, 2),
    p99: round(p.p99, 2),
    brokerCpuPct: cpu.brokerCpuPct,
    brokerMainPct: cpu.brokerMainPct,
    cpuUsPerDelivery: perDelivery(cpu.brokerCpuPct),
    mainUsPerDelivery: perDelivery(cpu.brokerMainPct),
    stealCpuPct: cpu.stealCpuPct,
    ...files,
  };
}

/**
 * The subscriber offline: publish for `ingestMs` (at most `limit` messages), then it connects and
 * everything acknowledged is drained. A time rather than a count: the peers ingest 10–100× slower.
 */
async function offlineThenDrained(broker: BrokerProcess, ingestMs: number, limit: number): Promise<Record<string, unknown>> {
  (await subscribe(broker.port, () => {})).close();
  await sleep(300);
  const pubs = await Publishers.open(broker.port, limit);
  let t0 = performance.now();
  pubs.start();
  while (pubs.acked < limit && performance.now() - t0 < ingestMs) await sleep(5);
  pubs.pause();
  // what is in flight is acknowledged (or not) within the window; count it in
  const settle = performance.now();
  while (pubs.acked < pubs.sent && performance.now() - settle < 5000) await sleep(5);
  const acknowledged = pubs.acked;
  const ingest = (acknowledged * 1000) / (performance.now() - t0);
  const files = stateFiles(broker.dataDir);
  pubs.stop();
  let delivered = 0;
  t0 = performance.now();
  const sub = await subscribe(broker.port, () => delivered++);
  const drainLimitMs = 30_000;
  while (delivered < acknowledged && performance.now() - t0 < drainLimitMs) await sleep(5);
  const drain = (delivered * 1000) / (performance.now() - t0);
  sub.close();
  return { acknowledged, ingestPerSec: Math.round(ingest), drainPerSec: Math.round(drain), delivered, ...(files ? { queuedDbMiB: files.dbMiB, queuedWalMiB: files.walMiB } : {}) };
}

/**
 * Acknowledged messages lost at kill -9: the subscriber offline, publishers sending until ~`afterAcks`
 * are acknowledged, SIGKILL, a restart on the same data folder, then the subscriber drains. Lost =
 * acknowledged and never delivered. Our broker without persistence loses them all (the check can fail).
 */
async function killLoss(v: DurableVariant, o: DurableOptions, afterAcks: number): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-durable-kill-'));
  const first = await startDurable(v, { ...o, dataDir, keepDataDir: true });
  (await subscribe(first.port, () => {})).close();
  // past mosquitto's autosave interval (1 s): the subscriber's session is saved before the traffic
  await sleep(1500);
  const pubs = await Publishers.open(first.port);
  pubs.start();
  const t0 = performance.now();
  while (pubs.acked < afterAcks && performance.now() - t0 < 5000) await sleep(1);
  process.kill(first.pid, 'SIGKILL');
  const acked = Int32Array.from(pubs.ackedBy);
  pubs.stop();
  await first.stop();
  const second = await startDurable(v, { ...o, dataDir, startTimeoutMs: 60_000 });
  try {
    const seen = Array.from({ length: PUBLISHERS }, () => new Set<number>());
    let last = performance.now();
    const sub = await subscribe(second.port, (_at, publisher, n) => {
      seen[publisher]?.add(n);
      last = performance.now();
    });
    const t1 = performance.now();
    while (performance.now() - last < 1000 && performance.now() - t1 < 20_000) await sleep(50);
    sub.close();
    let lost = 0;
    for (let i = 0; i < PUBLISHERS; i++) for (let n = 0; n < acked[i]!; n++) if (!seen[i]!.has(n)) lost++;
    const acknowledged = acked.reduce((a, b) => a + b, 0);
    return { acknowledged, lost, delivered: seen.reduce((a, s) => a + s.size, 0) };
  } finally {
    await second.stop();
  }
}

/** Writes `count` queued messages for one offline session straight into a store, then times our broker's start on it. */
async function startup(count: number, o: DurableOptions): Promise<Record<string, unknown>> {
  const dataDir = mkdtempSync(join(tmpdir(), 'bench-durable-startup-'));
  const store = openSqliteStore(dataDir, 'normal');
  const session = { clientId: SUBSCRIBER, expiryInterval: 0xffffffff, expiresAt: 0, subscriptions: [] };
  await store.commit([{ kind: 'session', session }]);
  const payload = Buffer.alloc(PAYLOAD, 0x61);
  for (let done = 0; done < count; ) {
    const batch: Change[] = [];
    for (let j = 0; j < 10_000 && done < count; j++, done++) {
      const message = { topic: 'durable/0', payload, qos: 1 as const, retain: false, properties: undefined, expiresAt: 0, origin: 'p' };
      batch.push({ kind: 'delivery', delivery: { id: done + 1, clientId: SUBSCRIBER, message, qos: 1, retain: false, subscriptionIds: undefined, packetId: 0, state: 0 } });
    }
    await store.commit(batch);
  }
  await store.close();
  const dbMiB = round(statSync(join(dataDir, STATE_FILE)).size / 2 ** 20, 1);
  const t0 = performance.now();
  // a store with a million queued messages takes seconds to load before the port opens
  const broker = await startDurable('normal', { ...o, dataDir, startTimeoutMs: 120_000 });
  const startMs = Math.round(performance.now() - t0);
  await broker.stop();
  return { queued: count, startMs, dbMiB };
}

/** Online traffic for `seconds` on our broker (`normal`): the state files' size each second, to show they stay bounded. */
async function soak(seconds: number, o: DurableOptions): Promise<Record<string, unknown>> {
  const broker = await startDurable('normal', o);
  let maxDbMiB = 0;
  let maxWalMiB = 0;
  try {
    const r = await online(broker, 0, seconds * 1000, () => {
      const f = stateFiles(broker.dataDir);
      maxDbMiB = Math.max(maxDbMiB, f?.dbMiB ?? 0);
      maxWalMiB = Math.max(maxWalMiB, f?.walMiB ?? 0);
    });
    const messages = Math.round((r['deliveredPerSec'] as number) * seconds);
    return { seconds, messages, deliveredPerSec: r['deliveredPerSec'], maxDbMiB, maxWalMiB, endDbMiB: r['dbMiB'], endWalMiB: r['walMiB'] };
  } finally {
    await broker.stop();
  }
}

export interface DurableScenario {
  group: 'durable' | 'durable-startup';
  id: string;
  params: Record<string, number | string>;
  /** The variants it runs on; one run (our broker only) when empty. */
  variants: readonly DurableVariant[];
  /** Metrics compared between variants; `true` = higher is better. */
  ratios: Record<string, boolean>;
  /** Starts (and kills) its brokers itself: the runner starts none for it. */
  startsBrokers?: boolean;
  /** A throughput row: it also runs the `baseline` build when one is given. */
  throughput?: boolean;
  run(broker: BrokerProcess | undefined, o: DurableOptions, variant: DurableVariant): Promise<Record<string, unknown>>;
}

export function durablePlan(quick: boolean): DurableScenario[] {
  const scenario = { publishers: PUBLISHERS, subscribers: 1, qos: 1, payload: PAYLOAD };
  const measureMs = quick ? 1500 : 3000;
  const ingestMs = quick ? 1000 : 2000;
  const offlineLimit = 300_000;
  const queued = 100_000;
  return [
    {
      group: 'durable',
      id: 'durable-online',
      params: { ...scenario, session: 'persistent, online', measureMs },
      variants: DURABLE_VARIANTS,
      ratios: { deliveredPerSec: true, p99: false },
      throughput: true,
      run: (b) => online(b!, 1000, measureMs),
    },
    {
      group: 'durable',
      id: 'durable-offline',
      params: { ...scenario, session: 'persistent, offline then drained', ingestMs, offlineLimit },
      variants: DURABLE_VARIANTS,
      ratios: { ingestPerSec: true, drainPerSec: true },
      throughput: true,
      run: (b) => offlineThenDrained(b!, ingestMs, offlineLimit),
    },
    {
      group: 'durable',
      id: 'durable-kill',
      params: { ...scenario, session: 'persistent, offline', killAfterAcks: 3000 },
      variants: DURABLE_VARIANTS,
      ratios: {},
      startsBrokers: true,
      run: (_b, o, v) => killLoss(v, o, 3000),
    },
    {
      group: 'durable',
      id: `durable-startup-${queued / 1000}k`,
      params: { queued },
      variants: [],
      ratios: {},
      run: (_b, o) => startup(queued, o),
    },
    {
      group: 'durable-startup',
      id: 'durable-startup-1m',
      params: { queued: 1_000_000 },
      variants: [],
      ratios: {},
      run: (_b, o) => startup(1_000_000, o),
    },
    {
      group: 'durable-startup',
      id: 'durable-soak',
      params: { ...scenario, seconds: 25 },
      variants: [],
      ratios: {},
      run: (_b, o) => soak(25, o),
    },
  ];
}

/** Ratios a/b of every compared metric, as for the other groups (for p99, below 1 = `a` lower). */
function durableRatios(s: DurableScenario, results: Record<string, Record<string, unknown>>): DurableLine['ratios'] {
  const out: DurableLine['ratios'] = {};
  const add = (name: string, a: string, b: string | undefined): void => {
    const m: Record<string, number> = {};
    for (const key of Object.keys(s.ratios)) {
      const x = results[a]?.[key];
      const y = b === undefined ? undefined : results[b]?.[key];
      if (typeof x === 'number' && typeof y === 'number' && x > 0 && y > 0) m[key] = round(x / y, 2);
    }
    if (Object.keys(m).length > 0) out[name] = m;
  };
  // what durability costs on our broker, and ours against each durable peer and the better one
  add('normal/off', 'normal', 'off');
  add('full/off', 'full', 'off');
  for (const p of PEERS) add(`normal/${p}`, 'normal', p);
  add('normal/baseline', 'normal', 'baseline');
  const [headline, higher] = Object.entries(s.ratios)[0] ?? [];
  if (headline !== undefined) {
    const value = (p: DurableVariant): number => results[p]?.[headline] as number;
    const best = PEERS.filter((p) => typeof results[p]?.[headline] === 'number').sort((a, b) => (higher ? value(b) - value(a) : value(a) - value(b)))[0];
    add('normal/best-peer', 'normal', best);
  }
  return out;
}

/** Runs the scenarios, each variant a fresh process; `skip` names variants that cannot run here (e.g. mosquitto not installed). */
export async function runDurable(scenarios: DurableScenario[], o: DurableOptions, skip: Partial<Record<DurableVariant, string>>, emit: (l: DurableLine) => void): Promise<DurableLine[]> {
  const lines: DurableLine[] = [];
  let k = 0;
  for (const s of scenarios) {
    const results: Record<string, Record<string, unknown>> = {};
    const withBaseline = o.baselineDir !== undefined && s.throughput === true;
    const variants = [...s.variants, ...(withBaseline ? ['baseline' as const] : [])].filter((v) => skip[v] === undefined);
    for (const v of s.variants) if (skip[v] !== undefined) results[v] = { skipped: skip[v] };
    // rotate the order so that no variant always runs first
    const order = variants.map((_, i) => variants[(i + k) % variants.length]!);
    k++;
    if (order.length === 0) {
      results['normal'] = await s.run(undefined, o, 'normal').catch((err: unknown) => ({ error: (err as Error).message }));
    }
    for (const v of order) {
      let broker: BrokerProcess | undefined;
      try {
        if (!s.startsBrokers) broker = await startDurable(v, o);
        results[v] = await s.run(broker, o, v);
      } catch (err) {
        results[v] = { error: (err as Error).message };
      } finally {
        await broker?.stop();
      }
    }
    const line: DurableLine = { bench: 'durable', group: s.group, id: s.id, params: s.params, results, ratios: durableRatios(s, results) };
    lines.push(line);
    emit(line);
  }
  return lines;
}
