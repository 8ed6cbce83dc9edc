/** Composes the layers into a running broker: config → listeners → broker (→ trusted component). */
import { mkdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ConfigError, type BrokerConfig, type TlsListenerConfig } from './config.js';
import { openDataTee, type DataTee } from './protect/operator.js';
import { attachProtection, type Protection } from './protect/attach.js';
import type { TrustedComponent } from './tee/host.js';
import { Broker } from './broker/broker.js';
import type { AuthHooks } from './auth/hooks.js';
import { createLogger, type Logger } from './log.js';
import { openPersistence, type Persistence } from './persistence/index.js';
import { listenTcp } from './transport/tcp.js';
import { listenTls, type TlsSettings } from './transport/tls.js';
import { listenWebSocket } from './transport/websocket.js';
import { ensureDevCertificates } from './transport/dev-certs.js';
import type { Listener, TransportErrorHandler } from './transport/types.js';

export interface RunningBroker {
  readonly broker: Broker;
  /** The trusted component and what hangs on it; undefined when `tee` is null in the config. */
  readonly tee: TrustedComponent | undefined;
  readonly protection: Protection | undefined;
  readonly listeners: readonly Listener[];
  readonly log: Logger;
  /** Port of the first listener of the given kind. */
  port(kind: Listener['transport']): number | undefined;
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  auth?: AuthHooks;
}

async function tlsSettings(cfg: TlsListenerConfig, dataDir: string, log: Logger): Promise<TlsSettings> {
  if (cfg.cert && cfg.key) {
    return {
      cert: readFileSync(cfg.cert),
      key: readFileSync(cfg.key),
      ca: cfg.ca ? readFileSync(cfg.ca) : undefined,
      clientCerts: cfg.ca ? cfg.clientCerts : 'none',
      identityFrom: cfg.identityFrom,
    };
  }
  const dev = await ensureDevCertificates(dataDir);
  if (dev.created) log.warn({ caCert: dev.caCert }, 'no TLS certificate configured: created a self-signed development CA and server certificate (not for production)');
  else log.info({ caCert: dev.caCert }, 'using the development CA and server certificate from the data folder');
  return {
    cert: readFileSync(dev.serverCert),
    key: readFileSync(dev.serverKey),
    ca: readFileSync(cfg.ca ?? dev.caCert),
    clientCerts: cfg.clientCerts,
    identityFrom: cfg.identityFrom,
  };
}

export async function startBroker(config: BrokerConfig, options: StartOptions = {}): Promise<RunningBroker> {
  const log = options.log ?? createLogger(config.logLevel);
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  const persistence: Persistence | undefined = config.persistence ? await openPersistence(dataDir, config.persistence, log) : undefined;
  const broker = new Broker(config, log, { auth: options.auth, ...persistence?.brokerOptions });
  let dataTee: DataTee | undefined;
  let protection: Protection | undefined;
  if (config.tee) {
    dataTee = await openDataTee(dataDir, {
      backend: config.tee.backend,
      cacheSize: config.tee.cacheSize,
      openEnrolment: config.tee.openEnrolment,
      scheduling: config.tee.scheduling,
      onWarning: (message) => log.warn(message),
    });
    const info = await dataTee.tee.info();
    protection = attachProtection(broker, dataTee.tee, config.protect, log);
    log.info({ backend: config.tee.backend, teePid: dataTee.tee.pid, fingerprint: info.fingerprint, protect: config.protect }, 'trusted component ready');
    if (info.policySerial === 0 && config.protect.length > 0) {
      log.warn('no operator-signed policy loaded: every enrolled identity may publish and read every protected topic');
    }
  } else if (config.protect.length > 0) {
    throw new ConfigError('protect', 'protected topics need the trusted component (tee must not be null)');
  }
  // after the delivery stage is attached: restored protected messages are re-wrapped on resume
  persistence?.restore(broker);
  const handler = broker.handleStream.bind(broker);
  const onError: TransportErrorHandler = (err, remote) => log.debug({ remote, err: err.message }, 'transport refused a connection');
  const maxConnections = config.limits.maxConnections;
  const listeners: Listener[] = [];
  try {
    if (config.port !== null) {
      listeners.push(await listenTcp({ host: config.host, port: config.port, maxConnections, onError }, handler));
    }
    if (config.tls) {
      const tls = await tlsSettings(config.tls, dataDir, log);
      listeners.push(await listenTls({ host: config.tls.host ?? config.host, port: config.tls.port, maxConnections, onError, ...tls }, handler));
    }
    if (config.websocket) {
      const ws = config.websocket;
      listeners.push(await listenWebSocket({ host: ws.host ?? config.host, port: ws.port, path: ws.path, maxConnections, onError }, handler));
    }
  } catch (err) {
    await Promise.allSettled(listeners.map((l) => l.close()));
    await broker.close();
    await persistence?.close();
    await dataTee?.close();
    throw err;
  }
  for (const l of listeners) log.info({ transport: l.transport, host: l.host, port: l.port }, 'listening');
  if (config.allowAnonymous) log.warn('anonymous clients are allowed (development default; set "allowAnonymous": false in the config to refuse them)');

  let closing: Promise<void> | undefined;
  return {
    broker,
    tee: dataTee?.tee,
    protection,
    listeners,
    log,
    port: (kind) => listeners.find((l) => l.transport === kind)?.port,
    close() {
      closing ??= (async () => {
        await broker.close();
        await Promise.allSettled(listeners.map((l) => l.close()));
        await persistence?.close();
        await dataTee?.close();
      })();
      return closing;
    },
  };
}
