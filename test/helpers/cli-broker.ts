// The broker as users start it: `mqt-tz broker ... --protect 'secure/#'` as its own OS process
// (the trusted component is its child, `process` backend), on an ephemeral port in a temp data
// folder. Clients enrol with the SDK; their key files live in a folder of the test, not the broker's.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { connectProtected, readKeyFile, type NodeProtectedClientOptions, type ProtectedClient } from '../../src/client/index.js';
import { issueToken, loadOperatorKey, OPERATOR_KEY_FILE, type OperatorKey } from '../../src/protect/operator.js';
import { toBase64Url } from '../../src/envelope/bytes.js';
import { withTimeout, WAIT_MS } from './broker.js';

export const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
export const PROTECTED = 'secure/#';

export interface CliBroker {
  /** The broker process: it owns the listening sockets. */
  readonly pid: number;
  /** The broker's child processes (the trusted component should be one of them). */
  children(): { pid: number; command: string }[];
  readonly port: number;
  readonly url: string;
  readonly dataDir: string;
  readonly fingerprint: string;
  /** `identity`'s raw 32-byte key K_c, read from its key file (after `enrolled`). */
  rawKey(identity: string): Buffer;
  keyFile(identity: string): string;
  /** Enrols `identity` with an operator token over MQTT and returns the connected SDK client. */
  enrolled(identity: string, options?: Partial<NodeProtectedClientOptions>): Promise<ProtectedClient>;
  /** Resolves when the broker next logs a line with this message. */
  logs(msg: string): Promise<void>;
  close(): Promise<void>;
}

interface LogLine {
  msg?: string;
  port?: number;
  fingerprint?: string;
}

/** The live child processes of `pid` and their command lines, from /proc. */
function childProcesses(pid: number): { pid: number; command: string }[] {
  const children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter((c) => c.length > 0).map(Number);
  return children.map((c) => ({ pid: c, command: readFileSync(`/proc/${c}/cmdline`, 'utf8').split('\0').join(' ').trim() }));
}

/** The scheduler state letter of `pid` (R, S, T = stopped, ...). */
export function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((resolve) => child.once('exit', () => resolve()));
}

export interface CliBrokerOptions {
  /** An existing data folder (a restart); the caller removes it, and the client folder it gives. */
  dataDir?: string;
  clientDir?: string;
  /** More `mqt-tz broker` flags. */
  args?: string[];
  /** The operator key that signs enrolment tokens; default the development key the broker created in the data folder. */
  operator?: OperatorKey;
}

function spawnBroker(dataDir: string, args: readonly string[]): ChildProcess {
  return spawn(process.execPath, [MAIN, 'broker', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, '--protect', PROTECTED, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** `mqt-tz broker` over `dataDir` that must stop before listening: its exit code and what it wrote to stderr. */
export async function failingCliBroker(dataDir: string, args: readonly string[] = []): Promise<{ code: number | null; stderr: string }> {
  const child = spawnBroker(dataDir, args);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await withTimeout(new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))), 3 * WAIT_MS, 'the broker to refuse to start').catch((err: unknown) => {
    child.kill('SIGKILL');
    throw err;
  });
  return { code, stderr };
}

export async function startCliBroker(opts: CliBrokerOptions = {}): Promise<CliBroker> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'mqt-tz-acceptance-broker-'));
  const clientDir = opts.clientDir ?? mkdtempSync(join(tmpdir(), 'mqt-tz-acceptance-clients-'));
  const child = spawnBroker(dataDir, opts.args ?? []);
  const clients: ProtectedClient[] = [];
  const logWaiters: { msg: string; resolve: () => void }[] = [];
  let stderr = '';
  const close = async (): Promise<void> => {
    await Promise.allSettled(clients.map((c) => c.endAsync(true)));
    if (child.pid !== undefined && child.exitCode === null) {
      child.kill('SIGCONT'); // in case a memory scan stopped it and failed
      child.kill('SIGTERM');
      await withTimeout(exited(child), WAIT_MS, 'the broker to exit on SIGTERM').catch(() => child.kill('SIGKILL'));
    }
    await exited(child);
    if (opts.dataDir === undefined) rmSync(dataDir, { recursive: true, force: true });
    if (opts.clientDir === undefined) rmSync(clientDir, { recursive: true, force: true });
  };
  try {
    let fingerprint = '';
    const port = await withTimeout(
      new Promise<number>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`the broker exited with ${code} before listening: ${stderr}`)));
        createInterface({ input: child.stderr! }).on('line', (line) => {
          stderr += `${line}\n`;
          let log: LogLine;
          try {
            log = JSON.parse(line) as LogLine;
          } catch {
            return;
          }
          if (log.msg === 'trusted component ready') fingerprint = log.fingerprint ?? '';
          for (const w of logWaiters.filter((x) => x.msg === log.msg)) {
            logWaiters.splice(logWaiters.indexOf(w), 1);
            w.resolve();
          }
          if (log.msg === 'listening' && log.port !== undefined) resolve(log.port);
        });
      }),
      3 * WAIT_MS,
      'the CLI broker to listen',
    );
    assert.equal(fingerprint.length, 64, `the broker logged its trusted component's fingerprint: ${stderr}`);
    let operator = opts.operator;
    const url = `mqtt://127.0.0.1:${port}`;
    const keyFile = (identity: string): string => join(clientDir, `${identity}.key`);
    return {
      pid: child.pid!,
      children: () => childProcesses(child.pid!),
      port,
      url,
      dataDir,
      fingerprint,
      keyFile,
      rawKey: (identity) => Buffer.from(readKeyFile(keyFile(identity))!.key),
      logs: (msg) => withTimeout(new Promise<void>((resolve) => logWaiters.push({ msg, resolve })), 3 * WAIT_MS, `the broker to log "${msg}"`),
      async enrolled(identity, options = {}) {
        operator ??= loadOperatorKey(join(dataDir, OPERATOR_KEY_FILE)); // the development operator key the broker created on first start
        const token = toBase64Url(issueToken(operator, identity, 600, { publish: [PROTECTED], read: [PROTECTED] }));
        const c = await connectProtected(url, { identity, teeFingerprint: fingerprint, keyFile: keyFile(identity), token, protectedTopics: [PROTECTED], reconnectPeriod: 0, ...options });
        clients.push(c);
        return c;
      },
      close,
    };
  } catch (err) {
    await close();
    throw err;
  }
}
