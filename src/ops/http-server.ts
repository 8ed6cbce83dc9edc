/**
 * The operations HTTP listener: Prometheus /metrics, /healthz, /readyz, and the dashboard at /
 * (its page, script and /api/stats), behind an HTTP Basic login when `http.admins` names users of
 * the password file. Binds 127.0.0.1 unless configured otherwise.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import type { PasswordChecker } from '../auth/login-limiter.js';
import { BrokerMetrics } from './metrics.js';
import { busiestTopics, takeSnapshot, type Observed } from './snapshot.js';

export interface OpsHttpOptions {
  host: string;
  port: number;
  /** Users of the password file allowed to open the dashboard; empty = no login. */
  admins: readonly string[];
  passwords: PasswordChecker;
  /** Whether the broker's listeners are up (for /readyz). */
  listening: () => boolean;
  log: Logger;
}

export interface OpsHttp {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

const ASSETS = new URL('../../../dashboard/', import.meta.url);
const PAGES: Record<string, { file: string; type: string }> = {
  '/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard.js': { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
};
/** A checked login is remembered this long, so the page's polling does not re-run PBKDF2. */
const LOGIN_REMEMBERED_MS = 5 * 60_000;

function send(res: ServerResponse, status: number, type: string, body: string | Buffer, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store', ...headers });
  res.end(body);
}

export async function startOpsHttp(observed: Observed, opts: OpsHttpOptions): Promise<OpsHttp> {
  const metrics = new BrokerMetrics(observed.tee !== undefined);
  const assets = new Map(Object.entries(PAGES).map(([path, p]) => [path, { body: readFileSync(new URL(p.file, ASSETS)), type: p.type }]));
  const logins = new Map<string, number>();

  /** Whether the request carries an admin's valid Basic login (asked for when it does not). */
  async function admitted(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (opts.admins.length === 0) return true;
    const header = req.headers.authorization ?? '';
    const key = createHash('sha256').update(header).digest('hex');
    const until = logins.get(key);
    if (until !== undefined && until > Date.now()) return true;
    logins.delete(key);
    const m = /^Basic ([A-Za-z0-9+/=]+)$/.exec(header);
    const decoded = m ? Buffer.from(m[1]!, 'base64').toString('utf8') : '';
    const colon = decoded.indexOf(':');
    const user = decoded.slice(0, colon);
    if (colon > 0 && opts.admins.includes(user)) {
      const verdict = await opts.passwords.check(req.socket.remoteAddress ?? '', user, Buffer.from(decoded.slice(colon + 1), 'utf8'));
      if (verdict === 'ok') {
        if (logins.size > 1000) logins.clear();
        logins.set(key, Date.now() + LOGIN_REMEMBERED_MS);
        return true;
      }
    }
    send(res, 401, 'text/plain; charset=utf-8', 'login required: a dashboard admin of the password file\n', { 'www-authenticate': 'Basic realm="mqt-tz dashboard", charset="UTF-8"' });
    return false;
  }

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain', 'GET only\n', { allow: 'GET, HEAD' });
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/healthz') return send(res, 200, 'text/plain', 'ok\n');
    if (path === '/readyz') {
      const snapshot = await takeSnapshot(observed);
      const problems = [...(opts.listening() ? [] : ['MQTT listeners are not up']), ...(snapshot.tee && !snapshot.tee.up ? ['the trusted component does not answer'] : [])];
      return problems.length === 0 ? send(res, 200, 'text/plain', 'ready\n') : send(res, 503, 'text/plain', `not ready: ${problems.join('; ')}\n`);
    }
    if (path === '/metrics') return send(res, 200, metrics.contentType, await metrics.render(await takeSnapshot(observed)));
    const asset = assets.get(path);
    if (asset === undefined && path !== '/api/stats') return send(res, 404, 'text/plain', 'not found\n');
    if (!(await admitted(req, res))) return;
    if (asset) return send(res, 200, asset.type, asset.body);
    const body = JSON.stringify({ snapshot: await takeSnapshot(observed), topics: busiestTopics(observed) });
    return send(res, 200, 'application/json', body);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      opts.log.error({ err, url: req.url }, 'operations HTTP request failed');
      if (!res.headersSent) send(res, 500, 'text/plain', 'internal error\n');
      else res.destroy();
    });
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot listen for HTTP on ${opts.host}:${opts.port}: ${err.message}`, { cause: err })));
    server.listen({ host: opts.host, port: opts.port }, resolve);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : opts.port;
  return {
    host: opts.host,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
