// `npm run fuzz -- [--seconds N] [--seed S] [--target broker|tee|all] [--rss-log FILE] [--replay FILE]`
// Exit status: 0 when no failure, 1 on a failure (file written under .tmp/fuzz/), 2 on bad flags.
import { randomInt } from 'node:crypto';
import { Command, InvalidArgumentError } from 'commander';
import { fuzzBroker, replayBroker, type TargetResult } from './broker-target.js';
import { readFailure } from './case-file.js';
import { fuzzTee, replayTee } from './tee-target.js';

interface Flags {
  seconds: number;
  seed?: number;
  target: 'broker' | 'tee' | 'all';
  rssLog?: string;
  replay?: string;
}

function integer(name: string, max: number): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 0 || n > max) throw new InvalidArgumentError(`${name} must be an integer from 0 to ${max}`);
    return n;
  };
}

function target(value: string): Flags['target'] {
  if (value !== 'broker' && value !== 'tee' && value !== 'all') throw new InvalidArgumentError('must be broker, tee or all');
  return value;
}

const log = (line: string): void => void process.stdout.write(`${line}\n`);

function report(name: string, r: TargetResult): boolean {
  if (r.failure === undefined) {
    log(`${name}: no failure`);
    return true;
  }
  log(`${name}: FAILED: ${r.failure}`);
  if (r.failureFile !== undefined) log(`${name}: case written to ${r.failureFile}; replay with: npm run fuzz -- --replay ${r.failureFile}`);
  return false;
}

async function replay(path: string): Promise<boolean> {
  const f = readFailure(path);
  log(`replaying ${path}: target ${f.target}, seed ${f.seed}, case ${f.caseIndex}, failure was: ${f.failure.split('\n')[0]}`);
  const r = f.target === 'broker' ? await replayBroker(f.cases, f.data, log) : await replayTee(f.fixture, f.cases, log);
  log(r.failure === undefined ? 'replay: the failure did not come back' : `replay: reproduced: ${r.failure}`);
  return r.failure === undefined;
}

/** However slow the machine, a run ends: cases are bounded, but a stuck harness must not stall CI. */
const OVERRUN_MS = 90_000;

async function main(flags: Flags): Promise<boolean> {
  if (flags.replay !== undefined) return replay(flags.replay);
  setTimeout(() => {
    log(`fuzz: the run overran its ${flags.seconds} s by ${OVERRUN_MS / 1000} s; stopping`);
    process.exit(1);
  }, flags.seconds * 1000 + OVERRUN_MS).unref();
  const seed = flags.seed ?? randomInt(0, 2 ** 32);
  log(`fuzz seed ${seed} (again: npm run fuzz -- --seed ${seed} --seconds ${flags.seconds} --target ${flags.target})`);
  const ms = flags.seconds * 1000;
  const teeShare = flags.target === 'all' ? 0.3 : flags.target === 'tee' ? 1 : 0;
  let ok = true;
  if (teeShare < 1) ok = report('broker', await fuzzBroker({ seed, ms: ms * (1 - teeShare), rssLog: flags.rssLog, log })) && ok;
  if (teeShare > 0) ok = report('tee', await fuzzTee({ seed, ms: ms * teeShare, log })) && ok;
  return ok;
}

const program = new Command()
  .name('npm run fuzz --')
  .description('fuzz the broker (child process, mutated MQTT sessions) and the trusted component (hostile host)')
  .option('--seconds <n>', 'run time in seconds, split between targets', integer('--seconds', 86_400), 60)
  .option('--seed <n>', 'PRNG seed (default: random, printed first)', integer('--seed', 2 ** 32 - 1))
  .option('--target <target>', 'broker, tee or all', target, 'all')
  .option('--rss-log <file>', 'CSV of the broker\'s RSS (and its trusted process\'s), one sample a second')
  .option('--replay <file>', 'replay a failure file written under .tmp/fuzz/')
  .action(async (flags: Flags) => {
    process.exitCode = (await main(flags)) ? 0 : 1;
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`fuzz: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
});
