/** Composes the layers into a running broker: config → listeners → broker (→ trusted component). */
import { mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { ConfigError, type BrokerConfig, type TlsListenerConfig } from './config.js';
import { endorsesCurrentCode, openDataTee, TEE_STATE_DIR, type DataTee } from './protect/operator.js';
import { planPrivileges } from './ops/privileges.js';
import { makeProtection, type Protection } from './protect/attach.js';
import { isReportedAttempt, type TrustedComponent } from './tee-client/host.js';
import { Broker, REFUSAL_SLOTS } from './broker/broker.js';
import type { AuthHooks } from './auth/hooks.js';
import type { BrokerExtension } from './broker/extension.js';
import { createLogger, type Logger } from './log.js';
import { openPersistence, type Persistence } from './persistence/index.js';
import { listenTcp } from './transport/tcp.js';
import { listenTls, type TlsListener, type TlsSettings } from './transport/tls.js';
import { AclAuth } from './auth/acl.js';
import { PasswordFile } from './auth/password-file.js';
import { PasswordLogins } from './auth/password-logins.js';
import { reloadSettings, type ReloadResult } from './ops/reload.js';
import { startOpsHttp, type OpsHttp } from './ops/http-server.js';
import { startSysTopics, type SysTopics } from './ops/sys-topics.js';
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
  /** The operations HTTP listener (metrics, health, dashboard); undefined when `http` is null. */
  readonly http: OpsHttp | undefined;
  /** The password file in use (the dashboard's logins check it too). */
  readonly passwords: PasswordLogins;
  /**
   * Applies what can change live from `next` (password file, ACL, anonymous access, TLS
   * certificates, limits, log level) and logs the outcome; on any error nothing changes.
   */
  reload(next: BrokerConfig): Promise<ReloadResult>;
  close(): Promise<void>;
}

export interface StartOptions {
  log?: Logger;
  auth?: AuthHooks;
  /** The broker's extension when `tee` is null (with it, the protected topics are the extension). */
  extension?: BrokerExtension;
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

function packageVersion(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

export async function startBroker(config: BrokerConfig, options: StartOptions = {}): Promise<RunningBroker> {
  const log = options.log ?? createLogger(config.logLevel);
  const dataDir = resolve(config.dataDir);
  mkdirSync(dataDir, { recursive: true });
  if (config.http && config.http.admins.length > 0 && config.passwordFile === null) {
    throw new ConfigError('http.admins', 'dashboard admins log in with the password file: set passwordFile too');
  }
  let passwordFile: PasswordFile | undefined;
  try {
    if (config.passwordFile !== null) passwordFile = PasswordFile.load(config.passwordFile);
  } catch (err) {
    throw new ConfigError('passwordFile', (err as Error).message);
  }
  const passwords = new PasswordLogins(passwordFile);
  const aclAuth = options.auth ? undefined : new AclAuth(config.allowAnonymous, config.acl, passwords);
  const privileges = planPrivileges(config, dataDir, join(dataDir, TEE_STATE_DIR), log);
  const persistence: Persistence | undefined = config.persistence ? await openPersistence(dataDir, config.persistence, log) : undefined;
  if (config.tee && options.extension) throw new ConfigError('tee', 'the trusted component brings the broker\'s extension: set tee to null to give one of its own');
  let dataTee: DataTee | undefined;
  let protection: Protection | undefined;
  if (config.tee) {
    // The broker asks for what its config says and the trusted component compares it with what it
    // sealed at provisioning; it never holds the operator's private key.
    const operatorPublicKey = config.tee.operatorPublicKey;
    dataTee = await openDataTee(dataDir, {
      backend: config.tee.backend,
      cacheSize: config.tee.cacheSize,
      enrolmentMode: config.tee.openEnrolment ? 'open' : 'token',
      build: 'production',
      operatorPublicKey: operatorPublicKey === null ? undefined : Buffer.from(operatorPublicKey, 'hex'),
      createDevOperatorKey: operatorPublicKey === null,
      scheduling: config.tee.scheduling,
      channel: privileges.teeChannel,
      onWarning: (message) => log.warn(message),
      onRestart: {
        lost: (what) => log.error({ what }, 'trusted component lost: protected messages are refused until it is started again'),
        restored: (teePid, attempts) => log.warn({ teePid, attempts }, 'trusted component started again'),
        failed: (err, attempt) => {
          if (isReportedAttempt(attempt)) log.warn({ attempt, err: err.message }, 'trusted component did not start again; retrying');
        },
        gaveUp: (reason) => log.error({ reason }, 'trusted component not started again'),
      },
    });
    const info = await dataTee.tee.info();
    protection = makeProtection(dataTee.tee, config.protect, log);
    log.info({ backend: config.tee.backend, teePid: dataTee.tee.pid, fingerprint: info.fingerprint, protect: config.protect }, 'trusted component ready');
    if (info.endorsement === null || !endorsesCurrentCode(info)) {
      log.warn('the trusted component carries no operator endorsement of its current keys and code: clients that pin the operator key refuse it until the operator runs `mqt-tz tee endorse`');
    }
  } else if (config.protect.length > 0) {
    throw new ConfigError('protect', 'protected topics need the trusted component (tee must not be null)');
  }
  const broker = new Broker(config, log, { auth: options.auth ?? aclAuth, extension: protection?.extension ?? options.extension, ...persistence?.brokerOptions });
  // restored protected messages stay in the publisher's form, to be re-wrapped on resume
  persistence?.restore(broker);
  const handler = broker.handleStream.bind(broker);
  const onError: TransportErrorHandler = (err, remote) => log.debug({ remote, err: err.message }, 'transport refused a connection');
  // room past the broker's limit to read CONNECTs it refuses with a reason (v5: CONNACK 0x97)
  const maxConnections = config.limits.maxConnections + REFUSAL_SLOTS;
  const listeners: Listener[] = [];
  const observed = { broker, tee: dataTee?.tee, protection, passwords, commitLatency: persistence && (() => persistence.journal.commitLatency.snapshot()) };
  let http: OpsHttp | undefined;
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
    if (config.http) http = await startOpsHttp(observed, { ...config.http, passwords, listening: () => listeners.length > 0, log });
    privileges.dropAfterBinding();
  } catch (err) {
    await http?.close();
    await Promise.allSettled(listeners.map((l) => l.close()));
    await broker.close();
    await persistence?.close();
    await dataTee?.close();
    throw err;
  }
  for (const l of listeners) log.info({ transport: l.transport, host: l.host, port: l.port }, 'listening');
  const sys: SysTopics | undefined = config.sysInterval > 0 ? startSysTopics(observed, config.sysInterval, packageVersion()) : undefined;
  if (http) log.info({ transport: 'http', host: http.host, port: http.port, admins: config.http?.admins }, 'listening');
  if (config.allowAnonymous) log.warn('anonymous clients are allowed (development default; set "allowAnonymous": false in the config to refuse them)');

  let closing: Promise<void> | undefined;
  return {
    broker,
    tee: dataTee?.tee,
    protection,
    listeners,
    log,
    port: (kind) => listeners.find((l) => l.transport === kind)?.port,
    passwords,
    http,
    async reload(next) {
      const tls = listeners.find((l): l is TlsListener => l.transport === 'tls');
      const result = await reloadSettings({ config, auth: aclAuth, passwords, tls, tlsFiles: (c) => tlsSettings(c.tls!, dataDir, log) }, next);
      if (!result.ok) log.error({ error: result.error }, 'reload failed: keeping the previous settings');
      else {
        log.level = config.logLevel;
        log.info({ passwordFile: config.passwordFile, users: passwords.file?.size ?? 0, aclRules: config.acl.length }, 'reloaded password file, ACL, TLS certificates and limits');
        if (result.restartNeeded.length > 0) log.warn({ keys: result.restartNeeded }, 'changed settings that apply only after a restart');
      }
      return result;
    },
    close() {
      closing ??= (async () => {
        sys?.stop();
        await http?.close();
        await broker.close();
        await Promise.allSettled(listeners.map((l) => l.close()));
        await persistence?.close();
        await dataTee?.close();
      })();
      return closing;
    },
  };
}
