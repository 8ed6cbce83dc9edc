/**
 * The brokers under test, each started as its own OS process on a free port of 127.0.0.1 so that
 * its CPU time and RSS can be read from /proc apart from the load generator's.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BROKER_NODE_FLAGS } from '../src/cli/node-flags.js';
import { freePort, sleep, waitForPort } from './proc.js';

export type BrokerName = 'mqt-tz' | 'mosquitto' | 'aedes' | 'baseline';
/** The peers a run compares by default; `baseline` joins them with `--baseline DIR`. */
export const BROKER_NAMES: readonly BrokerName[] = ['mqt-tz', 'mosquitto', 'aedes'];

export interface BrokerProcess {
  name: BrokerName;
  version: string;
  port: number;
  pid: number;
  /** Its data folder (our broker's state database, mosquitto's or aedes' store). */
  dataDir: string;
  stop(): Promise<void>;
}

export interface StartBrokerOptions {
  /** Directory for a `node --cpu-prof` profile of our broker, written when it exits. */
  cpuProfileDir?: string;
  /** Ours and `baseline`: protect this topic filter, with this trusted backend and open enrolment. */
  protect?: { filter: string; backend: 'process' | 'inline'; scheduling?: 'default' | 'batch' };
  /** Our broker only: its operations HTTP listener (/metrics) on this port. */
  httpPort?: number;
  /** `baseline`: a built checkout of our broker (another commit), run with the same flags as ours. */
  baselineDir?: string;
  /** Our broker and a baseline build: a JSON config file with these settings (e.g. persistence, limits). */
  config?: Record<string, unknown>;
  /** Peers only: keep sessions and queues on disk (mosquitto saved on every change, aedes in LevelDB). */
  persistent?: boolean;
  /** Start in this data folder (e.g. one a benchmark filled first) instead of a new one; removed at stop unless `keepDataDir`. */
  dataDir?: string;
  /** Leave the data folder at stop (a restart on it follows). */
  keepDataDir?: boolean;
  /** How long it may take to listen (a broker restoring a large store takes seconds). Default 10 s. */
  startTimeoutMs?: number;
  /** Ours and `baseline` only: run node under this command (e.g. valgrind), given the data folder. */
  wrapper?: (dataDir: string) => string[];
}

const here = (rel: string): string => fileURLToPath(new URL(rel, import.meta.url));

/** The mosquitto binary, or undefined when it is not installed. */
export function mosquittoVersion(): string | undefined {
  const r = spawnSync('mosquitto', ['-h'], { encoding: 'utf8' });
  if (r.error) return undefined;
  return /mosquitto version (\S+)/.exec(`${r.stdout}${r.stderr}`)?.[1] ?? 'unknown';
}

function packageVersion(): string {
  return process.env['npm_package_version'] ?? '0.1.0';
}

interface Launch {
  name: BrokerName;
  version: string;
  port: number;
  dataDir: string;
  startTimeoutMs: number;
  cleanup(): void;
}

async function launch({ name, version, port, dataDir, startTimeoutMs, cleanup }: Launch, cmd: string, args: string[]): Promise<BrokerProcess> {
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    if (stderr.length < 4000) stderr += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await Promise.race([
      waitForPort(port, startTimeoutMs),
      exited.then(() => {
        throw new Error(`${name} exited at start: ${stderr.trim()}`);
      }),
    ]);
  } catch (err) {
    child.kill('SIGKILL');
    cleanup();
    throw err;
  }
  return {
    name,
    version,
    port,
    pid: child.pid!,
    dataDir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killed = await Promise.race([exited.then(() => true), sleep(5000).then(() => false)]);
        if (!killed) {
          child.kill('SIGKILL');
          await exited;
        }
      }
      cleanup();
    },
  };
}

/** Node's arguments for `mqt-tz broker` from the CLI entry `main` (ours, or a baseline build's). */
function ourBroker(main: string, port: number, dataDir: string): string[] {
  return [...BROKER_NODE_FLAGS, main, 'broker', '--host', '127.0.0.1', '--port', String(port), '--data', dataDir, '--log-level', 'warn'];
}

function protectArgs(opts: StartBrokerOptions): string[] {
  const p = opts.protect;
  return p ? ['--protect', p.filter, '--tee-backend', p.backend, '--open-enrolment', '--tee-scheduling', p.scheduling ?? 'default'] : [];
}

/** `--config FILE` for `opts.config`, written to the data folder; none without it. */
function configArgs(opts: StartBrokerOptions, dataDir: string): string[] {
  if (opts.config === undefined) return [];
  const file = join(dataDir, 'bench-config.json');
  writeFileSync(file, JSON.stringify(opts.config));
  return ['--config', file];
}

/** The command and arguments that start node with `args`, under `opts.wrapper` if given. */
function wrapped(opts: StartBrokerOptions, dataDir: string, args: string[]): [string, string[]] {
  const w = opts.wrapper?.(dataDir) ?? [];
  return w.length === 0 ? [process.execPath, args] : [w[0]!, [...w.slice(1), process.execPath, ...args]];
}

export async function startBrokerProcess(name: BrokerName, opts: StartBrokerOptions = {}): Promise<BrokerProcess> {
  const port = await freePort();
  const dir = opts.dataDir ?? mkdtempSync(join(tmpdir(), `bench-${name}-`));
  const cleanup = (): void => {
    if (!opts.keepDataDir) rmSync(dir, { recursive: true, force: true });
  };
  const at = { port, dataDir: dir, startTimeoutMs: opts.startTimeoutMs ?? 10_000, cleanup };
  switch (name) {
    case 'mqt-tz': {
      const prof = opts.cpuProfileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfileDir] : [];
      const protect = protectArgs(opts);
      const http = opts.httpPort !== undefined ? ['--http-port', String(opts.httpPort)] : [];
      const args = [...prof, ...ourBroker(here('../src/cli/main.js'), port, dir), ...configArgs(opts, dir), ...protect, ...http];
      return launch({ name, version: packageVersion(), ...at }, ...wrapped(opts, dir, args));
    }
    case 'baseline': {
      // another build of our broker in the same run: "no slower than before" measured, not recalled
      const dir0 = opts.baselineDir;
      if (dir0 === undefined) throw new Error('baseline needs --baseline DIR');
      const rev = spawnSync('git', ['-C', dir0, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8' }).stdout?.trim() || 'unknown';
      const args = [...ourBroker(join(dir0, 'dist/src/cli/main.js'), port, dir), ...configArgs(opts, dir), ...protectArgs(opts)];
      return launch({ name, version: rev, ...at }, ...wrapped(opts, dir, args));
    }
    case 'mosquitto': {
      const version = mosquittoVersion();
      if (!version) throw new Error('mosquitto is not installed (Debian: apt-get install mosquitto)');
      const conf = join(dir, 'mosquitto.conf');
      // persistent as issue 27 measured it: saved at most every second and on every change, queues unbounded.
      // Started as root, mosquitto runs as the user `mosquitto`, who cannot write to the private data
      // folder (it saved nothing at all); `user root` keeps it as it was started (ignored when not root).
      const persistence = opts.persistent
        ? ['persistence true', `persistence_location ${dir}/`, 'autosave_interval 1', 'autosave_on_changes true', 'max_queued_messages 0', 'user root']
        : ['persistence false'];
      writeFileSync(conf, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', ...persistence, 'log_dest none', ''].join('\n'));
      return launch({ name, version, ...at }, 'mosquitto', ['-c', conf]);
    }
    case 'aedes': {
      let version = 'unknown';
      try {
        version = (JSON.parse(readFileSync(here('../../node_modules/aedes/package.json'), 'utf8')) as { version: string }).version;
      } catch {
        // the version is informational only
      }
      return launch({ name, version, ...at }, process.execPath, [here('./aedes-server.js'), String(port), ...(opts.persistent ? [join(dir, 'level')] : [])]);
    }
  }
}
