/** The scenarios of a quick and of a full run, and which metrics their ratios compare. */
import type { QoS } from 'mqtt-packet';
import type { BrokerProcess } from './brokers.js';
import { plainEcgPath, runEcg, type EcgPath } from './ecg.js';
import { runConnScale, runLatency, runThroughput } from './loadgen.js';
import { EnvelopePool, withPool } from './protected.js';
import { presealedEcgPath, protectedEcgPath } from './protected-ecg.js';

export type Group = 'fan-in' | 'fan-out' | 'latency' | 'connscale' | 'ecg';
export const GROUPS: readonly Group[] = ['fan-out', 'fan-in', 'latency', 'connscale', 'ecg'];

export interface Scenario {
  group: Group;
  /** Unique and selectable: `--only fan-out` or `--only fan-out-m8-q1-1024`. */
  id: string;
  params: Record<string, number | string>;
  /** Metrics the ratio ours/peer is given for; `true` = higher is better. */
  ratios: Record<string, boolean>;
  run(broker: BrokerProcess, tag: string): Promise<object>;
}

export interface PlanOptions {
  quick: boolean;
  /** The publish path of the MedTech workload (plain unless a protected one is plugged in). */
  ecgPath?: EcgPath;
  /**
   * `--payloads` / `--qos`: fan-out, fan-in and latency at every combination of these (and of their
   * subscriber counts) instead of the default selection, e.g. fan-out at 1 KiB, which the full run
   * leaves out to stay within its 10 minutes.
   */
  matrix?: { payloads?: number[]; qos?: QoS[] };
}

/** Every combination of the lists, in order. */
function cross<A, B, C>(as: readonly A[], bs: readonly B[], cs: readonly C[]): [A, B, C][] {
  return as.flatMap((a) => bs.flatMap((b) => cs.map((c): [A, B, C] => [a, b, c])));
}

/**
 * --quick's MedTech replay: 0.5 s of warm-up (every patient's first message falls in it) and 1.5 s
 * measured, to stay within its 2 minutes.
 */
const ECG_QUICK = { warmupMs: 500, measureMs: 1500 };
/** The full run's MedTech replay: 4 s measured (8 batches of every patient; 80 000 deliveries at 5 000 patients). */
const ECG_MEASURE_MS = 4000;
/** --quick's throughput and latency measurements (the full run: 2 s). */
const QUICK_MEASURE_MS = 1200;

export function plan(o: PlanOptions): Scenario[] {
  const q = o.quick;
  const warmupMs = 400;
  const measureMs = q ? QUICK_MEASURE_MS : 2000;
  const out: Scenario[] = [];
  const throughputRatios = { deliveredPerSec: true };

  const mx = o.matrix;
  const qosList = mx?.qos ?? ([0, 1] as QoS[]);
  // --quick has its own picks; a full run, or any run given --payloads/--qos, every combination
  const picks = q && mx === undefined;
  const fanOut: [number, QoS, number][] = picks ? [[1, 0, 64], [8, 1, 4096], [128, 0, 4096]] : cross(q ? [1, 128] : [1, 8, 32, 128], qosList, mx?.payloads ?? [64, 4096]);
  for (const [m, qos, payload] of fanOut) {
    out.push({
      group: 'fan-out',
      id: `fan-out-m${m}-q${qos}-${payload}`,
      params: { publishers: 1, subscribers: m, qos, payload },
      ratios: throughputRatios,
      run: (b, tag) => runThroughput(b, tag, { publishers: 1, subscribers: m, qos, payload, warmupMs, measureMs }),
    });
  }

  const P = 16;
  const fanIn: [number, QoS, number][] = picks ? [[P, 1, 1024]] : cross([P], qosList, mx?.payloads ?? [64, 1024, 4096]);
  for (const [, qos, payload] of fanIn) {
    out.push({
      group: 'fan-in',
      id: `fan-in-p${P}-q${qos}-${payload}`,
      params: { publishers: P, subscribers: 1, qos, payload },
      ratios: throughputRatios,
      run: (b, tag) => runThroughput(b, tag, { publishers: P, subscribers: 1, qos, payload, warmupMs, measureMs }),
    });
  }

  // fixed rate: 1 000 msg/s to one subscriber, 8 000 deliveries/s in all when fanned out
  const latency: [number, QoS, number][] =
    mx !== undefined
      ? cross([1, 128], qosList, mx.payloads ?? [64, 4096])
      : q
        ? [[1, 1, 64], [128, 0, 4096]]
        : [[1, 0, 64], [1, 1, 64], [1, 0, 4096], [1, 1, 4096], [128, 0, 4096], [128, 1, 4096]];
  for (const [m, qos, payload] of latency) {
    const rate = Math.min(1000, Math.floor(8000 / m));
    out.push({
      group: 'latency',
      id: `latency-m${m}-q${qos}-${payload}`,
      params: { publishers: 1, subscribers: m, qos, payload, rate },
      ratios: { p50: false, p99: false },
      run: (b, tag) => runLatency(b, tag, { subscribers: m, qos, payload, rate, warmupMs, measureMs }),
    });
  }

  const n = q ? 2000 : 10_000;
  out.push({
    group: 'connscale',
    id: `connscale-${n}`,
    params: { connections: n, concurrency: 100 },
    ratios: { rssPerConnKiB: false, connectPerSec: true },
    run: (b, tag) => runConnScale(b, tag, n, 100),
  });

  const path = o.ecgPath ?? plainEcgPath();
  for (const patients of q ? [50, 500] : [50, 500, 5000]) {
    out.push({
      group: 'ecg',
      id: `ecg-${path.name}-${patients}`,
      params: { path: path.name, patients, clinicians: 2, qos: 1 },
      ratios: { brokerCpuPct: false, p99: false },
      run: (b, tag) => runEcg(b, path, tag, { patients, clinicians: 2, ...(q ? ECG_QUICK : { measureMs: ECG_MEASURE_MS }) }),
    });
  }
  return out;
}

/**
 * One unmeasured run for a broker fresh from start, before its first scenario: V8 needs a few
 * seconds of load to optimise our broker's and aedes' hot paths (mosquitto needs none, and loses
 * nothing by it), and the first scenario of a run used to catch brokers still starting up.
 */
export function warmUpBroker(broker: BrokerProcess, quick: boolean): Promise<unknown> {
  return runThroughput(broker, `warm-up-${broker.name}`, { publishers: 1, subscribers: 1, qos: 1, payload: 1024, warmupMs: 0, measureMs: quick ? 500 : 1500 });
}

/**
 * Our broker in plain mode, and protected with either trusted backend; `baseline`: another build
 * (`--baseline DIR`) protected with the `process` backend, for a same-run before/after.
 */
export type Variant = 'plain' | 'process' | 'inline' | 'baseline';

/**
 * A protected-path scenario: run on our broker only, plain and protected side by side; ratios are
 * variant / plain. The plain figure is a `plain` variant of the same scenario, or (`baseline`) our
 * broker's result in that plain scenario of the same run.
 */
export interface ProtectedScenario {
  group: 'protected';
  id: string;
  params: Record<string, number | string>;
  ratios: Record<string, boolean>;
  variants: Variant[];
  /**
   * Rounds of the variants, interleaved (plain, process, inline; then process, inline, plain...);
   * each variant's figures are those of its median round. Default 1.
   */
  rounds?: number;
  baseline?: string;
  /** `plain` is the scenario's fastest plain round so far, if one ran (e.g. to size the envelope pool). */
  run(broker: BrokerProcess, variant: Variant, tag: string, plain: Record<string, unknown> | undefined): Promise<object>;
  /**
   * An unmeasured run of the same traffic, once per broker before its first measured one: a broker
   * process fresh from start needs a few seconds of load before V8 has compiled its hot paths.
   */
  warmUp?(broker: BrokerProcess, variant: Variant, tag: string): Promise<unknown>;
}

/** Most envelopes one protected throughput run may send (all sealed before it starts; 4 KiB each: ~1.1 GB). */
const POOL_CAP = 250_000;
/** Warm-up: long enough for V8 to finish optimising the broker's hot paths (seen: ~3 s of load). */
const WARM_UP_MS = 3000;
const WARM_UP_BUDGET = 40_000;

/**
 * The protected MedTech rows stream longer before measuring: the first message on each patient's
 * topic forms that topic's recipient group in the trusted component, and 5 000 formations at once
 * left a backlog that took ~3.5 s to clear (measured: the latest delivery of each 250 ms rose to
 * 1.8 s, then fell to tens of ms and stayed there). 1 s, plus 0.6 ms per patient.
 */
function protectedEcgWarmUp(patients: number): number {
  return 1000 + Math.round(0.6 * patients);
}

/**
 * Rounds per variant of the protected fan-out rows unless `--rounds` says otherwise: a round on this
 * shared 2-vCPU machine now and then runs at half speed, so the full run takes the median of three.
 */
export function defaultProtectedRounds(quick: boolean): number {
  return quick ? 1 : 3;
}

export function protectedPlan(o: { quick: boolean; rounds?: number }): ProtectedScenario[] {
  const q = o.quick;
  const warmupMs = 400;
  // 1.5 s per round; the full run has three rounds per variant (4.5 s measured in all)
  const measureMs = q ? QUICK_MEASURE_MS : 1500;
  const payload = 4096;
  const qos: QoS = 1;
  const out: ProtectedScenario[] = [];
  const variants: Variant[] = ['plain', 'process', 'inline'];
  // one pool per scenario, made when it first runs: only one scenario's envelopes (up to ~2.3 GB at
  // 1 -> 1 in three rounds) are in memory at a time, and its sequence numbers (from the clock) follow
  // the last one's; a run that would outgrow it (more --rounds) starts a new one
  let pool: EnvelopePool | undefined;
  let poolScenario = '';
  const poolOf = (scenario: string, broker: BrokerProcess, budget: number): EnvelopePool => {
    if (pool === undefined || scenario !== poolScenario || !pool.fits(broker, budget)) [pool, poolScenario] = [new EnvelopePool(payload), scenario];
    return pool;
  };
  for (const m of q ? [128] : [1, 8, 32, 128]) {
    out.push({
      group: 'protected',
      id: `protected-fan-out-m${m}`,
      params: { path: 'protected', publishers: 1, subscribers: m, qos, payload },
      ratios: { deliveredPerSec: true },
      variants,
      rounds: o.rounds ?? defaultProtectedRounds(q),
      run: (b, v, tag, plain) => {
        const spec = { publishers: 1, subscribers: m, qos, payload, warmupMs, measureMs };
        if (v === 'plain') return runThroughput(b, tag, spec);
        // room for twice the fastest plain rate over warm-up and measurement, plus the window: a
        // protected round may outrun a slow plain one (1.6× the last plain round ran out at 1 → 32)
        const plainRate = typeof plain?.['publishedPerSec'] === 'number' ? plain['publishedPerSec'] : POOL_CAP;
        const budget = Math.round(Math.min(POOL_CAP, Math.max(1000, (plainRate * 2 * (warmupMs + measureMs)) / 1000 + 1000)));
        return withPool(b, poolOf(`fan-out-${m}`, b, budget), m, budget, (traffic) => runThroughput(b, tag, spec, traffic));
      },
      // --quick keeps its 2-minute budget and measures cold brokers
      warmUp: q
        ? undefined
        : (b, v, tag) => {
            const spec = { publishers: 1, subscribers: m, qos, payload, warmupMs: 0, measureMs: WARM_UP_MS };
            if (v === 'plain') return runThroughput(b, tag, spec);
            return withPool(b, poolOf(`fan-out-${m}`, b, WARM_UP_BUDGET), m, WARM_UP_BUDGET, (traffic) => runThroughput(b, tag, spec, traffic));
          },
    });
  }
  for (const m of q ? [] : [1, 128]) {
    const rate = Math.min(1000, Math.floor(8000 / m));
    const ms = 2000;
    out.push({
      group: 'protected',
      id: `protected-latency-m${m}`,
      params: { path: 'protected', publishers: 1, subscribers: m, qos, payload, rate },
      ratios: { p50: false, p99: false },
      variants,
      run: (b, v, tag) => {
        const spec = { subscribers: m, qos, payload, rate, warmupMs, measureMs: ms };
        if (v === 'plain') return runLatency(b, tag, spec);
        const budget = Math.ceil((rate * (warmupMs + ms)) / 1000) + 100;
        return withPool(b, poolOf(`latency-${m}`, b, budget), m, budget, (traffic) => runLatency(b, tag, spec, traffic));
      },
    });
  }
  // the ward's own devices seal and open every batch with the SDK up to 500 patients; 5 000 patients'
  // 30 000 seals and opens a second outrun the load generator's one thread, so that fleet's batches
  // are sealed before the run (bench/protected-ecg.ts)
  for (const patients of q ? [50] : [50, 500, 5000]) {
    const sealing = patients > 500 ? 'before the run' : 'live';
    out.push({
      group: 'protected',
      id: `protected-ecg-${patients}`,
      params: { path: 'protected', patients, clinicians: 2, qos: 1, sealing },
      ratios: { brokerCpuPct: false, p99: false },
      variants: ['process'],
      baseline: `ecg-plain-${patients}`,
      run: async (b, _v, tag) => {
        const path = sealing === 'live' ? protectedEcgPath(b) : presealedEcgPath(b);
        const r = await runEcg(b, path, tag, { patients, clinicians: 2, ...(q ? ECG_QUICK : { measureMs: ECG_MEASURE_MS, warmupMs: protectedEcgWarmUp(patients) }) });
        return { ...r, ...(await path.stats?.()) };
      },
    });
  }
  return out;
}
