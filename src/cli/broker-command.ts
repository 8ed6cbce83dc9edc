/** `mqt-tz broker`: start the broker with the embedded defaults, a config file, and flag overrides. */
import type { Command } from 'commander';
import { ConfigError, checkIsolation, defaultConfig, defaultTeeConfig, loadConfigFile, parseFilters, parseOperatorPublicKeyHex, type BrokerConfig } from '../config.js';
import { TeeError } from '../tee-client/host.js';
import { startBroker } from '../server.js';

interface BrokerFlags {
  port?: string;
  host?: string;
  tlsPort?: string;
  wsPort?: string;
  data?: string;
  config?: string;
  logLevel?: string;
  protect: string[];
  teeBackend?: string;
  teeScheduling?: string;
  openEnrolment?: boolean;
  passwordFile?: string;
  httpPort?: string;
  operatorPublicKey?: string;
  user?: string;
  teeUser?: string;
  teeSocket?: string;
}

function portFlag(value: string, flag: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new ConfigError(flag, `must be a port number from 0 to 65535, got ${JSON.stringify(value)}`);
  return n;
}

export function configFromFlags(flags: BrokerFlags): BrokerConfig {
  const cfg = flags.config ? loadConfigFile(flags.config) : defaultConfig();
  if (flags.data) cfg.dataDir = flags.data;
  if (flags.host) cfg.host = flags.host;
  if (flags.port !== undefined) cfg.port = portFlag(flags.port, '--port');
  if (flags.tlsPort !== undefined) {
    cfg.tls = { ...(cfg.tls ?? { clientCerts: 'optional', identityFrom: 'cn' }), port: portFlag(flags.tlsPort, '--tls-port') };
  }
  if (flags.wsPort !== undefined) cfg.websocket = { ...(cfg.websocket ?? { path: '/mqtt' }), port: portFlag(flags.wsPort, '--ws-port') };
  if (flags.protect.length > 0) cfg.protect = [...cfg.protect, ...parseFilters(flags.protect, '--protect')];
  if (flags.teeBackend !== undefined || flags.teeScheduling !== undefined || flags.openEnrolment || flags.operatorPublicKey !== undefined || flags.teeUser !== undefined || flags.teeSocket !== undefined) {
    const tee = { ...defaultTeeConfig(), ...cfg.tee };
    if (flags.teeBackend !== undefined) {
      if (flags.teeBackend !== 'process' && flags.teeBackend !== 'inline') throw new ConfigError('--tee-backend', `must be process or inline, got ${JSON.stringify(flags.teeBackend)}`);
      tee.backend = flags.teeBackend;
    }
    if (flags.teeScheduling !== undefined) {
      if (flags.teeScheduling !== 'batch' && flags.teeScheduling !== 'default') throw new ConfigError('--tee-scheduling', `must be batch or default, got ${JSON.stringify(flags.teeScheduling)}`);
      tee.scheduling = flags.teeScheduling;
    }
    if (flags.openEnrolment) tee.openEnrolment = true;
    if (flags.operatorPublicKey !== undefined) tee.operatorPublicKey = parseOperatorPublicKeyHex(flags.operatorPublicKey, '--operator-public-key');
    if (flags.teeUser !== undefined) tee.user = flags.teeUser;
    if (flags.teeSocket !== undefined) tee.socket = flags.teeSocket;
    cfg.tee = tee;
  }
  if (flags.user !== undefined) cfg.user = flags.user;
  if (flags.passwordFile !== undefined) cfg.passwordFile = flags.passwordFile;
  if (flags.httpPort !== undefined) cfg.http = { host: '127.0.0.1', admins: [], ...cfg.http, port: portFlag(flags.httpPort, '--http-port') };
  if (flags.logLevel) cfg.logLevel = flags.logLevel as BrokerConfig['logLevel'];
  checkIsolation(cfg);
  return cfg;
}

export function registerBrokerCommand(program: Command): void {
  program
    .command('broker')
    .description('start the MQTT broker (plain TCP on 1883 by default; TLS and WebSockets when configured)')
    .option('-p, --port <port>', 'plain TCP port (default 1883)')
    .option('--host <address>', 'address to listen on (default 0.0.0.0)')
    .option('--tls-port <port>', 'TLS port (e.g. 8883); without certificates in the config a development CA is created in the data folder')
    .option('--ws-port <port>', 'MQTT over WebSocket port (path /mqtt)')
    .option('-d, --data <dir>', 'data folder (default ./data)')
    .option('-c, --config <file>', 'JSON config file (see README)')
    .option('--protect <filter>', 'protect payloads on topics matching this filter end to end (repeatable)', (v: string, acc: string[]) => [...acc, v], [] as string[])
    .option('--tee-backend <backend>', 'trusted component backend: process (default) or inline')
    .option('--tee-scheduling <policy>', 'Linux scheduling of the trusted process: default (the broker\'s own) or batch (SCHED_BATCH: it never preempts the broker when woken; helps with few subscribers per message on a busy host)')
    .option('--password-file <file>', 'mosquitto_passwd file: usernames must match a password in it (make one with `mqt-tz passwd`)')
    .option('--http-port <port>', 'HTTP port for Prometheus /metrics, /healthz, /readyz and the dashboard (binds 127.0.0.1 unless http.host says otherwise)')
    .option('--open-enrolment', 'development only: provision the trusted component (first start) for enrolment without an operator-signed token; later starts must say the same')
    .option('--operator-public-key <hex>', 'the operator\'s Ed25519 public key (from `mqt-tz operator-key`), sealed on the first start; default: a development key created in the data folder')
    .option('--user <name>', 'started as root: drop to this OS user after binding the listeners (as mosquitto\'s user option)')
    .option('--tee-user <name>', 'started as root: run the trusted child as this OS user (not --user); it owns <data>/tee, mode 0700')
    .option('--tee-socket <path>', 'use the standalone trusted component of `mqt-tz tee serve` on this Unix socket instead of a child process')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent')
    .action(async (flags: BrokerFlags) => {
      let config: BrokerConfig;
      try {
        config = configFromFlags(flags);
      } catch (err) {
        if (err instanceof ConfigError) {
          process.stderr.write(`mqt-tz: ${err.message}\n`);
          process.exit(2);
        }
        throw err;
      }
      let running: Awaited<ReturnType<typeof startBroker>>;
      try {
        running = await startBroker(config);
      } catch (err) {
        // The trusted component refusing to start (another operator key or mode, tampered state) is the host's problem to fix, said in one line.
        if (!(err instanceof TeeError) && !(err instanceof ConfigError)) throw err;
        process.stderr.write(`mqt-tz: the broker did not start: ${err.message}\n`);
        process.exit(2);
      }
      const stop = (signal: string): void => {
        running.log.info({ signal }, 'shutting down');
        void running.close().then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
      // SIGHUP re-reads the config file and the files it names; a bad one keeps the old settings
      process.on('SIGHUP', () => {
        let next: BrokerConfig;
        try {
          next = configFromFlags(flags);
        } catch (err) {
          running.log.error({ error: (err as Error).message }, 'reload failed: keeping the previous settings');
          return;
        }
        void running.reload(next);
      });
    });
}
