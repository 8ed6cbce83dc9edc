// `mqt-tz tee serve`: the trusted component as a standalone service on a Unix socket, for running
// it under its own OS user (docs/deployment.md). This process holds no key: for each broker
// connection it starts the trusted process (src/tee/main.ts) with the connection as its stdin and
// stdout, and with the state directory fixed here, whatever the broker's init names.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, lstatSync, mkdirSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** How long a second connection waits for the trusted process of the first to exit. */
const SECOND_CONNECTION_WAIT_MS = 2000;
const TRUSTED_MAIN = fileURLToPath(new URL('../tee/main.js', import.meta.url));

export interface TeeServiceOptions {
  /** The trusted component's state directory (device secret, counter): created 0700, or narrowed to it. */
  stateDir: string;
  socketPath: string;
  /** Group id that may connect (socket mode 0660); undefined: only this user (0600). */
  socketGid?: number;
  log: TeeServiceLog;
}

/** What the service reports: a subset of the broker's pino logger. */
export interface TeeServiceLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface TeeService {
  /** Stops listening (the socket file goes) and ends the connected broker's trusted process. */
  close(): Promise<void>;
}

/** The state directory, owned by this user and closed to everyone else. */
function prepareStateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if (!st.isDirectory()) throw new Error(`--data: ${dir} is not a directory`);
  if (process.getuid !== undefined && st.uid !== process.getuid()) throw new Error(`--data: ${dir} belongs to uid ${st.uid}, not to this user (uid ${process.getuid()}): the state directory must be the trusted user's own`);
  if ((st.mode & 0o077) !== 0) chmodSync(dir, 0o700);
}

/** Removes a socket file left by a service that is gone; refuses to take over a live one or a non-socket. */
async function clearStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) throw new Error(`--socket: ${path} exists and is not a socket`);
  const live = await new Promise<boolean>((done) => {
    const probe = connect(path, () => {
      probe.destroy();
      done(true);
    });
    probe.on('error', () => done(false));
  });
  if (live) throw new Error(`--socket: another service is listening on ${path}`);
  unlinkSync(path);
}

export async function serveTrustedComponent(opts: TeeServiceOptions): Promise<TeeService> {
  const stateDir = resolve(opts.stateDir);
  prepareStateDir(stateDir);
  await clearStaleSocket(opts.socketPath);
  let active: ChildProcess | undefined;

  let waiting: Socket | undefined;

  const serve = (socket: Socket): void => {
    // The connection's descriptor becomes the child's stdin and stdout; this process keeps no copy.
    const child = spawn(process.execPath, [TRUSTED_MAIN, '--state-dir', stateDir], { stdio: [socket, socket, 'inherit'], env: {} });
    socket.destroy();
    active = child;
    opts.log.info({ teePid: child.pid }, 'broker connected: trusted process started');
    child.once('exit', (code, signal) => {
      active = undefined;
      opts.log.info({ teePid: child.pid, code, signal }, 'trusted process exited');
      const next = waiting;
      waiting = undefined;
      if (next !== undefined && !next.destroyed) serve(next);
    });
  };

  // One broker at a time: two trusted processes on one state directory would race on its counter.
  // A broker that reconnects may arrive before the previous trusted process has exited: it waits a
  // little (one at a time); a connection while a broker stays connected is closed.
  const accept = (socket: Socket): void => {
    if (active === undefined) return serve(socket);
    if (waiting !== undefined) return refuse(socket, active.pid);
    waiting = socket;
    const pid = active.pid;
    setTimeout(() => {
      if (waiting !== socket) return;
      waiting = undefined;
      refuse(socket, pid);
    }, SECOND_CONNECTION_WAIT_MS).unref();
  };

  const refuse = (socket: Socket, activePid: number | undefined): void => {
    opts.log.warn({ activePid }, 'refused a second connection: a broker is already connected');
    socket.destroy();
  };

  // pauseOnConnect: nothing is read here, so the broker's first frames reach the trusted process.
  const server: Server = createServer({ pauseOnConnect: true }, accept);
  const umask = process.umask(0o177); // the socket file is born 0600: no window in which others may connect
  try {
    await new Promise<void>((done, fail) => {
      server.once('error', fail);
      server.listen(opts.socketPath, () => done());
    });
  } finally {
    process.umask(umask);
  }
  if (opts.socketGid !== undefined) {
    try {
      chownSync(opts.socketPath, -1, opts.socketGid);
    } catch (err) {
      server.close();
      throw new Error(`--socket-group: cannot give the socket to group ${opts.socketGid} (this user must be a member of it): ${(err as Error).message}`);
    }
    chmodSync(opts.socketPath, 0o660);
  }
  opts.log.info({ socket: opts.socketPath, mode: opts.socketGid === undefined ? '0600' : '0660', gid: opts.socketGid, stateDir }, 'trusted component service listening');
  return {
    async close() {
      const closed = new Promise<void>((done) => server.close(() => done()));
      waiting?.destroy();
      const child = active;
      if (child !== undefined && child.exitCode === null) {
        const exited = new Promise<void>((done) => child.once('exit', () => done()));
        child.kill('SIGTERM');
        await exited;
      }
      await closed;
    },
  };
}
