/**
 * The load generator: broker-independent scenarios over raw MQTT 3.1.1 sockets (see mqtt-raw.ts).
 * Throughput runs are closed-loop: publishers keep at most a window of messages not yet delivered to
 * every subscriber, so a broker is measured at the rate it sustains, not at the size of its buffers.
 */
import type { QoS } from 'mqtt-packet';
import type { BrokerProcess } from './brokers.js';
import { openClients, publishBatch, type RawClient } from './mqtt-raw.js';
import { Meter, sampleProcess, sleep, type MeterReading } from './proc.js';
import { LatencyRecorder, cdf, percentiles, round, type Percentiles } from './stats.js';

const CONNECT_CONCURRENCY = 64;
/** Bytes that may be on their way to subscribers at once (window = this / (payload × subscribers)). */
const WINDOW_BYTES = 8 * 1024 * 1024;
/** Never more than the brokers' default per-session queue (mosquitto and ours: 1000 messages). */
const WINDOW_MAX = 1000;
const DRAIN_MS = 3000;

function closeAll(clients: RawClient[]): void {
  for (const c of clients) c?.close();
}

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!cond()) {
    if (performance.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

export interface ThroughputSpec {
  publishers: number;
  subscribers: number;
  qos: QoS;
  payload: number;
  warmupMs: number;
  measureMs: number;
}

export interface ThroughputResult extends Omit<MeterReading, 'seconds'> {
  /** Messages delivered to subscribers per second (all subscribers together). */
  deliveredPerSec: number;
  publishedPerSec: number;
  /** Deliveries missing once publishing stopped and the broker had time to drain. */
  missing: number;
  window: number;
  /** Custom traffic only: the publishers ran out of packets before the end (the figure is then a floor). */
  exhausted?: boolean;
}

/**
 * What a throughput or latency run sends and who takes part. Without one, a run sends copies of a
 * fixed payload on `bench/TAG/…` from clients named after TAG; the protected runs (bench/protected.ts)
 * send pre-sealed envelopes from enrolled identities.
 */
export interface Traffic {
  publisherIds: string[];
  subscriberIds: string[];
  filter: string;
  /** Per publisher: the length of each of its packets, and where the packet id sits in the first (QoS > 0). */
  packetLength: number[];
  idOffset: number[];
  /**
   * Publisher i's next `count` PUBLISH packets, back to back; the caller stamps fresh packet ids
   * into them. Undefined when there is nothing more to send.
   */
  next(i: number, count: number, now: number): Buffer | undefined;
  /** Send time (performance.now()) of a delivered payload `buf[start, end)`. */
  sentAt(buf: Buffer, start: number, end: number): number;
  /** Sees every delivery after it was counted (e.g. to keep a sample to open). */
  onDelivery?(subscriber: number, buf: Buffer, start: number, end: number): void;
  /** A buffer `next` returned was written out in full: it may be reused. */
  written?(buf: Buffer): void;
}

/** The default traffic: the same PUBLISH again and again, the send time stamped in the payload when asked. */
function templateTraffic(tag: string, P: number, M: number, qos: QoS, payload: number, batch: number, stamp: boolean): Traffic {
  const templates = Array.from({ length: P }, (_, i) => publishBatch(`bench/${tag}/p${i}`, stamp ? Math.max(8, payload) : payload, qos, batch));
  // Copies written out are reused: a fresh 100 KiB+ buffer per batch kept the generator's GC busy.
  const spare: Buffer[][] = templates.map(() => []);
  const owner = new WeakMap<Buffer, number>();
  return {
    publisherIds: ids(tag, 'p', P),
    subscriberIds: ids(tag, 's', M),
    filter: `bench/${tag}/#`,
    // topics differ in length from publisher to publisher (p9, p10), so do their packets
    packetLength: templates.map((t) => t.packetLength),
    idOffset: templates.map((t) => t.idOffset),
    next(i, count, now) {
      const t = templates[i]!;
      if (qos === 0 && !stamp && count === t.count) return t.bytes;
      // packet ids or time stamps differ per packet: write them into a copy of the template
      const size = count * t.packetLength;
      let buf = spare[i]!.pop();
      if (buf === undefined || buf.length !== size) {
        buf = Buffer.allocUnsafe(size);
        owner.set(buf, i);
      }
      t.bytes.copy(buf, 0, 0, size);
      if (stamp) for (let j = 0; j < count; j++) buf.writeDoubleLE(now, t.payloadOffset + j * t.packetLength);
      return buf;
    },
    sentAt: (buf, start) => buf.readDoubleLE(start),
    written(buf) {
      const i = owner.get(buf);
      if (i !== undefined && spare[i]!.length < 64) spare[i]!.push(buf);
    },
  };
}

/** Writes fresh packet ids (1…65535, wrapping) into `count` packets of publisher i; returns the next id. */
function stampIds(buf: Buffer, count: number, t: Traffic, i: number, first: number): number {
  const offset = t.idOffset[i]!;
  const length = t.packetLength[i]!;
  let id = first;
  for (let j = 0; j < count; j++) {
    buf.writeUInt16BE(id, offset + j * length);
    id = id === 65535 ? 1 : id + 1;
  }
  return id;
}

/** P publishers → M subscribers, closed loop; fan-in is M = 1, fan-out P = 1. */
export async function runThroughput(broker: BrokerProcess, tag: string, spec: ThroughputSpec, custom?: Traffic): Promise<ThroughputResult> {
  const { publishers: P, subscribers: M, qos, payload } = spec;
  const window = Math.max(16, Math.min(WINDOW_MAX, Math.floor(WINDOW_BYTES / (payload * M))));
  const batchSize = Math.max(1, Math.min(32, Math.floor(window / (4 * P))));
  const traffic = custom ?? templateTraffic(tag, P, M, qos, payload, batchSize, false);
  const onDelivery = traffic.onDelivery;
  const written = traffic.written?.bind(traffic);
  let delivered = 0;
  /** Per subscriber: the window follows the slowest one, so no broker queue has to overflow. */
  const perSub = new Float64Array(M);
  let sent = 0;
  let writtenOff = 0;
  let running = false;
  /** 1: socket buffer full (until 'drain'); 2: nothing more to send. */
  const blocked = new Uint8Array(P);
  const unacked = new Int32Array(P);
  let rr = 0;

  const slowest = (): number => {
    let min = Infinity;
    for (let j = 0; j < M; j++) if (perSub[j]! < min) min = perSub[j]!;
    return min;
  };
  /**
   * Fills the window: a batch per publisher per pass, round robin, until the window is full or no
   * publisher can send. (One pass per call, as before `ced0cc4`, let the number of batches in flight
   * shrink whenever a broker's writes merged two batches into one read of a subscriber: at 1 → 1
   * QoS 0 64 B our broker then idled a third of the time.)
   */
  const pump = (): void => {
    if (!running) return;
    const lag = sent - writtenOff - slowest();
    let queued = 0;
    fill: for (let more = true; more; ) {
      more = false;
      for (let pass = 0; pass < P; pass++) {
        const i = (rr + pass) % P;
        if (blocked[i] || unacked[i]! + batchSize > 60_000) continue;
        if (lag + queued + batchSize > window) break fill;
        const buf = traffic.next(i, batchSize, 0);
        if (buf === undefined) {
          blocked[i] = 2;
          continue;
        }
        queued += batchSize;
        if (qos > 0) {
          nextId[i] = stampIds(buf, batchSize, traffic, i, nextId[i]!);
          unacked[i] = unacked[i]! + batchSize;
        }
        sent += batchSize;
        if (!pubs[i]!.write(buf, written)) blocked[i] = 1;
        more = true;
      }
    }
    rr = (rr + 1) % P;
  };

  const subs = await openClients(broker.port, traffic.subscriberIds, CONNECT_CONCURRENCY, (j) => ({
    publish: (buf, start, end) => {
      delivered++;
      perSub[j]++;
      onDelivery?.(j, buf, start, end);
    },
    chunk: pump,
  }));
  await Promise.all(subs.map((s) => s.subscribe(traffic.filter, qos)));
  const pubs = await openClients(broker.port, traffic.publisherIds, CONNECT_CONCURRENCY, (i) => ({
    pubacks: (n) => {
      unacked[i] = unacked[i]! - n;
      pump();
    },
  }));
  const nextId = new Int32Array(P).fill(1);
  pubs.forEach((p, i) =>
    p.socket.on('drain', () => {
      if (blocked[i] === 1) blocked[i] = 0;
      pump();
    }),
  );

  // a broker that drops QoS 0 messages would stall the window: write off what is not coming
  let lastDelivered = -1;
  let stalledTicks = 0;
  const watchdog = setInterval(() => {
    if (delivered === lastDelivered) {
      if (qos === 0 && ++stalledTicks >= 10) {
        writtenOff = sent - slowest();
        stalledTicks = 0;
      }
    } else stalledTicks = 0;
    lastDelivered = delivered;
    pump();
  }, 100);

  try {
    running = true;
    pump();
    await sleep(spec.warmupMs);
    const d0 = delivered;
    const s0 = sent;
    const meter = new Meter(broker.pid);
    await sleep(spec.measureMs);
    const { seconds, ...reading } = meter.read();
    const d1 = delivered;
    const s1 = sent;
    const exhausted = blocked.includes(2);
    running = false;
    await until(() => delivered >= sent * M, DRAIN_MS);
    return {
      deliveredPerSec: Math.round((d1 - d0) / seconds),
      publishedPerSec: Math.round((s1 - s0) / seconds),
      ...reading,
      missing: sent * M - delivered,
      window,
      ...(custom ? { exhausted } : {}),
    };
  } finally {
    running = false;
    clearInterval(watchdog);
    closeAll(pubs);
    closeAll(subs);
    await sleep(300);
  }
}

function ids(tag: string, role: string, n: number): string[] {
  return Array.from({ length: n }, (_, i) => `${tag}-${role}${i}`);
}

export interface LatencySpec {
  subscribers: number;
  qos: QoS;
  payload: number;
  /** Messages per second from the one publisher. */
  rate: number;
  warmupMs: number;
  measureMs: number;
}

export interface LatencyResult extends Percentiles {
  /** Messages the publisher actually sent per second while measuring (below `rate`: the load generator was starved). */
  sentPerSec: number;
  samples: number;
  delivered: number;
  expected: number;
  brokerCpuPct: number;
  /** Of brokerCpuPct, what the broker's child processes used (the trusted component, `process` backend). */
  brokerChildCpuPct: number;
  loadgenCpuPct: number;
  otherCpuPct: number;
  stealCpuPct: number;
  cdf: [number, number][];
}

/**
 * Fixed-rate latency: one publisher sends `rate` msg/s (the send time stamped in the payload, or
 * known to custom traffic) to M subscribers; every delivery's latency is recorded after the warm-up.
 */
export async function runLatency(broker: BrokerProcess, tag: string, spec: LatencySpec, custom?: Traffic): Promise<LatencyResult> {
  const M = spec.subscribers;
  const totalMs = spec.warmupMs + spec.measureMs;
  const maxBatch = Math.max(1, Math.ceil(spec.rate / 100));
  const traffic = custom ?? templateTraffic(tag, 1, M, spec.qos, spec.payload, maxBatch, true);
  const { sentAt, onDelivery } = traffic;
  const rec = new LatencyRecorder(Math.ceil(((spec.rate * spec.measureMs) / 1000) * M) + 1024);
  let measuring = false;
  /** Only messages sent from here on are measured (Infinity until the warm-up is over). */
  let measureFrom = Infinity;
  let delivered = 0;
  const subs = await openClients(broker.port, traffic.subscriberIds, CONNECT_CONCURRENCY, (j) => ({
    publish: (buf, start, end) => {
      const at = sentAt(buf, start, end);
      if (at < measureFrom) return;
      delivered++;
      rec.add(performance.now() - at);
      onDelivery?.(j, buf, start, end);
    },
  }));
  await Promise.all(subs.map((s) => s.subscribe(traffic.filter, spec.qos)));
  const [pub] = await openClients(broker.port, traffic.publisherIds.slice(0, 1), 1);
  let sent = 0;
  let measuredSent = 0;
  let nextId = 1;
  const t0 = performance.now();
  let meter: Meter | undefined;
  try {
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        const elapsed = now - t0;
        if (elapsed >= totalMs) {
          clearInterval(tick);
          resolve();
          return;
        }
        if (!measuring && elapsed >= spec.warmupMs) {
          measuring = true;
          measureFrom = now;
          meter = new Meter(broker.pid);
        }
        const due = Math.min(maxBatch, Math.floor((elapsed / 1000) * spec.rate) - sent);
        if (due <= 0) return;
        const buf = traffic.next(0, due, now);
        if (buf === undefined) return;
        if (spec.qos > 0) nextId = stampIds(buf, due, traffic, 0, nextId);
        sent += due;
        if (measuring) measuredSent += due;
        pub!.write(buf);
      }, 1);
    });
    const m = meter!.read();
    const expected = measuredSent * M;
    await until(() => delivered >= expected, DRAIN_MS);
    measureFrom = Infinity;
    const sorted = rec.sorted();
    return {
      ...percentiles(sorted),
      sentPerSec: Math.round(measuredSent / m.seconds),
      samples: sorted.length,
      delivered,
      expected,
      brokerCpuPct: m.brokerCpuPct,
      brokerChildCpuPct: m.brokerChildCpuPct,
      loadgenCpuPct: m.loadgenCpuPct,
      otherCpuPct: m.otherCpuPct,
      stealCpuPct: m.stealCpuPct,
      cdf: cdf(sorted),
    };
  } finally {
    measureFrom = Infinity;
    pub?.close();
    closeAll(subs);
    await sleep(300);
  }
}

export interface ConnScaleResult {
  connections: number;
  connectPerSec: number;
  brokerRssMiB: number;
  rssPerConnKiB: number;
  brokerCpuPct: number;
}

/** N idle connections (keep alive 60 s): connect rate, and broker RSS growth per connection. */
export async function runConnScale(broker: BrokerProcess, tag: string, n: number, concurrency: number): Promise<ConnScaleResult> {
  const before = sampleProcess(broker.pid);
  const meter = new Meter(broker.pid);
  const t0 = performance.now();
  let clients: RawClient[] = [];
  try {
    clients = await openClients(broker.port, ids(tag, 'c', n), concurrency);
    const seconds = (performance.now() - t0) / 1000;
    const m = meter.read();
    await sleep(1000);
    const after = sampleProcess(broker.pid);
    return {
      connections: n,
      connectPerSec: Math.round(n / seconds),
      brokerRssMiB: round(after.rssBytes / 1048576),
      rssPerConnKiB: round((after.rssBytes - before.rssBytes) / 1024 / n, 2),
      brokerCpuPct: m.brokerCpuPct,
    };
  } finally {
    for (const c of clients) c?.socket.destroy();
    await sleep(1000);
  }
}
