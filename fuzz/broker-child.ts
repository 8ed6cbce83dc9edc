// The broker under test as a child process started the way users start it (`npm start`'s Node
// flags, the CLI), so that a crash is a dead process and its memory is its own.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BROKER_NODE_FLAGS } from '../src/cli/node-flags.js';

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const TAIL_LINES = 40;
const START_MS = 20_000;

/**
 * Session limits kept small so that what a fuzzed client may legitimately make the broker keep stays
 * well under the RSS bound. Offline sessions too: v5 connects with an empty client id and a session
 * expiry each leave one under an assigned id, and mutated client ids more (together about one every
 * 2.5 s of this traffic, each with its queue), which otherwise pile up for their hour or forever.
 * Retained messages too: every mutated topic a retained PUBLISH reaches keeps one.
 */
export const FUZZ_BROKER_CONFIG = { limits: { maxQueuedMessages: 1000, maxQueuedBytes: 256 * 1024, maxOfflineSessions: 32, maxRetainedMessages: 256 } };

export interface BrokerChild {
  readonly pid: number;
  readonly port: number;
  /** Process id of its trusted component. */
  readonly teePid: number;
  readonly fingerprint: string;
  /** Set once the process has exited, with how. */
  exit: string | undefined;
  /** Log lines at level error, as `msg: err.message (first stack frames)`, and their count. */
  readonly errors: string[];
  errorCount: number;
  /** Full (mark-compact) collections V8 has run so far. */
  fullCollections: number;
  /** The last lines of its stderr (log and any stack trace). */
  tail(): string[];
  stop(): Promise<void>;
}

interface LogLine {
  level?: number;
  msg?: string;
  port?: number;
  transport?: string;
  teePid?: number;
  fingerprint?: string;
  err?: { message?: string; stack?: string };
}

/** A child still running when the harness exits (an overrun, an exception) is killed with it. */
export function killOnExit(child: ChildProcess): void {
  const kill = (): void => void child.kill('SIGKILL');
  process.once('exit', kill);
  child.once('exit', () => process.off('exit', kill));
}

export function startBrokerChild(dataDir: string): Promise<BrokerChild> {
  const configPath = join(dataDir, 'fuzz-config.json');
  writeFileSync(configPath, JSON.stringify(FUZZ_BROKER_CONFIG));
  // --trace-gc without scavenges: one stdout line per full collection, which the RSS judgement waits for
  const args = [...BROKER_NODE_FLAGS, '--trace-gc', '--trace-gc-ignore-scavenger', CLI, 'broker', '--host', '127.0.0.1', '--port', '0', '--data', dataDir, '--config', configPath, '--protect', 'secure/#'];
  const child: ChildProcess = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  killOnExit(child);
  const lines: string[] = [];
  let partial = '';
  let port = 0;
  let teePid = 0;
  let fingerprint = '';
  let ready: (() => void) | undefined;
  const state = {
    pid: child.pid ?? 0,
    exit: undefined as string | undefined,
    errors: [] as string[],
    errorCount: 0,
    fullCollections: 0,
  };
  child.stdout!.setEncoding('utf8');
  child.stdout!.on('data', (chunk: string) => {
    state.fullCollections += chunk.split('Mark-Compact').length - 1;
  });
  const onLine = (line: string): void => {
    lines.push(line);
    if (lines.length > TAIL_LINES) lines.shift();
    if (!line.startsWith('{')) return;
    let entry: LogLine;
    try {
      entry = JSON.parse(line) as LogLine;
    } catch {
      return;
    }
    if (entry.msg === 'listening' && entry.transport === 'tcp') port = entry.port ?? 0;
    if (entry.msg === 'trusted component ready') {
      teePid = entry.teePid ?? 0;
      fingerprint = entry.fingerprint ?? '';
    }
    if ((entry.level ?? 0) >= 50) {
      state.errorCount++;
      // the first frames of the stack say where a caught failure comes from
      const at = (entry.err?.stack ?? '').split('\n').slice(1, 4).map((l) => l.trim()).join(' < ');
      if (state.errors.length < 20) state.errors.push(`${entry.msg ?? ''}: ${entry.err?.message ?? ''}${at === '' ? '' : ` (${at})`}`);
    }
    if (port !== 0 && teePid !== 0) ready?.();
  };
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (chunk: string) => {
    const parts = (partial + chunk).split('\n');
    partial = parts.pop() ?? '';
    for (const l of parts) onLine(l);
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', (code, signal) => {
      state.exit = signal !== null ? `signal ${signal}` : `exit code ${code}`;
      ready?.();
      resolve();
    }),
  );
  return new Promise<BrokerChild>((resolve, reject) => {
    const timer = setTimeout(() => ready?.(), START_MS);
    ready = () => {
      clearTimeout(timer);
      ready = undefined;
      if (state.exit !== undefined || port === 0) {
        child.kill('SIGKILL');
        reject(new Error(`the broker did not start (${state.exit ?? 'no listening line'}):\n${lines.join('\n')}`));
        return;
      }
      resolve(
        Object.assign(state, {
          port,
          teePid,
          fingerprint,
          tail: () => [...lines],
          async stop() {
            if (state.exit === undefined) child.kill('SIGTERM');
            const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
            await exited;
            clearTimeout(killer);
          },
        }),
      );
    };
  });
}
