/**
 * `npm run bench [-- --quick] [--only NAME[,NAME…]] [--brokers mqt-tz,mosquitto,aedes] [--baseline DIR] [--candidate DIR] [--repeat N] [--tee-scheduling batch]
 *                [--payloads 64,1024,4096] [--qos 0,1] [--rounds N] [--write | --no-write] [--profile DIR]`
 *
 * Runs every selected scenario against our broker and the peers (each its own process on a free
 * port of 127.0.0.1, one after another, so the same machine state is shared), prints one JSON line
 * per scenario with ratios ours/peer, runs the trusted-component benchmark (bench/tee.ts) when it
 * exists, measures what scraping /metrics once a second costs (bench/metrics-scrape.ts) and durable
 * state (bench/durable.ts), and on a full run (or with --write) writes docs/bench/ and the table in
 * docs/benchmarks.md. Quick: under 2 minutes; full: under 12. A hard time limit stops the run in any case.
 */
import { existsSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BROKER_NAMES, mosquittoVersion, startBrokerProcess, type BrokerName, type BrokerProcess } from './brokers.js';
import { durablePlan, runDurable, type DurableVariant } from './durable.js';
import { INSTRUCTION_SCENARIOS, runInstructions, valgrindMissing } from './instructions.js';
import { GROUPS, defaultProtectedRounds, plan, protectedPlan, warmUpBroker, type ProtectedScenario, type Variant } from './plan.js';
import { PROTECTED_FILTER } from './protected.js';
import { runScrapeCost } from './metrics-scrape.js';
import { writeReport, type Line, type ProtectedLine, type ScenarioLine } from './report.js';
import { round } from './stats.js';
import type { QoS } from 'mqtt-packet';

/** Largest payload --payloads takes (the load generator keeps up to 8 MiB in flight). */
const MAX_PAYLOAD = 1024 * 1024;

interface Args {
  quick: boolean;
  only: string[];
  brokers: BrokerName[];
  write: boolean;
  profileDir: string | undefined;
  matrix: { payloads?: number[]; qos?: QoS[] } | undefined;
  /** Rounds per variant of the protected fan-out rows (default: 3, `--quick` 1). */
  rounds: number | undefined;
  /** A built checkout of our broker at another commit, compared as the peer `baseline`. */
  baselineDir?: string;
  /** `instructions` only: a built checkout that stands in for this one (two other commits compared). */
  candidateDir?: string;
  /** The protected brokers' `--tee-scheduling` (docs/benchmarks.md, "Scheduling the trusted process"). */
  teeScheduling?: 'default' | 'batch';
  /** Rounds of each broker scenario, in rotating order; each broker's median round by msg/s (default 1). */
  repeat: number;
}

/** A bad command line: reported as its message alone, without a stack. */
class UsageError extends Error {}

/** A comma-separated list of integers in [min, max], named in the error when one is not. */
function intList(flag: string, text: string, min: number, max: number): number[] {
  return text.split(',').map((t) => {
    const n = Number(t);
    if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag}: ${JSON.stringify(t)} is not an integer from ${min} to ${max}`);
    return n;
  });
}

function parseArgs(argv: string[]): Args {
  const a: Args = { quick: false, only: [], brokers: [...BROKER_NAMES], write: false, profileDir: undefined, matrix: undefined, rounds: undefined, repeat: 1 };
  let write: boolean | undefined;
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${x} needs a value`);
      return v;
    };
    if (x === '--quick') a.quick = true;
    else if (x === '--only') a.only.push(...value().split(','));
    else if (x === '--brokers') a.brokers = value().split(',') as BrokerName[];
    else if (x === '--baseline') a.baselineDir = value();
    else if (x === '--candidate') a.candidateDir = value();
    else if (x === '--tee-scheduling') {
      const v = value();
      if (v !== 'default' && v !== 'batch') throw new UsageError(`--tee-scheduling: default or batch, not ${v}`);
      a.teeScheduling = v;
    } else if (x === '--repeat') a.repeat = intList(x, value(), 1, 15)[0]!;
    else if (x === '--write') write = true;
    else if (x === '--no-write') write = false;
    else if (x === '--profile') a.profileDir = value();
    else if (x === '--payloads') a.matrix = { ...a.matrix, payloads: intList(x, value(), 1, MAX_PAYLOAD) };
    else if (x === '--qos') a.matrix = { ...a.matrix, qos: intList(x, value(), 0, 1) as QoS[] };
    else if (x === '--rounds') {
      // one number: a list here would be cut to its first item without a word
      const rounds = intList(x, value(), 1, 25);
      if (rounds.length !== 1) throw new UsageError(`--rounds takes one number, not ${rounds.length}`);
      a.rounds = rounds[0];
    }
    else throw new UsageError(`unknown argument ${x} (known: --quick, --only NAME, --brokers LIST, --payloads LIST, --qos LIST, --rounds N, --repeat N, --baseline DIR, --candidate DIR, --tee-scheduling default|batch, --write, --no-write, --profile DIR)`);
  }
  for (const b of a.brokers) if (!BROKER_NAMES.includes(b)) throw new UsageError(`unknown broker ${b} (known: ${BROKER_NAMES.join(', ')})`);
  if (!a.brokers.includes('mqt-tz')) a.brokers.unshift('mqt-tz');
  if (a.baselineDir !== undefined) {
    if (!existsSync(join(a.baselineDir, 'dist/src/cli/main.js'))) throw new UsageError(`--baseline: ${a.baselineDir} holds no built broker (dist/src/cli/main.js; run npm ci there)`);
    a.brokers.push('baseline');
  }
  // a run of another matrix than the full run's does not replace the report unless asked to
  a.write = write ?? (!a.quick && a.only.length === 0 && a.matrix === undefined && a.rounds === undefined && a.repeat === 1 && a.baselineDir === undefined && a.teeScheduling === undefined);
  return a;
}

const selected = (only: string[], id: string, group: string): boolean => only.length === 0 || only.some((o) => o === group || o === id || id.startsWith(o));

/** One JSON line; CDF point lists stay in results.json (they feed the charts). */
function emit(line: Line): void {
  process.stdout.write(`${JSON.stringify(line, (k, v: unknown) => (k === 'cdf' ? undefined : v))}\n`);
}

function ratiosOf(s: { ratios: Record<string, boolean> }, results: Record<string, Record<string, unknown>>): ScenarioLine['ratios'] {
  const ours = results['mqt-tz'];
  const out: ScenarioLine['ratios'] = {};
  for (const [peer, r] of Object.entries(results)) {
    if (peer === 'mqt-tz' || !ours) continue;
    const m: Record<string, number> = {};
    for (const key of Object.keys(s.ratios)) {
      const a = ours[key];
      const b = r[key];
      if (typeof a === 'number' && typeof b === 'number' && b !== 0) m[key] = round(a / b, 2);
    }
    out[`mqt-tz/${peer}`] = m;
  }
  return out;
}

/**
 * A variant's figures over its rounds: those of its median round by msg/s (the lower one of an even
 * count), whole, so that its CPU, steal and msg/s come from the same round; each round's msg/s kept.
 * A median, not a mean: on this machine a round now and then runs at half speed with no steal to
 * show for it (docs/benchmarks.md, "The machine"), and one such round would drag a mean.
 */
function medianRound(runs: Record<string, unknown>[]): Record<string, unknown> {
  if (runs.length === 1) return runs[0]!;
  const rate = (r: Record<string, unknown>): number => (typeof r['deliveredPerSec'] === 'number' ? r['deliveredPerSec'] : 0);
  const sorted = [...runs].sort((a, b) => rate(a) - rate(b));
  return { ...sorted[(sorted.length - 1) >> 1]!, deliveredPerSecEach: runs.map(rate), rounds: runs.length };
}

/** The plain round with the most msg/s so far (sizes a protected round's envelope pool). */
function fastest(runs: Record<string, unknown>[] | undefined): Record<string, unknown> | undefined {
  let best: Record<string, unknown> | undefined;
  for (const r of runs ?? []) if (typeof r['deliveredPerSec'] === 'number' && r['deliveredPerSec'] > ((best?.['deliveredPerSec'] as number | undefined) ?? -1)) best = r;
  return best;
}

/**
 * Protected-path scenarios on our broker only: per scenario, `rounds` rounds of every variant, the
 * order rotating from round to round (plain, process, inline; process, inline, plain; ...), so
 * that plain and protected are measured seconds apart and none always runs first; each variant's
 * figures are those of its median round. Ratios are variant / plain.
 */
async function runProtected(scenarios: ProtectedScenario[], brokers: Record<Exclude<Variant, 'baseline'>, BrokerProcess> & { baseline?: BrokerProcess }, lines: Line[]): Promise<void> {
  const warm = new Set<Variant>();
  const runs = scenarios.map((): Partial<Record<Variant, Record<string, unknown>[]>> => ({}));
  const results = scenarios.map((): Record<string, Record<string, unknown>> => ({}));
  const orders: Variant[][] = [];
  const runOne = async (i: number, v: Variant): Promise<void> => {
    const s = scenarios[i]!;
    let r: Record<string, unknown>;
    try {
      const broker = brokers[v];
      if (broker === undefined) throw new Error(`no broker for the variant ${v}`);
      if (s.warmUp && !warm.has(v)) {
        await s.warmUp(broker, v, `${s.id}-${v}-warm-up`);
        warm.add(v);
      }
      const n = runs[i]![v]?.length ?? 0;
      r = { ...(await s.run(broker, v, `${s.id}-${v}-${n}`, fastest(runs[i]!['plain']))) };
      // CPU (broker + trusted process) per delivery: what the protection costs, whatever else the machine did
      if (typeof r['deliveredPerSec'] === 'number' && typeof r['brokerCpuPct'] === 'number' && r['deliveredPerSec'] > 0) {
        r['cpuUsPerDelivery'] = round((r['brokerCpuPct'] * 1e4) / r['deliveredPerSec'], 1);
      }
      // the trusted process's CPU per message it re-wrapped (one call per published message, whatever the fan-out)
      if ((v === 'process' || v === 'baseline') && typeof r['publishedPerSec'] === 'number' && typeof r['brokerChildCpuPct'] === 'number' && r['publishedPerSec'] > 0 && r['brokerChildCpuPct'] > 0) {
        r['trustedUsPerMessage'] = round((r['brokerChildCpuPct'] * 1e4) / r['publishedPerSec'], 2);
      }
    } catch (err) {
      r = { error: (err as Error).message };
    }
    (runs[i]![v] ??= []).push(r);
  };
  for (let i = 0; i < scenarios.length; i++) {
    const s = scenarios[i]!;
    const variants = brokers.baseline === undefined ? s.variants : [...s.variants, 'baseline' as const];
    orders.push(variants.filter((v) => v !== 'plain'));
    for (let round = 0; round < (s.rounds ?? 1); round++) {
      const n = variants.length;
      for (let k = 0; k < n; k++) await runOne(i, variants[(round + k) % n]!);
    }
  }
  for (let i = 0; i < scenarios.length; i++) {
    for (const [v, list] of Object.entries(runs[i]!)) {
      const ok = list.filter((r) => !('error' in r));
      results[i]![v] = ok.length > 0 ? medianRound(ok) : list[list.length - 1]!;
    }
  }
  for (let i = 0; i < scenarios.length; i++) {
    const s = scenarios[i]!;
    const res = results[i]!;
    let plainFrom: string | undefined;
    if (!res['plain'] && s.baseline) {
      const base = lines.find((l): l is ScenarioLine => l.bench === 'broker' && (l as ScenarioLine).id === s.baseline);
      const ours = base?.results['mqt-tz'];
      if (ours) {
        res['plain'] = ours;
        plainFrom = s.baseline;
      }
    }
    const ratios: ProtectedLine['ratios'] = {};
    for (const v of orders[i]!) {
      const r = ratiosOf(s, { 'mqt-tz': res[v] ?? {}, plain: res['plain'] ?? {} })['mqt-tz/plain'];
      if (r && Object.keys(r).length > 0) ratios[`${v}/plain`] = r;
    }
    if (res['baseline'] !== undefined) {
      const r = ratiosOf(s, { 'mqt-tz': res['process'] ?? {}, plain: res['baseline'] })['mqt-tz/plain'];
      if (r && Object.keys(r).length > 0) ratios['process/baseline'] = r;
    }
    const line: ProtectedLine = { bench: 'protected', group: s.group, id: s.id, params: s.params, results: res, ratios, ...(plainFrom ? { plainFrom } : {}) };
    lines.push(line);
    emit(line);
  }
}

/** Runs bench/tee.ts when it exists, passing its lines through and keeping them for the report. */
async function runTee(quick: boolean, lines: Line[]): Promise<void> {
  const specifier = './tee.js';
  let mod: { runTeeBench?: (o: { quick: boolean }) => Promise<void> };
  try {
    mod = (await import(specifier)) as typeof mod;
  } catch (err) {
    emit({ bench: 'tee', skipped: `bench/tee.ts not available: ${(err as Error).message.split('\n')[0]}` });
    return;
  }
  if (typeof mod.runTeeBench !== 'function') {
    emit({ bench: 'tee', skipped: 'bench/tee.ts exports no runTeeBench' });
    return;
  }
  const write = process.stdout.write.bind(process.stdout);
  let partial = '';
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    partial += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const text = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      try {
        lines.push(JSON.parse(text) as Line);
      } catch {
        // not a JSON line: passed through only
      }
    }
    return (write as (c: string | Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await mod.runTeeBench({ quick });
  } catch (err) {
    emit({ bench: 'tee', error: (err as Error).message });
  } finally {
    process.stdout.write = write;
  }
}

function machineHeader(quick: boolean, brokers: BrokerProcess[], skipped: Record<string, string>): string {
  const cpu = cpus();
  const versions = brokers.map((b) => `${b.name} ${b.version}`).join(', ');
  const skip = Object.entries(skipped).map(([b, why]) => `; ${b} skipped: ${why}`).join('');
  return (
    `Run of ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC (${quick ? 'quick' : 'full'}): ` +
    `${cpu.length} × ${cpu[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}; ` +
    `brokers: ${versions}${skip}.`
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const scenarios = plan({ quick: args.quick, matrix: args.matrix }).filter((s) => selected(args.only, s.id, s.group));
  const protectedScenarios = protectedPlan({ quick: args.quick, rounds: args.rounds }).filter((s) => selected(args.only, s.id, s.group));
  // rounds asked beyond a scenario's usual ones: ~30 s each (three variants, sealing included)
  const extraRounds = protectedScenarios.reduce((n, s) => n + Math.max(0, (s.rounds ?? 1) - defaultProtectedRounds(args.quick)), 0);
  // the scrape-cost rounds (bench/metrics-scrape.ts): ~15 s quick, ~45 s full
  const scrapeMs = selected(args.only, 'metrics-scrape', 'metrics-scrape') ? (args.quick ? 20_000 : 50_000) : 0;
  // durable state: its group runs in the full run (~85 s), not in --quick's 2 minutes unless named;
  // `durable-startup` (~1 min more) only when named
  const named = (id: string, group: string): boolean => args.only.some((o) => o === group || o === id || (group === 'durable' && id.startsWith(o)));
  const durableScenarios = durablePlan(args.quick).filter((s) => (s.group === 'durable-startup' || args.quick ? named(s.id, s.group) : selected(args.only, s.id, s.group)));
  const durableMs = durableScenarios.reduce((ms, s) => ms + (s.group === 'durable-startup' ? 60_000 : s.variants.length > 0 ? 40_000 : 10_000), 0);
  // instructions per delivery under valgrind (bench/instructions.ts): only when named; per build and
  // round ~40 s to start and settle a broker (plain, protected), ~40 s a scenario on a busy host
  const instructionScenarios = INSTRUCTION_SCENARIOS.filter((s) => args.only.some((o) => o === 'instructions' || s.id.startsWith(o)));
  const instructionRounds = args.rounds ?? (args.repeat > 1 ? args.repeat : 3);
  const instructionMs = instructionScenarios.length === 0 ? 0 : instructionRounds * (args.baselineDir === undefined ? 1 : 2) * (80_000 + instructionScenarios.length * 60_000);
  const limitMs = (args.quick ? 150_000 : 660_000) * args.repeat + extraRounds * 30_000 + scrapeMs + durableMs * args.repeat + instructionMs;
  const guard = setTimeout(() => {
    process.stderr.write(`bench: stopped after the ${limitMs / 1000} s limit\n`);
    process.exit(1);
  }, limitMs);
  guard.unref();

  const wantTee = selected(args.only, 'tee', 'tee');
  const wantScrape = selected(args.only, 'metrics-scrape', 'metrics-scrape');
  if (args.only.length > 0 && scenarios.length === 0 && protectedScenarios.length === 0 && durableScenarios.length === 0 && instructionScenarios.length === 0 && !wantTee && !wantScrape) {
    throw new UsageError(`--only ${args.only.join(',')} selects nothing (groups: ${GROUPS.join(', ')}, protected, durable, durable-startup, instructions, tee, metrics-scrape; or a scenario id prefix)`);
  }

  const skipped: Record<string, string> = {};
  const brokers: BrokerProcess[] = [];
  /** Our broker with protected topics, one per trusted backend (not in the peer comparison). */
  const protectedBrokers: BrokerProcess[] = [];
  const lines: Line[] = [];
  try {
    if (scenarios.length > 0 || protectedScenarios.length > 0) {
      for (const name of args.brokers) {
        if (name === 'mosquitto' && !mosquittoVersion()) {
          skipped[name] = 'mosquitto binary not found (Debian: apt-get install mosquitto)';
          continue;
        }
        try {
          brokers.push(await startBrokerProcess(name, { cpuProfileDir: name === 'mqt-tz' ? args.profileDir : undefined, baselineDir: args.baselineDir }));
        } catch (err) {
          skipped[name] = (err as Error).message;
        }
      }
      if (Object.keys(skipped).length > 0) emit({ bench: 'note', skipped });
      if (!brokers.some((b) => b.name === 'mqt-tz')) throw new Error(`our broker did not start: ${skipped['mqt-tz']}`);
    }
    if (scenarios.length > 0) for (const b of brokers) await warmUpBroker(b, args.quick).catch(() => undefined);
    let k = 0;
    for (const s of scenarios) {
      const rounds: Record<string, Record<string, unknown>[]> = {};
      const errors: Record<string, string> = {};
      for (let rep = 0; rep < args.repeat; rep++) {
        // rotate the order so that no broker always runs first (or right after a heavy run)
        const order = brokers.map((_, i) => brokers[(i + k) % brokers.length]!);
        k++;
        for (const b of order) {
          try {
            (rounds[b.name] ??= []).push({ ...(await s.run(b, `${s.id}-${b.name}-${rep}`)) });
          } catch (err) {
            errors[b.name] = (err as Error).message;
          }
        }
      }
      const results: Record<string, Record<string, unknown>> = {};
      for (const b of brokers) results[b.name] = rounds[b.name] !== undefined ? medianRound(rounds[b.name]!) : { error: errors[b.name] ?? 'no round' };
      const line: ScenarioLine = { bench: 'broker', group: s.group, id: s.id, params: s.params, results, ratios: ratiosOf(s, results) };
      if (Object.keys(skipped).length > 0) line.skipped = skipped;
      lines.push(line);
      emit(line);
    }
    if (protectedScenarios.length > 0) {
      const plain = brokers.find((b) => b.name === 'mqt-tz')!;
      const start = (backend: 'process' | 'inline'): Promise<BrokerProcess> =>
        startBrokerProcess('mqt-tz', { cpuProfileDir: args.profileDir, protect: { filter: PROTECTED_FILTER, backend, scheduling: args.teeScheduling } });
      const processBroker = await start('process');
      protectedBrokers.push(processBroker);
      const inlineBroker = await start('inline');
      protectedBrokers.push(inlineBroker);
      let baseline: BrokerProcess | undefined;
      if (args.baselineDir !== undefined) {
        baseline = await startBrokerProcess('baseline', { baselineDir: args.baselineDir, protect: { filter: PROTECTED_FILTER, backend: 'process', scheduling: args.teeScheduling } });
        protectedBrokers.push(baseline);
      }
      await runProtected(protectedScenarios, { plain, process: processBroker, inline: inlineBroker, baseline }, lines);
    }
  } finally {
    await Promise.all([...brokers, ...protectedBrokers].map((b) => b.stop()));
  }
  if (durableScenarios.length > 0) {
    const skip: Partial<Record<DurableVariant, string>> = {};
    if (!args.brokers.includes('mosquitto')) skip.mosquitto = 'not in --brokers';
    else if (!mosquittoVersion()) skip.mosquitto = 'mosquitto binary not found (Debian: apt-get install mosquitto)';
    if (!args.brokers.includes('aedes')) skip.aedes = 'not in --brokers';
    for (let rep = 0; rep < args.repeat; rep++) {
      lines.push(...(await runDurable(durableScenarios, { quick: args.quick, profileDir: args.profileDir, baselineDir: args.baselineDir }, skip, emit)));
    }
  }
  if (instructionScenarios.length > 0) {
    const missing = valgrindMissing();
    if (missing !== undefined) emit({ bench: 'instructions', skipped: missing });
    else lines.push(...(await runInstructions({ rounds: instructionRounds, baselineDir: args.baselineDir, candidateDir: args.candidateDir, scenarios: instructionScenarios }, emit)));
  }
  if (wantScrape) {
    const line = await runScrapeCost({ quick: args.quick }).catch((err: unknown) => ({ bench: 'metrics-scrape', error: (err as Error).message }));
    lines.push(line);
    emit(line);
  }
  if (wantTee) await runTee(args.quick, lines);

  if (args.write) {
    const root = (rel: string): string => fileURLToPath(new URL(`../../${rel}`, import.meta.url));
    const peers = args.brokers.filter((b) => b !== 'mqt-tz');
    const files = writeReport(lines, root('docs/bench'), root('docs/benchmarks.md'), peers, machineHeader(args.quick, brokers, skipped));
    emit({ bench: 'report', wrote: files.map((f) => `docs/bench/${f}`) });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof UsageError ? err.message : ((err as Error).stack ?? String(err))}\n`);
    process.exit(1);
  },
);
