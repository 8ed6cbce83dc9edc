// `mqt-tz broker ARGS` as its own OS process, its JSON log lines read from stderr as they come.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { withTimeout, WAIT_MS } from './broker.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

export type LogLine = Record<string, unknown> & { msg?: string };

export interface ProcessBroker {
  readonly child: ChildProcess;
  /** Log lines so far. */
  readonly lines: LogLine[];
  /** The first log line (from `from` on) that `match` accepts, once it is written. */
  waitFor(match: (l: LogLine) => boolean, what: string, from?: number): Promise<LogLine>;
  /** Port of the first 'listening' line of `transport`. */
  port(transport?: string): Promise<number>;
  stop(): Promise<void>;
}

export function startProcessBroker(args: string[]): ProcessBroker {
  const child = spawn(process.execPath, [MAIN, 'broker', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: LogLine[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: child.stderr! }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as LogLine);
    } catch {
      lines.push({ msg: text });
    }
    for (const w of waiters) w();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = (match: (l: LogLine) => boolean, what: string, from = 0): Promise<LogLine> => {
    const found = (): LogLine | undefined => lines.slice(from).find(match);
    const now = found();
    if (now) return Promise.resolve(now);
    return withTimeout(
      new Promise<LogLine>((resolve) => {
        const check = (): void => {
          const l = found();
          if (!l) return;
          waiters.delete(check);
          resolve(l);
        };
        waiters.add(check);
      }),
      3 * WAIT_MS,
      `${what}; log so far: ${lines.map((l) => JSON.stringify(l)).join('\n')}`,
    );
  };
  return {
    child,
    lines,
    waitFor,
    async port(transport = 'tcp') {
      const l = await waitFor((x) => x.msg === 'listening' && x.transport === transport, `the broker to listen (${transport})`);
      return l.port as number;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await withTimeout(exited, WAIT_MS, 'the broker to exit').catch(() => child.kill('SIGKILL'));
    },
  };
}
