/**
 * The MedTech workload of the paper: single-lead ECGs of many patients streamed to one edge broker,
 * clinicians subscribing. The signal is synthetic (no data set): a sum of Gaussian P, Q, R, S and T
 * waves per beat, heart-rate variability (respiratory and Mayer-wave modulation plus jitter),
 * baseline wander and measurement noise, sampled at about 321 Hz and quantised to 8 bits.
 *
 * Each patient publishes a batch of samples twice a second: 12 bytes of header (send time as a
 * float64 for end-to-end latency, batch number) + ~160 samples = ~345 B/s, under the paper's
 * ~350 B/s per publisher. Batch k of patient p always holds the same samples (`ecgBatch`), so a path
 * may seal a run's batches before it starts. How a batch is published is pluggable (`EcgPath`): the
 * plain path here writes MQTT over raw sockets; the protected paths (bench/protected-ecg.ts) plug in
 * the same way.
 */
import type { QoS } from 'mqtt-packet';
import type { BrokerProcess } from './brokers.js';
import { encodePublish, openClients, type RawClient } from './mqtt-raw.js';
import { Meter, sleep } from './proc.js';
import { LatencyRecorder, percentiles } from './stats.js';

export const SAMPLE_RATE_HZ = 321;
export const BATCHES_PER_SECOND = 2;
/** send time (float64 LE) + sequence number (uint32 LE) */
export const HEADER_BYTES = 12;
/** Full-scale of the 8-bit samples, millivolts. */
const FULL_SCALE_MV = 2;

/** Deterministic PRNG (mulberry32) so every run replays the same signals. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function gaussian(r: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

/** Wave: amplitude (mV), offset from the R peak (s, scaled by √RR for T), width (s). */
const WAVES: readonly { a: number; at: number; w: number; scaled: boolean }[] = [
  { a: 0.15, at: -0.2, w: 0.025, scaled: false }, // P
  { a: -0.12, at: -0.03, w: 0.01, scaled: false }, // Q
  { a: 1.2, at: 0, w: 0.011, scaled: false }, // R
  { a: -0.25, at: 0.03, w: 0.012, scaled: false }, // S
  { a: 0.3, at: 0.28, w: 0.05, scaled: true }, // T (QT shortens with RR, Bazett-like)
];

/**
 * `seconds` of one patient's ECG at SAMPLE_RATE_HZ, as int8 samples (FULL_SCALE_MV = 127).
 * Heart rate 55–95 bpm by seed; RR intervals vary by respiration (0.25 Hz), Mayer waves (0.1 Hz)
 * and ±2 % jitter.
 */
export function synthesizeEcg(seconds: number, seed: number): Int8Array {
  const r = rng(seed);
  const n = Math.round(seconds * SAMPLE_RATE_HZ);
  const out = new Int8Array(n);
  const meanRr = 60 / (55 + 40 * r());
  // beat times (R peaks), one beat before and after the window so edge waves are whole
  const beats: { t: number; rr: number }[] = [];
  let t = -meanRr;
  while (t < seconds + 2 * meanRr) {
    const rr = meanRr * (1 + 0.04 * Math.sin(2 * Math.PI * 0.25 * t) + 0.03 * Math.sin(2 * Math.PI * 0.1 * t) + 0.02 * gaussian(r));
    beats.push({ t, rr });
    t += rr;
  }
  const wanderPhase = 2 * Math.PI * r();
  let b = 0;
  for (let i = 0; i < n; i++) {
    const ts = i / SAMPLE_RATE_HZ;
    while (b + 1 < beats.length && beats[b + 1]!.t - 0.5 < ts) b++;
    let v = 0.06 * Math.sin(2 * Math.PI * 0.22 * ts + wanderPhase) + 0.015 * gaussian(r);
    for (let k = Math.max(0, b - 1); k <= Math.min(beats.length - 1, b + 1); k++) {
      const beat = beats[k]!;
      for (const w of WAVES) {
        const centre = beat.t + (w.scaled ? w.at * Math.sqrt(beat.rr) : w.at);
        const d = (ts - centre) / w.w;
        if (d > -6 && d < 6) v += w.a * Math.exp(-0.5 * d * d);
      }
    }
    out[i] = Math.max(-127, Math.min(127, Math.round((v / FULL_SCALE_MV) * 127)));
  }
  return out;
}

/** Publishes one sample batch of one patient (a patient index from 0): `ecgBatch(patient, k, now)`. */
export type PublishSampleBatch = (patient: number, payload: Buffer) => void;

/** How the workload reaches the broker: plain MQTT here, protected in bench/protected-ecg.ts. */
export interface EcgPath {
  readonly name: string;
  /**
   * Connects one publisher per patient (topic `ward/ecg/p<patient>`); resolves to the publish
   * function. No patient sends more than `batches` batches in the run.
   */
  openPatients(port: number, patients: number, tag: string, batches: number): Promise<{ publish: PublishSampleBatch; close(): void }>;
  /** Connects clinicians subscribed to `ward/ecg/#`; `onBatch` gets the send time of each delivered batch. */
  openClinicians(port: number, clinicians: number, tag: string, onBatch: (sentAt: number) => void): Promise<{ close(): void }>;
  /** Counters of the path itself (e.g. deliveries that failed to open), added to the result after the run. */
  stats?(): Record<string, number> | Promise<Record<string, number>>;
}

const topicOf = (tag: string, patient: number): string => `ward/${tag}/ecg/p${patient}`;

/** Plain MQTT 3.1.1 at QoS 1 over raw sockets (no MQTT.js in the measurement). */
export function plainEcgPath(qos: QoS = 1): EcgPath {
  return {
    name: 'plain',
    async openPatients(port, patients, tag) {
      const clients = await openClients(port, Array.from({ length: patients }, (_, i) => `${tag}-patient${i}`), 64);
      const ids = new Uint16Array(patients).fill(1);
      return {
        publish: (patient, payload) => {
          const id = ids[patient]!;
          ids[patient] = id === 65535 ? 1 : id + 1;
          clients[patient]!.write(encodePublish(topicOf(tag, patient), payload, qos, id));
        },
        close: () => clients.forEach((c) => c.close()),
      };
    },
    async openClinicians(port, clinicians, tag, onBatch) {
      const clients: RawClient[] = await openClients(port, Array.from({ length: clinicians }, (_, i) => `${tag}-clinician${i}`), 8, () => ({
        publish: (buf, start) => onBatch(buf.readDoubleLE(start)),
      }));
      await Promise.all(clients.map((c) => c.subscribe(`ward/${tag}/ecg/#`, qos)));
      return { close: () => clients.forEach((c) => c.close()) };
    },
  };
}

export interface EcgSpec {
  patients: number;
  clinicians: number;
  measureMs: number;
  /** Streamed before the measurement starts (default WARM_UP_MS). */
  warmupMs?: number;
}

/**
 * Every patient publishes twice in it before anything is measured: a ward streams for hours, and
 * the first message on a topic can carry one-off work (on a protected topic, forming its recipient
 * group in the trusted component) that a few seconds of measurement would otherwise be made of.
 */
const WARM_UP_MS = 1000;

export interface EcgResult {
  patients: number;
  /** Payload bytes per second per patient (what the paper bounds at ~350 B/s). */
  bytesPerSecPerPatient: number;
  fleetBytesPerSec: number;
  brokerCpuPct: number;
  /** Of brokerCpuPct, what the broker's child processes used (the trusted component, `process` backend). */
  brokerChildCpuPct: number;
  loadgenCpuPct: number;
  otherCpuPct: number;
  stealCpuPct: number;
  brokerRssMiB: number;
  p50: number;
  p99: number;
  delivered: number;
  expected: number;
}

/** Distinct signals synthesised once; patient p replays signal p mod SIGNALS from its own offset. */
const SIGNALS = 50;
const SIGNAL_SECONDS = 60;
let signalCache: Int8Array[] | undefined;

function signals(): Int8Array[] {
  signalCache ??= Array.from({ length: SIGNALS }, (_, i) => synthesizeEcg(SIGNAL_SECONDS, 1000 + i));
  return signalCache;
}

const SAMPLES_PER_BATCH = SAMPLE_RATE_HZ / BATCHES_PER_SECOND;

/**
 * Batch `k` of patient `p`: send time, k, then the samples from the patient's own offset into signal
 * p mod SIGNALS (~160, the fractional rate carried from batch to batch).
 */
export function ecgBatch(p: number, k: number, sentAt: number): Buffer {
  const sig = signals()[p % SIGNALS]!;
  const start = ((p * 7919) % (SIGNAL_SECONDS * SAMPLE_RATE_HZ)) + 0.5;
  const from = Math.floor(start + k * SAMPLES_PER_BATCH);
  const count = Math.floor(start + (k + 1) * SAMPLES_PER_BATCH) - from;
  const payload = Buffer.allocUnsafe(HEADER_BYTES + count);
  payload.writeDoubleLE(sentAt, 0);
  payload.writeUInt32LE(k, 8);
  for (let i = 0; i < count; i++) payload[HEADER_BYTES + i] = sig[(from + i) % sig.length]! & 0xff;
  return payload;
}

/** Streams `patients` ECGs for `measureMs` through `path`; nothing may be lost (delivered = expected). */
export async function runEcg(broker: BrokerProcess, path: EcgPath, tag: string, spec: EcgSpec): Promise<EcgResult> {
  const period = 1000 / BATCHES_PER_SECOND;
  const warmupMs = spec.warmupMs ?? WARM_UP_MS;
  // a patient sends at its slot of each period until the end: at most this many batches
  const batches = Math.floor((warmupMs + spec.measureMs) / period) + 1;
  const rec = new LatencyRecorder(200_000);
  let delivered = 0;
  /** Latency counts the batches sent from here on (set when the warm-up ends). */
  let measureFrom = Infinity;
  const clinicians = await path.openClinicians(broker.port, spec.clinicians, tag, (sentAt) => {
    delivered++;
    if (sentAt >= measureFrom) rec.add(performance.now() - sentAt);
  });
  const patients = await path.openPatients(broker.port, spec.patients, tag, batches);
  const P = spec.patients;
  const sent = new Uint32Array(P);
  const nextAt = new Float64Array(P);
  const t0 = performance.now();
  for (let p = 0; p < P; p++) nextAt[p] = t0 + (period * p) / P; // spread the patients over the period
  let published = 0;
  let bytes = 0;
  let meter: Meter | undefined;
  try {
    await new Promise<void>((resolve) => {
      const tick = setInterval(() => {
        const now = performance.now();
        if (meter === undefined && now - t0 >= warmupMs) {
          meter = new Meter(broker.pid);
          measureFrom = now;
          bytes = 0;
        }
        if (now - t0 >= warmupMs + spec.measureMs) {
          clearInterval(tick);
          resolve();
          return;
        }
        for (let p = 0; p < P; p++) {
          if (nextAt[p]! > now || sent[p]! >= batches) continue;
          nextAt[p] = nextAt[p]! + period;
          const payload = ecgBatch(p, sent[p]!++, now);
          patients.publish(p, payload);
          published++;
          bytes += payload.length;
        }
      }, 5);
    });
    const m = meter!.read();
    // nothing may be lost, warm-up included
    const expected = published * spec.clinicians;
    await (async () => {
      const deadline = performance.now() + 3000;
      while (delivered < expected && performance.now() < deadline) await sleep(20);
    })();
    const sorted = rec.sorted();
    const pct = percentiles(sorted);
    return {
      patients: P,
      bytesPerSecPerPatient: Math.round(bytes / m.seconds / P),
      fleetBytesPerSec: Math.round(bytes / m.seconds),
      brokerCpuPct: m.brokerCpuPct,
      brokerChildCpuPct: m.brokerChildCpuPct,
      loadgenCpuPct: m.loadgenCpuPct,
      otherCpuPct: m.otherCpuPct,
      stealCpuPct: m.stealCpuPct,
      brokerRssMiB: m.brokerRssMiB,
      p50: pct.p50,
      p99: pct.p99,
      delivered,
      expected,
    };
  } finally {
    patients.close();
    clinicians.close();
    await sleep(500);
  }
}
