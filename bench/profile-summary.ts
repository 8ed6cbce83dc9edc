/**
 * `node dist/bench/profile-summary.js FILE.cpuprofile [--top N] [--filter SUBSTRING] [--busy]`: self
 * time by function (and by source file) from a `node --cpu-prof` profile, e.g. of the broker under
 * `npm run bench -- --brokers mqt-tz --only fan-out,fan-in --profile DIR`. `--busy` gives shares of
 * the time the process was not idle (a broker idles while the other brokers of a run are measured).
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const args = process.argv.slice(2);
const file = args.find((a) => !a.startsWith('--'));
if (!file) {
  process.stderr.write('usage: profile-summary FILE.cpuprofile [--top N] [--filter SUBSTRING]\n');
  process.exit(2);
}
const opt = (name: string): string | undefined => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const top = Number(opt('--top') ?? 25);
const filter = opt('--filter');
const busy = args.includes('--busy');

const profile = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<number, number>();
profile.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i] ?? 0)));
const isIdle = (id: number): boolean => byId.get(id)?.callFrame.functionName === '(idle)';
const total = [...selfUs].filter(([id]) => !(busy && isIdle(id))).reduce((a, [, us]) => a + us, 0);

const shortUrl = (url: string): string => url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '$1/').replace(/^node:/, 'node:');
const byFunction = new Map<string, number>();
const byFile = new Map<string, number>();
for (const [id, us] of selfUs) {
  if (busy && isIdle(id)) continue;
  const n = byId.get(id)!;
  const url = shortUrl(n.callFrame.url) || '(native)';
  const key = `${n.callFrame.functionName || '(anonymous)'} ${url}:${n.callFrame.lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + us);
  byFile.set(url, (byFile.get(url) ?? 0) + us);
}
const print = (title: string, m: Map<string, number>): void => {
  process.stdout.write(`${title}\n`);
  const rows = [...m].filter(([k]) => !filter || k.includes(filter)).sort((a, b) => b[1] - a[1]).slice(0, top);
  for (const [k, us] of rows) process.stdout.write(`${((us / total) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(7)} ms  ${k}\n`);
};
process.stdout.write(`total ${(total / 1000).toFixed(0)} ms sampled${busy ? ' (not idle)' : ''}\n`);
print('\nself time by function:', byFunction);
print('\nself time by file:', byFile);
