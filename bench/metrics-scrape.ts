/**
 * What Prometheus scraping costs (issue 28: under 1 % of throughput at one scrape a second).
 * One broker process with its HTTP listener on; rounds of the same fan-out run in turns with and
 * without a scraper fetching /metrics once a second (the order alternating, so neither always runs
 * first); each side's figure is its median round. Beside the ratio, which this shared machine's
 * noise blurs at 1 %, the broker's CPU per scrape is measured directly: back-to-back scrapes of the
 * idle broker, its CPU time over their count.
 */
import { startBrokerProcess } from './brokers.js';
import { runThroughput, type ThroughputResult } from './loadgen.js';
import { cpuPercent, freePort, sampleProcess, sleep } from './proc.js';
import { round } from './stats.js';

const SPEC = { publishers: 1, subscribers: 8, qos: 1 as const, payload: 4096, warmupMs: 400 };
const IDLE_SCRAPES = 50;

interface Scrapes {
  count: number;
  meanMs: number;
  maxMs: number;
  bytes: number;
}

/** Fetches /metrics every second until stopped; each fetch's time and size recorded. */
function scraper(url: string): { stop(): Promise<Scrapes> } {
  const times: number[] = [];
  let bytes = 0;
  let inFlight: Promise<void> = Promise.resolve();
  const scrape = async (): Promise<void> => {
    const t0 = performance.now();
    const text = await (await fetch(url)).text();
    times.push(performance.now() - t0);
    bytes = text.length;
  };
  const timer = setInterval(() => (inFlight = scrape().catch(() => undefined)), 1000);
  return {
    async stop() {
      clearInterval(timer);
      await inFlight;
      const sum = times.reduce((a, b) => a + b, 0);
      return { count: times.length, meanMs: round(sum / Math.max(1, times.length), 2), maxMs: round(Math.max(0, ...times), 2), bytes };
    },
  };
}

function median(runs: ThroughputResult[]): ThroughputResult {
  return [...runs].sort((a, b) => a.deliveredPerSec - b.deliveredPerSec)[(runs.length - 1) >> 1]!;
}

export async function runScrapeCost(o: { quick: boolean }): Promise<Record<string, unknown> & { bench: string }> {
  const httpPort = await freePort();
  const broker = await startBrokerProcess('mqt-tz', { httpPort });
  const url = `http://127.0.0.1:${httpPort}/metrics`;
  const rounds = o.quick ? 2 : 5;
  const measureMs = o.quick ? 2000 : 3000;
  try {
    // the broker's CPU per scrape, idle: what one scrape a second takes from one core
    await fetch(url);
    const before = sampleProcess(broker.pid);
    const t0 = performance.now();
    for (let i = 0; i < IDLE_SCRAPES; i++) await (await fetch(url)).text();
    const after = sampleProcess(broker.pid);
    const cpuMsPerScrape = round(((after.cpuSeconds - before.cpuSeconds) * 1000) / IDLE_SCRAPES, 2);
    const idleCpuPct = round(cpuPercent(before, after), 1);
    const wallMsPerScrape = round((performance.now() - t0) / IDLE_SCRAPES, 2);

    await runThroughput(broker, 'scrape-warm-up', { ...SPEC, warmupMs: 0, measureMs: o.quick ? 1000 : 3000 });
    const plain: ThroughputResult[] = [];
    const scraped: ThroughputResult[] = [];
    let scrapes: Scrapes = { count: 0, meanMs: 0, maxMs: 0, bytes: 0 };
    for (let r = 0; r < rounds; r++) {
      for (const withScrape of r % 2 === 0 ? [false, true] : [true, false]) {
        const s = withScrape ? scraper(url) : undefined;
        const result = await runThroughput(broker, `scrape-${withScrape ? 'on' : 'off'}-${r}`, { ...SPEC, measureMs });
        if (s) {
          const got = await s.stop();
          scrapes = { count: scrapes.count + got.count, meanMs: Math.max(scrapes.meanMs, got.meanMs), maxMs: Math.max(scrapes.maxMs, got.maxMs), bytes: got.bytes };
        }
        (withScrape ? scraped : plain).push(result);
        await sleep(200);
      }
    }
    const on = median(scraped);
    const off = median(plain);
    return {
      bench: 'metrics-scrape',
      params: { ...SPEC, measureMs, rounds, scrapeEverySec: 1 },
      results: { unscraped: off, scraped: on },
      ratios: { 'scraped/unscraped': { deliveredPerSec: round(on.deliveredPerSec / off.deliveredPerSec, 3) } },
      roundsDeliveredPerSec: { unscraped: plain.map((x) => Math.round(x.deliveredPerSec)), scraped: scraped.map((x) => Math.round(x.deliveredPerSec)) },
      scrapes,
      idle: { cpuMsPerScrape, wallMsPerScrape, cpuPctOfOneCoreAtOnePerSec: round(cpuMsPerScrape / 10, 2), idleCpuPctDuringBurst: idleCpuPct },
    };
  } finally {
    await broker.stop();
  }
}
