/** Dependency-free SVG line charts for docs/bench/*.svg. */

export interface Series {
  name: string;
  points: [number, number][];
}

export interface ChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  /** Logarithmic x axis (base 2 ticks at the data's x values when `xTicks` is absent). */
  logX?: boolean;
  xTicks?: number[];
  /** Fix the y range's top (e.g. 1 for a CDF); otherwise from the data. */
  yMax?: number;
  /** Dashed horizontal reference line, e.g. a target ratio. */
  reference?: { y: number; label: string };
}

const W = 720;
const H = 420;
const M = { left: 78, right: 170, top: 44, bottom: 56 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf', '#7f7f7f'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** 4–6 round tick values from 0 (or lo) to at least hi. */
function niceTicks(lo: number, hi: number): number[] {
  const span = hi - lo || 1;
  const step0 = span / 5;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => span / s <= 6) ?? 10 * mag;
  const ticks: number[] = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function fmt(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e6) return `${Number((v / 1e6).toPrecision(3))}M`;
  if (a >= 1e4) return `${Number((v / 1e3).toPrecision(3))}k`;
  return String(Number(v.toPrecision(3)));
}

export function lineChart(series: Series[], o: ChartOptions): string {
  const all = series.flatMap((s) => s.points);
  const xs = all.map((p) => p[0]);
  const tx = (v: number): number => (o.logX ? Math.log2(Math.max(v, 1e-9)) : v);
  const xLo = xs.length ? Math.min(...xs.map(tx)) : 0;
  const xHi = xs.length ? Math.max(...xs.map(tx)) : 1;
  const yTicks = niceTicks(0, o.yMax ?? Math.max(o.reference?.y ?? 0, ...all.map((p) => p[1]), 1e-9));
  const yHi = yTicks[yTicks.length - 1]!;
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (v: number): number => M.left + ((tx(v) - xLo) / (xHi - xLo || 1)) * pw;
  const Y = (v: number): number => M.top + ph - (v / yHi) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  out.push(`<text x="${M.left}" y="24" font-size="15" font-weight="bold">${esc(o.title)}</text>`);
  for (const t of yTicks) {
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${Y(t).toFixed(1)}" y2="${Y(t).toFixed(1)}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${M.left - 6}" y="${(Y(t) + 4).toFixed(1)}" text-anchor="end">${fmt(t)}</text>`);
  }
  const xTicks = o.xTicks ?? (o.logX ? [...new Set(xs)].sort((a, b) => a - b) : niceTicks(Math.min(...xs, 0), Math.max(...xs, 1)));
  for (const t of xTicks) {
    const x = X(t).toFixed(1);
    out.push(`<line x1="${x}" x2="${x}" y1="${M.top + ph}" y2="${M.top + ph + 5}" stroke="#333"/>`);
    out.push(`<text x="${x}" y="${M.top + ph + 18}" text-anchor="middle">${fmt(t)}</text>`);
  }
  out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${M.top + ph}" y2="${M.top + ph}" stroke="#333"/>`);
  out.push(`<line x1="${M.left}" x2="${M.left}" y1="${M.top}" y2="${M.top + ph}" stroke="#333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 14}" text-anchor="middle">${esc(o.xLabel)}</text>`);
  out.push(`<text transform="translate(18 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">${esc(o.yLabel)}</text>`);
  if (o.reference) {
    const y = Y(o.reference.y).toFixed(1);
    out.push(`<line x1="${M.left}" x2="${M.left + pw}" y1="${y}" y2="${y}" stroke="#555" stroke-dasharray="6 4"/>`);
    out.push(`<text x="${M.left + pw - 4}" y="${(Number(y) - 5).toFixed(1)}" text-anchor="end" fill="#555">${esc(o.reference.label)}</text>`);
  }
  series.forEach((s, i) => {
    const c = COLOURS[i % COLOURS.length]!;
    const pts = s.points.map(([x, y]) => `${X(x).toFixed(1)},${Y(y).toFixed(1)}`).join(' ');
    out.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts}"/>`);
    if (s.points.length <= 12) for (const [x, y] of s.points) out.push(`<circle cx="${X(x).toFixed(1)}" cy="${Y(y).toFixed(1)}" r="3" fill="${c}"/>`);
    const ly = M.top + 10 + i * 18;
    out.push(`<line x1="${M.left + pw + 14}" x2="${M.left + pw + 34}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
    out.push(`<text x="${M.left + pw + 40}" y="${ly + 4}">${esc(s.name)}</text>`);
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
