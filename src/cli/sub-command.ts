/** `mqt-tz sub`: subscribe like mosquitto_sub; protected payloads are opened with --key-file. */
import type { Command } from 'commander';
import { addClientOptions, failingClearly, parseCount, parsePositive, parseQos, UsageError, type ClientFlags } from './client-options.js';
import { openClient } from './open-client.js';

interface SubFlags extends ClientFlags {
  topic: string[];
  qos: string;
  count?: string;
  timeout?: string;
  verbose?: boolean;
  maxAge?: string;
  /** false with -R */
  retained: boolean;
}

export function registerSubCommand(program: Command): void {
  addClientOptions(program.command('sub').description('subscribe and print messages, one per line (flags as mosquitto_sub)'))
    .option('-t, --topic <filter>', 'topic filter (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('-q, --qos <qos>', 'quality of service 0, 1 or 2', '0')
    .option('-C, --count <n>', 'exit after receiving n messages')
    .option('-W, --timeout <seconds>', 'exit after this many seconds')
    .option('-v, --verbose', 'print the topic before each payload')
    .option('-R, --no-retained', 'do not print retained messages')
    .option('--max-age <seconds>', 'with --key-file: refuse protected messages sent longer ago than this, as replayed')
    .action(failingClearly(subscribe));
}

async function subscribe(flags: SubFlags): Promise<void> {
  if (flags.topic.length === 0) throw new UsageError('-t FILTER is required');
  const qos = parseQos(flags.qos);
  const limit = flags.count !== undefined ? parseCount(flags.count, '-C') : Infinity;
  const seconds = flags.timeout !== undefined ? parseCount(flags.timeout, '-W') : undefined;
  const maxAgeSeconds = flags.maxAge !== undefined ? parsePositive(flags.maxAge, '--max-age') : undefined;
  if (maxAgeSeconds !== undefined && flags.keyFile === undefined) throw new UsageError('--max-age needs --key-file: only protected messages carry their send time');
  const client = await openClient(flags, { maxAgeSeconds });
  let received = 0;
  let finished = false;
  const finish = async (code: number, message?: string): Promise<void> => {
    if (finished) return;
    finished = true;
    try {
      await client.end(); // also writes the replay state
    } catch (err) {
      message ??= (err as Error).message;
      code = 1;
    }
    if (message) process.stderr.write(`mqt-tz: ${message}\n`);
    process.exit(code);
  };
  client.onMessage((topic, payload, retained) => {
    if (finished || (retained && !flags.retained)) return;
    process.stdout.write(flags.verbose ? `${topic} ${payload.toString()}\n` : `${payload.toString()}\n`);
    if (++received >= limit) void finish(0);
  });
  client.onError((err) => void finish(1, err.message));
  if (seconds !== undefined) setTimeout(() => void finish(received > 0 || limit === Infinity ? 0 : 27, limit === Infinity ? undefined : `timed out after ${seconds} s`), seconds * 1000);
  await client.subscribe(flags.topic, qos);
  // Either signal closes cleanly, so the replay state is written (the key file's .replay).
  process.once('SIGINT', () => void finish(0));
  process.once('SIGTERM', () => void finish(0));
}
