// The dashboard: polls /api/stats once a second and draws it. Plain script, no build step.
'use strict';
const HISTORY = 120;
const points = [];
let previous;

const $ = (id) => document.getElementById(id);
const fmt = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + 'M' : n >= 1e4 ? (n / 1e3).toFixed(1) + 'k' : String(Math.round(n)));
const sum = (a) => a.reduce((x, y) => x + y, 0);

function cell(text, cls) {
  const td = document.createElement('td');
  if (cls) td.className = cls;
  if (text instanceof Node) td.append(text);
  else td.textContent = text;
  return td;
}

function rows(tbody, items, toCells, emptyText) {
  tbody.replaceChildren();
  if (items.length === 0) {
    const tr = document.createElement('tr');
    const td = cell(emptyText, 'empty');
    td.colSpan = 4;
    tr.append(td);
    tbody.append(tr);
    return;
  }
  for (const item of items) {
    const tr = document.createElement('tr');
    tr.append(...toCells(item));
    tbody.append(tr);
  }
}

function badge(text) {
  const span = document.createElement('span');
  span.className = 'badge';
  span.textContent = text;
  return span;
}

function drawChart() {
  const svg = $('chart');
  const w = svg.clientWidth || 800, h = 180, left = 40, bottom = 16;
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`);
  const max = Math.max(1, ...points.map((p) => Math.max(p.in, p.out)));
  const x = (i) => left + ((w - left - 4) * i) / (HISTORY - 1);
  const y = (v) => h - bottom - ((h - bottom - 6) * v) / max;
  const line = (key) => points.map((p, i) => `${x(HISTORY - points.length + i).toFixed(1)},${y(p[key]).toFixed(1)}`).join(' ');
  svg.innerHTML =
    `<line x1="${left}" y1="${h - bottom}" x2="${w}" y2="${h - bottom}" stroke="#ccd"/>` +
    `<line x1="${left}" y1="6" x2="${w}" y2="6" stroke="#eef" />` +
    `<text x="${left - 4}" y="10" text-anchor="end">${fmt(max)}</text>` +
    `<text x="${left - 4}" y="${h - bottom}" text-anchor="end">0</text>` +
    `<text x="${left}" y="${h - 2}">-${HISTORY} s</text><text x="${w}" y="${h - 2}" text-anchor="end">now</text>` +
    `<polyline fill="none" stroke="var(--in)" stroke-width="2" points="${line('in')}"/>` +
    `<polyline fill="none" stroke="var(--out)" stroke-width="2" points="${line('out')}"/>`;
}

/** Upper bound (ms) of the bucket holding quantile q of a cumulative histogram. */
function quantile(h, q) {
  if (!h || h.count === 0) return undefined;
  const rank = q * h.count;
  for (let i = 0; i < h.bucketsMs.length; i++) if (h.cumulative[i] >= rank) return h.bucketsMs[i];
  return Infinity;
}

function showTee(tee) {
  if (!tee) return rows($('tee'), [], () => [], 'not running (tee: null)');
  const s = tee.stats || {};
  const p = tee.protection || {};
  const lookups = (s.cacheHits || 0) + (s.cacheMisses || 0);
  const p50 = quantile(tee.latency, 0.5), p99 = quantile(tee.latency, 0.99);
  const status = document.createElement('span');
  status.className = tee.up ? 'up' : 'down';
  status.textContent = tee.up ? 'answering' : 'not answering';
  const items = [
    ['status', status],
    ['protected topics', tee.protectedFilters.length ? tee.protectedFilters.join(', ') : 'none'],
    ['key cache hit ratio', lookups ? ((100 * s.cacheHits) / lookups).toFixed(1) + ' % of ' + fmt(lookups) : '–'],
    ['keys cached', fmt(s.cacheSize || 0)],
    ['protected messages', fmt(p.accepted || 0)],
    ['re-wrap calls / groups formed', fmt(p.rewrapCalls || 0) + ' / ' + fmt(s.groupsFormed || 0)],
    ['refused: malformed / wrong sender', fmt(p.refusedMalformed || 0) + ' / ' + fmt(p.refusedSender || 0)],
    ['refused: messages / recipients', fmt(p.messagesRefused || 0) + ' / ' + fmt(p.recipientsRefused || 0)],
    ['call latency p50 / p99', p50 === undefined ? '–' : `≤ ${p50} ms / ≤ ${p99} ms`],
  ];
  rows($('tee'), items, ([k, v]) => [cell(k), cell(v, 'n')], '');
}

function show({ snapshot: s, topics }) {
  const sent = sum(s.counters.publishSent);
  if (previous) {
    const dt = (s.at - previous.at) / 1000 || 1;
    points.push({ in: (s.counters.messagesReceived - previous.counters.messagesReceived) / dt, out: (sent - sum(previous.counters.publishSent)) / dt });
    if (points.length > HISTORY) points.shift();
    const last = points[points.length - 1];
    $('rate-in').textContent = fmt(last.in);
    $('rate-out').textContent = fmt(last.out);
  }
  previous = s;
  $('connections').textContent = fmt(s.clientsConnected);
  $('sessions').textContent = fmt(s.sessions);
  $('offline').textContent = fmt(s.sessionsOffline);
  $('subscriptions').textContent = fmt(s.subscriptions);
  $('retained').textContent = fmt(s.retained);
  $('queued').textContent = fmt(s.queuedMessages);
  $('dropped').textContent = fmt(s.counters.dropped);
  $('status').textContent = `up ${s.uptimeSeconds} s · updated ${new Date(s.at).toLocaleTimeString()}`;
  rows($('topics'), topics, (t) => [cell(t.topic), cell(t.protected ? badge('protected') : ''), cell(fmt(t.messages), 'n')], 'no messages yet');
  rows($('queues'), s.busiestQueues, (q) => [cell(q.clientId), cell(q.connected ? 'online' : 'offline'), cell(fmt(q.queued), 'n'), cell(fmt(q.inflight), 'n')], 'no messages waiting');
  showTee(s.tee);
  drawChart();
}

async function poll() {
  try {
    const res = await fetch('api/stats', { cache: 'no-store' });
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    show(await res.json());
  } catch (err) {
    $('status').textContent = `cannot reach the broker: ${err.message}`;
  }
  setTimeout(poll, 1000);
}
poll();
