/** Turns a run's JSON lines into docs/bench/: results.json, the markdown table, and SVG charts. */
import { readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { lineChart, type Series } from './svg.js';

/** One scenario's results and ratios, as printed and kept in results.json. */
interface ResultLine {
  group: string;
  id: string;
  params: Record<string, number | string>;
  /** Peer broker (`broker` lines) or variant: plain, process, inline (`protected` lines) → its result. */
  results: Record<string, Record<string, unknown>>;
  /** `mqt-tz/<peer>` or `<variant>/plain` → metric → ratio. */
  ratios: Record<string, Record<string, number>>;
}

export interface ScenarioLine extends ResultLine {
  bench: 'broker';
  skipped?: Record<string, string>;
}

/** A protected-path scenario: our broker plain and protected (`process`, `inline` backends). */
export interface ProtectedLine extends ResultLine {
  bench: 'protected';
  /** The plain figure was taken from this plain scenario of the same run. */
  plainFrom?: string;
}

/**
 * Durable state: one scenario, every variant's figures (`normal`, `full`, `off` = our broker's
 * persistence; `mosquitto`, `aedes` = peers with persistence on), and the ratios `normal/off`,
 * `full/off` (what durability costs), `normal/mosquitto`, `normal/aedes`, `normal/best-peer`.
 */
export interface DurableLine extends ResultLine {
  bench: 'durable';
}

export type Line = ScenarioLine | ProtectedLine | DurableLine | ({ bench: string } & Record<string, unknown>);

const num = (v: unknown): number => (typeof v === 'number' ? v : NaN);
const cell = (v: unknown): string => (typeof v === 'number' && Number.isFinite(v) ? String(v) : '–');
/** One metric of several brokers or variants in one cell: `a / b / c`. */
const across = (names: readonly string[], results: Record<string, Record<string, unknown>>, key: string): string =>
  names.map((n) => cell(results[n]?.[key])).join(' / ');

/** The headline metric of each group, as shown in the table. */
const HEADLINE: Record<string, { key: string; unit: string }> = {
  'fan-out': { key: 'deliveredPerSec', unit: 'msg/s delivered' },
  'fan-in': { key: 'deliveredPerSec', unit: 'msg/s delivered' },
  latency: { key: 'p50', unit: 'ms p50 (p99)' },
  connscale: { key: 'rssPerConnKiB', unit: 'KiB RSS/conn (conn/s)' },
  ecg: { key: 'brokerCpuPct', unit: '% CPU (p99 ms, delivered/expected)' },
};

function shown(group: string, r: Record<string, unknown> | undefined): string {
  if (!r) return 'skipped';
  if ('error' in r) return 'failed';
  const h = HEADLINE[group]!;
  const v = cell(r[h.key]);
  if (group === 'latency') return `${v} (${cell(r['p99'])})`;
  if (group === 'connscale') return `${v} (${cell(r['connectPerSec'])})`;
  if (group === 'ecg') return `${v} (${cell(r['p99'])}, ${cell(r['delivered'])}/${cell(r['expected'])})`;
  return v;
}

export function markdownTable(lines: Line[], peers: string[]): string {
  const rows = lines.filter((l): l is ScenarioLine => l.bench === 'broker');
  const head = ['scenario', 'metric', 'mqt-tz', ...peers, ...peers.map((p) => `mqt-tz/${p}`), 'broker CPU % (ours/peers)', 'load-gen CPU %', 'steal % (ours/peers)'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const l of rows) {
    const h = HEADLINE[l.group]!;
    const ratios = peers.map((p) => cell(l.ratios[`mqt-tz/${p}`]?.[h.key]));
    const brokers = ['mqt-tz', ...peers];
    const cpu = across(brokers, l.results, 'brokerCpuPct');
    const gen = across(brokers, l.results, 'loadgenCpuPct');
    // CPU the hypervisor took from this machine during each broker's run: a row with much of it is noise
    const steal = across(brokers, l.results, 'stealCpuPct');
    out.push(`| ${l.id} | ${h.unit} | ${shown(l.group, l.results['mqt-tz'])} | ${peers.map((p) => shown(l.group, l.results[p])).join(' | ')} | ${ratios.join(' | ')} | ${cpu} | ${gen} | ${steal} |`);
  }
  return `${out.join('\n')}\n`;
}

const PROTECTED_VARIANTS = ['plain', 'process', 'inline'];

/** What kind of scenario a protected line is, by the group of plain scenario it mirrors. */
function mirrors(l: ProtectedLine): string {
  return l.params['patients'] !== undefined ? 'ecg' : l.params['rate'] !== undefined ? 'latency' : 'fan-out';
}

function protectedTable(lines: Line[]): string {
  const rows = lines.filter((l): l is ProtectedLine => l.bench === 'protected');
  if (rows.length === 0) return '';
  const head = ['protected scenario', 'metric', ...PROTECTED_VARIANTS, 'process/plain', 'inline/plain', 'broker CPU % (of it trusted process, its µs per message)', 'broker event loop % on CPU + waiting for one', 'CPU µs per delivery', 'load-gen CPU %', 'steal %', 'opened sample'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const l of rows) {
    const g = mirrors(l);
    const h = HEADLINE[g]!;
    const value = (v: string): string => (l.results[v] ? shown(g, l.results[v]) : '–');
    const ratio = (v: string): string => cell(l.ratios[`${v}/plain`]?.[h.key]);
    const cpu = PROTECTED_VARIANTS.map((v) => {
      const r = l.results[v];
      if (!r) return '–';
      const child = num(r['brokerChildCpuPct']);
      const perMessage = typeof r['trustedUsPerMessage'] === 'number' ? `, ${cell(r['trustedUsPerMessage'])} µs` : '';
      return child > 0 ? `${cell(r['brokerCpuPct'])} (${cell(child)}${perMessage})` : cell(r['brokerCpuPct']);
    }).join(' / ');
    // the broker's main thread near 100 % (both parts together) is what bounds a throughput run
    const loop = PROTECTED_VARIANTS.map((v) => {
      const r = l.results[v];
      return r && typeof r['brokerMainPct'] === 'number' ? `${cell(r['brokerMainPct'])} + ${cell(r['brokerMainWaitPct'])}` : '–';
    }).join(' / ');
    const perDelivery = across(PROTECTED_VARIANTS, l.results, 'cpuUsPerDelivery');
    const gen = across(PROTECTED_VARIANTS, l.results, 'loadgenCpuPct');
    const steal = across(PROTECTED_VARIANTS, l.results, 'stealCpuPct');
    const sample = ['process', 'inline']
      .map((v) => l.results[v])
      .filter((r): r is Record<string, unknown> => r !== undefined && typeof r['opened'] === 'number')
      .map((r) => `${cell(r['opened'])} ok, ${cell(r['openFailures'])} failed${num(r['unknown']) + num(r['duplicates']) > 0 ? `; ${cell(r['unknown'])} unknown, ${cell(r['duplicates'])} duplicated deliveries` : ''}`)
      .join(' / ');
    const plainNote = (l.plainFrom ? ` (plain: ${l.plainFrom})` : '') + (l.params['sealing'] === 'before the run' ? ' (envelopes sealed before the run)' : '');
    out.push(`| ${l.id}${plainNote} | ${h.unit} | ${PROTECTED_VARIANTS.map(value).join(' | ')} | ${ratio('process')} | ${ratio('inline')} | ${cpu} | ${loop} | ${perDelivery} | ${gen} | ${steal} | ${sample || '–'} |`);
  }
  return `\n${out.join('\n')}\n`;
}

const DURABLE_VARIANTS = ['normal', 'full', 'off', 'mosquitto', 'aedes'];

/** The durable rows: msg/s (p99 ms) online, ingest / drain msg/s offline, start time and file sizes; ratios of the first metric. */
function durableTable(lines: Line[]): string {
  const rows = lines.filter((l): l is DurableLine => l.bench === 'durable');
  if (rows.length === 0) return '';
  const ratios = ['normal/off', 'full/off', 'normal/mosquitto', 'normal/aedes'];
  const head = ['durable scenario', 'metric', ...DURABLE_VARIANTS, ...ratios, 'broker CPU %'];
  const out = [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`];
  for (const l of rows) {
    const r = l.results;
    const value = (v: string, f: (x: Record<string, unknown>) => string): string => (r[v] === undefined ? '–' : 'error' in r[v] ? 'failed' : 'skipped' in r[v] ? 'skipped' : f(r[v]));
    let metric: string;
    let show: (x: Record<string, unknown>) => string;
    if (l.id === 'durable-online') [metric, show] = ['msg/s delivered (p99 ms)', (x) => `${cell(x['deliveredPerSec'])} (${cell(x['p99'])})`];
    else if (l.id === 'durable-offline') [metric, show] = ['msg/s acknowledged / drained', (x) => `${cell(x['ingestPerSec'])} / ${cell(x['drainPerSec'])}`];
    else if (l.id === 'durable-kill') [metric, show] = ['acknowledged messages lost at kill -9', (x) => `${cell(x['lost'])} of ${cell(x['acknowledged'])}`];
    else if (l.id === 'durable-soak') [metric, show] = ['msg/s; largest db / WAL MiB', (x) => `${cell(x['deliveredPerSec'])}; ${cell(x['maxDbMiB'])} / ${cell(x['maxWalMiB'])}`];
    else [metric, show] = ['ms to listening (db MiB)', (x) => `${cell(x['startMs'])} (${cell(x['dbMiB'])})`];
    const key = Object.keys(l.ratios['normal/off'] ?? l.ratios['normal/best-peer'] ?? {})[0];
    const ratio = (name: string): string => (key === undefined ? '–' : cell(l.ratios[name]?.[key]));
    const cpu = across(DURABLE_VARIANTS, r, 'brokerCpuPct');
    out.push(`| ${l.id} | ${metric} | ${DURABLE_VARIANTS.map((v) => value(v, show)).join(' | ')} | ${ratios.map(ratio).join(' | ')} | ${cpu} |`);
  }
  return `\n${out.join('\n')}\n`;
}

function teeTable(lines: Line[]): string {
  const rows = lines.filter((l) => l.bench === 'tee');
  if (rows.length === 0) return '';
  const out = ['| trusted-component measurement | figures |', '|---|---|'];
  for (const r of rows) {
    const { bench: _b, op, ...rest } = r as Record<string, unknown>;
    out.push(`| ${String(op)} | ${Object.entries(rest).map(([k, v]) => `${k}=${String(v)}`).join(', ')} |`);
  }
  return `\n${out.join('\n')}\n`;
}

function charts(lines: Line[], dir: string, brokers: string[]): string[] {
  const written: string[] = [];
  const rows = lines.filter((l): l is ScenarioLine => l.bench === 'broker');
  const write = (name: string, svg: string): void => {
    writeFileSync(join(dir, name), svg);
    written.push(name);
  };

  // throughput vs subscribers, one chart per payload size
  const fanOut = rows.filter((l) => l.group === 'fan-out');
  for (const payload of [...new Set(fanOut.map((l) => num(l.params['payload'])))]) {
    const series: Series[] = [];
    for (const b of brokers) {
      for (const qos of [0, 1]) {
        const pts = fanOut
          .filter((l) => l.params['payload'] === payload && l.params['qos'] === qos && l.results[b])
          .map((l): [number, number] => [num(l.params['subscribers']), num(l.results[b]!['deliveredPerSec'])])
          .filter((p) => Number.isFinite(p[1]))
          .sort((a, c) => a[0] - c[0]);
        if (pts.length > 0) series.push({ name: `${b} QoS ${qos}`, points: pts });
      }
    }
    if (series.length > 0) {
      write(`fanout-${payload}B.svg`, lineChart(series, { title: `Fan-out: 1 publisher → M subscribers, ${payload} B payload`, xLabel: 'subscribers (M)', yLabel: 'messages delivered per second', logX: true }));
    }
  }

  // latency CDFs
  for (const l of rows.filter((x) => x.group === 'latency')) {
    const series: Series[] = brokers
      .filter((b) => Array.isArray(l.results[b]?.['cdf']))
      .map((b) => ({ name: b, points: l.results[b]!['cdf'] as [number, number][] }));
    if (series.length === 0) continue;
    const p = l.params;
    write(`latency-cdf-${l.id.replace(/^latency-/, '')}.svg`, lineChart(series, { title: `Latency CDF: 1 → ${p['subscribers']}, QoS ${p['qos']}, ${p['payload']} B at ${p['rate']} msg/s`, xLabel: 'end-to-end latency (ms)', yLabel: 'fraction of deliveries', yMax: 1 }));
  }

  // protected / plain throughput ratio by subscribers, one line per trusted backend
  const prot = lines.filter((l): l is ProtectedLine => l.bench === 'protected').filter((l) => mirrors(l) === 'fan-out');
  if (prot.length > 0) {
    const series: Series[] = ['process', 'inline'].map((v) => ({
      name: `${v} backend / plain`,
      points: prot
        .map((l): [number, number] => [num(l.params['subscribers']), num(l.ratios[`${v}/plain`]?.['deliveredPerSec'])])
        .filter((x) => Number.isFinite(x[1]))
        .sort((a, c) => a[0] - c[0]),
    }));
    const p0 = prot[0]!.params;
    write('protected-plain-ratio.svg', lineChart(series, { title: `Protected / plain delivered msg/s (mqt-tz), ${p0['payload']} B, QoS ${p0['qos']}`, xLabel: 'subscribers (M)', yLabel: 'protected / plain', logX: true, reference: { y: 0.8, label: 'target 0.8' } }));
  }

  // trusted-component cost by payload size: re-wrap vs paper-mode re-encryption
  const tee = lines.filter((l) => l.bench === 'tee' && (l as Record<string, unknown>)['op'] === 'payload') as Record<string, unknown>[];
  if (tee.length > 0) {
    const series: Series[] = [];
    for (const backend of ['inline', 'process']) {
      for (const [key, label] of [['rewrapUsPerCall', 're-wrap'], ['paperUsPerCall', 'paper mode']] as const) {
        const pts = tee.filter((r) => r['backend'] === backend).map((r): [number, number] => [num(r['payloadBytes']), num(r[key])]).sort((a, c) => a[0] - c[0]);
        if (pts.length > 0) series.push({ name: `${label}, ${backend}`, points: pts });
      }
    }
    write('tee-payload.svg', lineChart(series, { title: 'Trusted component: µs per call (8 recipients) by payload', xLabel: 'payload bytes', yLabel: 'µs per call', logX: true }));
  }
  return written;
}

const TABLE_START = '<!-- bench:latest:start -->';
const TABLE_END = '<!-- bench:latest:end -->';

/** Writes docs/bench/{results.json,latest.md,*.svg} and splices the table into docs/benchmarks.md. */
export function writeReport(lines: Line[], outDir: string, docFile: string, peers: string[], header: string): string[] {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'results.json'), `${JSON.stringify(lines, null, 1)}\n`);
  const svgs = charts(lines, outDir, ['mqt-tz', ...peers]);
  const table = `${header}\n\n${markdownTable(lines, peers)}${protectedTable(lines)}${durableTable(lines)}${teeTable(lines)}`;
  writeFileSync(join(outDir, 'latest.md'), table);
  if (existsSync(docFile)) {
    const doc = readFileSync(docFile, 'utf8');
    const a = doc.indexOf(TABLE_START);
    const b = doc.indexOf(TABLE_END);
    if (a >= 0 && b > a) writeFileSync(docFile, `${doc.slice(0, a + TABLE_START.length)}\n${table}${doc.slice(b)}`);
  }
  return ['results.json', 'latest.md', ...svgs];
}
