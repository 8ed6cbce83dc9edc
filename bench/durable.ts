/**
 * Durable state, measured apart from `npm run bench`: QoS 1 fan-in 16 → 1 persistent subscriber
 * (online; offline and then drained), 64 B, our broker with persistence at each sync level and off;
 * and the start of a broker whose store holds N queued messages.
 *
 *   node dist/bench/durable.js [--seconds 3] [--offline 100000] [--queued 1000000] [--sync normal,full,off,mosquitto] [--clean] [--cpu-prof DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqttPacket from 'mqtt-packet';
import { encodeConnect, encodePublish, RawClient } from './mqtt-raw.js';
import { freePort, sleep, waitForPort } from './proc.js';
import { LatencyRecorder, percentiles } from './stats.js';
import { openSqliteStore, STATE_FILE } from '../src/persistence/sqlite-store.js';
import type { Change } from '../src/persistence/store.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const PUBLISHERS = 16;
const PAYLOAD = 64;
/** Unacknowledged PUBLISHes per publisher. */
const WINDOW = 64;
/** Messages sent and not yet delivered, over all publishers: the load follows the subscriber, so no queue grows without bound. */
const DELIVERY_WINDOW = 1024;
const BATCH = 16;
const SUBSCRIBER = 'durable-subscriber';

/** Our broker's persistence settings, or mosquitto with persistence saved on every change. */
type Level = 'normal' | 'full' | 'off' | 'mosquitto';

function flag(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] ?? fallback : fallback;
}

interface Broker {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

async function startBroker(dataDir: string, level: Level): Promise<Broker> {
  const port = await freePort();
  if (level === 'mosquitto') return startMosquitto(dataDir, port);
  const config = join(dataDir, 'bench-config.json');
  writeFileSync(config, JSON.stringify({ tee: null, logLevel: 'warn', persistence: level === 'off' ? false : { sync: level }, limits: { maxQueuedMessages: 0, maxQueuedBytes: 0 } }));
  const profile = flag('cpu-prof', '');
  const nodeFlags = profile ? ['--cpu-prof', '--cpu-prof-dir', profile] : [];
  const child = spawn(process.execPath, ['--initial-old-space-size=64', ...nodeFlags, MAIN, 'broker', '--port', String(port), '--host', '127.0.0.1', '--data', dataDir, '--config', config], { stdio: ['ignore', 'ignore', 'inherit'] });
  // a store with a million queued messages takes seconds to load before the port opens
  return listening(child, port, 120_000);
}

/** `child` once it accepts connections on `port`; `stop` ends it with SIGTERM. */
async function listening(child: ChildProcess, port: number, timeoutMs: number): Promise<Broker> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  await waitForPort(port, timeoutMs);
  return {
    port,
    child,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

/** `--clean`: the online scenario with a clean-session subscriber, to see what persistence costs where nothing is written. */
const CLEAN = process.argv.includes('--clean');

/** mosquitto as issue 27 measured it: persistence on, saved at most every second and on every change. */
async function startMosquitto(dataDir: string, port: number): Promise<Broker> {
  const conf = join(dataDir, 'mosquitto.conf');
  writeFileSync(
    conf,
    [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dataDir}/`, 'autosave_interval 1', 'autosave_on_changes true', 'max_queued_messages 0', 'log_dest none', ''].join('\n'),
  );
  return listening(spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'inherit'] }), port, 10_000);
}

function subscriberConnect(): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: CLEAN, clientId: SUBSCRIBER, keepalive: 60 });
}

/** 16 QoS 1 publishers, each with WINDOW messages unacknowledged; every payload carries its send time. */
class Publishers {
  acked = 0;
  sent = 0;
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
      }
      this.inflight[i] += n;
      this.left -= n;
      this.sent += n;
      this.clients[i]!.write(buf);
    }
  }
}

async function subscribe(port: number, onMessage: (sentAt: number) => void, onChunk?: () => void): Promise<RawClient> {
  const sub = new RawClient(port, subscriberConnect(), { publish: (buf, start) => onMessage(buf.readDoubleLE(start)), chunk: onChunk });
  await sub.ready;
  await sub.subscribe('durable/#', 1);
  return sub;
}

async function online(level: Level, seconds: number): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-durable-bench-'));
  const broker = await startBroker(dataDir, level);
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
  await sleep(1000);
  measuring = true;
  const from = delivered;
  const t0 = performance.now();
  await sleep(seconds * 1000);
  const rate = ((delivered - from) * 1000) / (performance.now() - t0);
  measuring = false;
  const disk = stateSize(dataDir);
  pubs.stop();
  sub.close();
  await broker.stop();
  rmSync(dataDir, { recursive: true, force: true });
  const p = percentiles(latency.sorted());
  return `online${CLEAN ? ' clean' : ''}  ${level.padEnd(6)} ${Math.round(rate).toLocaleString('en')} msg/s delivered, latency p50 ${p.p50} ms p99 ${p.p99} ms, state files ${disk}`;
}

/** The state database and its WAL, MiB, as they are while the broker runs. */
function stateSize(dataDir: string): string {
  const mib = (suffix: string): string => {
    const f = join(dataDir, STATE_FILE + suffix);
    return existsSync(f) ? (statSync(f).size / 2 ** 20).toFixed(1) : '-';
  };
  return `db ${mib('')} MiB + WAL ${mib('-wal')} MiB`;
}

async function offlineThenDrained(level: Level, count: number): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-durable-bench-'));
  const broker = await startBroker(dataDir, level);
  (await subscribe(broker.port, () => {})).close();
  await sleep(300);
  const pubs = await Publishers.open(broker.port, count);
  let t0 = performance.now();
  pubs.start();
  while (pubs.acked < count) await sleep(5);
  const ingest = (count * 1000) / (performance.now() - t0);
  pubs.stop();
  let delivered = 0;
  t0 = performance.now();
  const sub = await subscribe(broker.port, () => delivered++);
  while (delivered < count) await sleep(5);
  const drain = (count * 1000) / (performance.now() - t0);
  sub.close();
  await broker.stop();
  rmSync(dataDir, { recursive: true, force: true });
  return `offline ${level.padEnd(6)} ${count.toLocaleString('en')} messages acknowledged at ${Math.round(ingest).toLocaleString('en')} msg/s, drained at ${Math.round(drain).toLocaleString('en')} msg/s`;
}

/** Writes `count` queued messages for one offline session straight into a store, then times the broker's start on it. */
async function startup(count: number): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-durable-bench-'));
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
  const t0 = performance.now();
  const broker = await startBroker(dataDir, 'normal');
  const ms = performance.now() - t0;
  await broker.stop();
  rmSync(dataDir, { recursive: true, force: true });
  return `startup with ${count.toLocaleString('en')} queued messages: ${Math.round(ms)} ms to listening`;
}

const seconds = Number(flag('seconds', '3'));
const offlineCount = Number(flag('offline', '100000'));
const queued = Number(flag('queued', '1000000'));
const levels = flag('sync', 'off,normal,full,mosquitto').split(',') as Level[];
for (const level of levels) console.log(await online(level, seconds));
if (offlineCount > 0 && !CLEAN) for (const level of levels) console.log(await offlineThenDrained(level, offlineCount));
if (queued > 0) {
  console.log(await startup(0));
  console.log(await startup(queued));
}
