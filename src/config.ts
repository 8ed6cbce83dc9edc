/** Broker configuration: defaults, JSON file loading, and validation that names the bad key. */
import { readFileSync } from 'node:fs';
import { isValidTopicFilter } from './mqtt/topic.js';
import { DEFAULT_KEY_CACHE_SIZE, type TeeScheduling } from './tee-client/host.js';

export interface AclRule {
  /** `allow` or `deny`; the first matching rule decides. */
  permission: 'allow' | 'deny';
  action: 'publish' | 'subscribe' | 'all';
  /** Topic filter the rule covers. */
  topic: string;
  /** Username the rule is for; `*` (default) = everyone, `$anonymous` = clients without one. */
  user?: string;
}

export interface TlsListenerConfig {
  port: number;
  host?: string;
  /** PEM files; all three absent = the development CA and certificate in the data folder. */
  cert?: string;
  key?: string;
  ca?: string;
  clientCerts: 'none' | 'optional' | 'required';
  identityFrom: 'cn' | 'san-dns' | 'san-email' | 'san-uri';
}

export interface WebSocketListenerConfig {
  port: number;
  host?: string;
  path: string;
}

/** The operations HTTP listener: Prometheus /metrics, /healthz, /readyz and the dashboard at /. */
export interface HttpConfig {
  port: number;
  /** Default 127.0.0.1: metrics and the dashboard are for the operator's host unless opened on purpose. */
  host: string;
  /** Users of the password file who may open the dashboard; empty = no login asked. */
  admins: string[];
}

export interface TeeConfig {
  /** 'process' (default): its own OS process; 'inline': inside the broker (tests, measurements only). */
  backend: 'process' | 'inline';
  /** Unsealed client keys kept in the trusted component's memory. */
  cacheSize: number;
  /**
   * Development only: provision the trusted component for enrolment without an operator-signed
   * token. Fixed at provisioning (first start): a provisioned component refuses to start when this
   * differs from how it was provisioned.
   */
  openEnrolment: boolean;
  /**
   * The operator's raw Ed25519 public key, 64 hex digits (`mqt-tz operator-key` prints it). Sealed
   * into the trusted component on its first start; later starts refuse another. null on the first
   * start: a development operator key is created in the data folder for the CLI.
   */
  operatorPublicKey: string | null;
  /** OS scheduling of the `process` backend on Linux: 'default' (the broker's own) or 'batch' (SCHED_BATCH: no wake-up preemption of the broker). */
  scheduling: TeeScheduling;
  /**
   * OS user the trusted child drops to when the broker starts as root (not the broker's `user`): it
   * then owns the state directory `<data>/tee` (mode 0700), and the broker's user can read neither
   * that nor the child's memory. null: the child runs as the broker does.
   */
  user: string | null;
  /** Unix socket of a standalone `mqt-tz tee serve` to use instead of a child process; null: spawn the child. */
  socket: string | null;
}

export interface PersistenceConfig {
  /** 'normal': commits survive a process crash or kill -9; 'full': also a power loss (an fsync per commit). */
  sync: 'normal' | 'full';
}

export interface Limits {
  /** Largest packet accepted from a client, bytes (announced as Maximum Packet Size). */
  maxPacketSize: number;
  /** Incoming QoS 2 messages a client may have unacknowledged (announced as Receive Maximum). */
  receiveMaximum: number;
  /** Outgoing QoS 1/2 messages in flight per session when the client does not say less. */
  maxInflight: number;
  /**
   * QoS 1/2 messages kept per session while offline or beyond the in-flight window (as mosquitto's
   * max_queued_messages: in-flight messages do not count); 0 = no limit.
   */
  maxQueuedMessages: number;
  /** Payload bytes of the messages kept that way per session (mosquitto's max_queued_bytes); 0 = no limit. */
  maxQueuedBytes: number;
  maxTopicLevels: number;
  maxConnections: number;
  /** Largest keep alive the broker allows, seconds (sent as Server Keep Alive to v5 clients asking for more). */
  maxKeepalive: number;
  /** Topic aliases a v5 client may use towards the broker. */
  topicAliasMaximum: number;
  /** Upper bound on a session's expiry interval, seconds. */
  maxSessionExpiry: number;
  /**
   * Sessions kept for disconnected clients; past it, the one offline longest ends as at its expiry
   * (its queue dropped, a waiting will published). 0 = no limit.
   */
  maxOfflineSessions: number;
  /**
   * Topics with a retained message; past it, a retained message for a topic without one is
   * routed but not kept (replacing or clearing one is always possible). 0 = no limit.
   */
  maxRetainedMessages: number;
  /** Seconds a new connection has to send CONNECT before it is closed. */
  connectTimeout: number;
  // Abuse limits (src/limits/); 0 = off.
  /** New connections per second per listener (a burst of as many at once); more are closed before CONNECT is read. */
  connectionRate: number;
  /** Open connections per source address. */
  maxConnectionsPerAddress: number;
  /** PUBLISH packets per second per client; past it the client's socket is not read until the budget refills. */
  publishRate: number;
  /** PUBLISH bytes (whole packets) per second per client, enforced the same way. */
  publishByteRate: number;
  /** More CONNECTs than this from one client id or one address within `flapWindow` ban both for `flapBan`. */
  flapConnects: number;
  /** Seconds over which `flapConnects` is counted. */
  flapWindow: number;
  /** Seconds a flapping client id and address stay banned. */
  flapBan: number;
}

export interface BrokerConfig {
  dataDir: string;
  host: string;
  /** Plain TCP port; null disables the plain listener. */
  port: number | null;
  tls: TlsListenerConfig | null;
  websocket: WebSocketListenerConfig | null;
  allowAnonymous: boolean;
  acl: AclRule[];
  /** Topic filters whose payloads are end-to-end protected (envelopes re-wrapped by the trusted component). */
  protect: string[];
  /** What a connection's identity is for the trusted component and the ACL. */
  identityFrom: 'client-id' | 'username' | 'certificate';
  /** The trusted component; null runs without one (no protected topics, no `$tee/` relay). */
  tee: TeeConfig | null;
  /** v5 SUBACK reason for a subscription the ACL refuses (0x87 Not authorized, or 0x80). */
  subscribeDeniedReason: 0x80 | 0x87;
  limits: Limits;
  /** Persistent sessions, their messages and retained messages in `DATA/broker-state.db`; null = memory only. */
  persistence: PersistenceConfig | null;
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
  /** mosquitto_passwd file; null = usernames are not checked (only certificates authenticate). */
  passwordFile: string | null;
  /** Operations HTTP listener; null = none. */
  http: HttpConfig | null;
  /** Seconds between `$SYS/broker/...` updates; 0 = none. */
  sysInterval: number;
  /** OS user the broker drops to after binding its listeners, when started as root (mosquitto's `user`); null: stays as started. */
  user: string | null;
}

export const defaultLimits: Limits = {
  maxPacketSize: 1024 * 1024,
  receiveMaximum: 32,
  maxInflight: 32,
  maxQueuedMessages: 20_000,
  maxQueuedBytes: 16 * 1024 * 1024,
  maxTopicLevels: 128,
  maxConnections: 100_000,
  maxKeepalive: 60,
  topicAliasMaximum: 16,
  maxSessionExpiry: 0xffffffff,
  maxOfflineSessions: 0,
  maxRetainedMessages: 0,
  connectTimeout: 10,
  connectionRate: 0,
  maxConnectionsPerAddress: 0,
  publishRate: 0,
  publishByteRate: 0,
  flapConnects: 0,
  flapWindow: 60,
  flapBan: 300,
};

/** The trusted component as the embedded default runs it: its own process, keys cached, no open enrolment. */
export function defaultTeeConfig(): TeeConfig {
  return { backend: 'process', cacheSize: DEFAULT_KEY_CACHE_SIZE, openEnrolment: false, operatorPublicKey: null, scheduling: 'default', user: null, socket: null };
}

export function defaultConfig(): BrokerConfig {
  return {
    dataDir: 'data',
    host: '0.0.0.0',
    port: 1883,
    tls: null,
    websocket: null,
    allowAnonymous: true,
    acl: [],
    protect: [],
    identityFrom: 'client-id',
    tee: defaultTeeConfig(),
    subscribeDeniedReason: 0x87,
    limits: { ...defaultLimits },
    persistence: { sync: 'normal' },
    logLevel: 'info',
    passwordFile: null,
    http: null,
    sysInterval: 10,
    user: null,
  };
}

export class ConfigError extends Error {
  constructor(readonly key: string, problem: string) {
    super(`config: ${key}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function integer(v: unknown, key: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new ConfigError(key, `must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

function string(v: unknown, key: string): string {
  if (typeof v !== 'string' || v.length === 0) throw new ConfigError(key, `must be a non-empty string, got ${JSON.stringify(v)}`);
  return v;
}

function nullableString(v: unknown, key: string): string | null {
  return v === null ? null : string(v, key);
}

function oneOf<T extends string | number>(v: unknown, key: string, allowed: readonly T[]): T {
  if (!allowed.includes(v as T)) {
    throw new ConfigError(key, `must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

function checkKeys(obj: Json, key: string, known: readonly string[]): void {
  for (const k of Object.keys(obj)) {
    if (!known.includes(k)) throw new ConfigError(key ? `${key}.${k}` : k, `unknown key (known: ${known.join(', ')})`);
  }
}

function parseTls(v: unknown, key: string): TlsListenerConfig | null {
  if (v === null || v === false) return null;
  if (!isObject(v)) throw new ConfigError(key, 'must be an object or null');
  checkKeys(v, key, ['port', 'host', 'cert', 'key', 'ca', 'clientCerts', 'identityFrom']);
  const cfg: TlsListenerConfig = {
    port: integer(v.port ?? 8883, `${key}.port`, 0, 65535),
    clientCerts: oneOf(v.clientCerts ?? 'optional', `${key}.clientCerts`, ['none', 'optional', 'required'] as const),
    identityFrom: oneOf(v.identityFrom ?? 'cn', `${key}.identityFrom`, ['cn', 'san-dns', 'san-email', 'san-uri'] as const),
  };
  if (v.host !== undefined) cfg.host = string(v.host, `${key}.host`);
  for (const f of ['cert', 'key', 'ca'] as const) if (v[f] !== undefined) cfg[f] = string(v[f], `${key}.${f}`);
  if ((cfg.cert === undefined) !== (cfg.key === undefined)) {
    throw new ConfigError(`${key}.cert`, 'cert and key must be given together');
  }
  return cfg;
}

function parseAcl(v: unknown): AclRule[] {
  if (!Array.isArray(v)) throw new ConfigError('acl', 'must be an array of rules');
  return v.map((r, i) => {
    const key = `acl[${i}]`;
    if (!isObject(r)) throw new ConfigError(key, 'must be an object');
    checkKeys(r, key, ['permission', 'action', 'topic', 'user']);
    const topic = string(r.topic, `${key}.topic`);
    if (!isValidTopicFilter(topic)) throw new ConfigError(`${key}.topic`, `not a valid topic filter: ${JSON.stringify(topic)}`);
    const rule: AclRule = {
      permission: oneOf(r.permission, `${key}.permission`, ['allow', 'deny'] as const),
      action: oneOf(r.action ?? 'all', `${key}.action`, ['publish', 'subscribe', 'all'] as const),
      topic,
    };
    if (r.user !== undefined) rule.user = string(r.user, `${key}.user`);
    return rule;
  });
}

export function parseFilters(v: unknown, key: string): string[] {
  if (!Array.isArray(v)) throw new ConfigError(key, 'must be an array of topic filters');
  return v.map((f, i) => {
    const filter = string(f, `${key}[${i}]`);
    if (!isValidTopicFilter(filter) || filter.startsWith('$share/')) throw new ConfigError(`${key}[${i}]`, `not a valid topic filter: ${JSON.stringify(filter)}`);
    return filter;
  });
}

/** An operator public key in the config or on the command line: 64 hex digits (or null: none configured). */
export function parseOperatorPublicKeyHex(v: unknown, key: string): string | null {
  if (v === null) return null;
  if (typeof v !== 'string' || !/^[0-9a-fA-F]{64}$/.test(v)) throw new ConfigError(key, 'must be the 64 hex digits of the operator\'s raw Ed25519 public key (`mqt-tz operator-key` prints it)');
  return v.toLowerCase();
}

function parseTee(v: unknown, base: TeeConfig | null): TeeConfig | null {
  if (v === null || v === false) return null;
  if (!isObject(v)) throw new ConfigError('tee', 'must be an object or null');
  checkKeys(v, 'tee', ['backend', 'cacheSize', 'openEnrolment', 'operatorPublicKey', 'scheduling', 'user', 'socket']);
  const d = base ?? defaultTeeConfig();
  const cfg: TeeConfig = {
    backend: oneOf(v.backend ?? d.backend, 'tee.backend', ['process', 'inline'] as const),
    cacheSize: integer(v.cacheSize ?? d.cacheSize, 'tee.cacheSize', 1, 10_000_000),
    openEnrolment: d.openEnrolment,
    operatorPublicKey: v.operatorPublicKey === undefined ? d.operatorPublicKey : parseOperatorPublicKeyHex(v.operatorPublicKey, 'tee.operatorPublicKey'),
    scheduling: oneOf(v.scheduling ?? d.scheduling, 'tee.scheduling', ['batch', 'default'] as const),
    user: v.user === undefined ? d.user : nullableString(v.user, 'tee.user'),
    socket: v.socket === undefined ? d.socket : nullableString(v.socket, 'tee.socket'),
  };
  if (v.openEnrolment !== undefined) {
    if (typeof v.openEnrolment !== 'boolean') throw new ConfigError('tee.openEnrolment', 'must be true or false');
    cfg.openEnrolment = v.openEnrolment;
  }
  return cfg;
}

function parsePersistence(v: unknown): PersistenceConfig | null {
  if (v === false || v === null) return null;
  if (v === true) return { sync: 'normal' };
  if (!isObject(v)) throw new ConfigError('persistence', `must be false or an object such as {"sync": "normal"}, got ${JSON.stringify(v)}`);
  checkKeys(v, 'persistence', ['sync']);
  return { sync: oneOf(v.sync ?? 'normal', 'persistence.sync', ['normal', 'full'] as const) };
}

const limitRanges: Record<keyof Limits, [number, number]> = {
  maxPacketSize: [64, 268_435_460],
  receiveMaximum: [1, 65535],
  maxInflight: [1, 65535],
  maxQueuedMessages: [0, 10_000_000],
  maxQueuedBytes: [0, 2 ** 40],
  maxTopicLevels: [1, 65535],
  maxConnections: [1, 10_000_000],
  maxKeepalive: [1, 65535],
  topicAliasMaximum: [0, 65535],
  maxSessionExpiry: [0, 0xffffffff],
  maxOfflineSessions: [0, 100_000_000],
  maxRetainedMessages: [0, 100_000_000],
  connectTimeout: [1, 3600],
  connectionRate: [0, 1_000_000],
  maxConnectionsPerAddress: [0, 10_000_000],
  publishRate: [0, 10_000_000],
  publishByteRate: [0, 2 ** 40],
  flapConnects: [0, 1_000_000],
  flapWindow: [1, 86_400],
  flapBan: [1, 31_536_000],
};

/** Overlays a parsed JSON object on the defaults, throwing ConfigError on the first bad key. */
export function parseConfig(raw: unknown, base: BrokerConfig = defaultConfig()): BrokerConfig {
  if (!isObject(raw)) throw new ConfigError('(root)', 'must be a JSON object');
  checkKeys(raw, '', ['dataDir', 'host', 'port', 'tls', 'websocket', 'allowAnonymous', 'acl', 'protect', 'identityFrom', 'tee', 'subscribeDeniedReason', 'limits', 'persistence', 'logLevel', 'passwordFile', 'http', 'sysInterval', 'user']);
  const cfg: BrokerConfig = { ...base, limits: { ...base.limits } };
  if (raw.dataDir !== undefined) cfg.dataDir = string(raw.dataDir, 'dataDir');
  if (raw.host !== undefined) cfg.host = string(raw.host, 'host');
  if (raw.port !== undefined) cfg.port = raw.port === null ? null : integer(raw.port, 'port', 0, 65535);
  if (raw.tls !== undefined) cfg.tls = parseTls(raw.tls, 'tls');
  if (raw.websocket !== undefined) {
    const w = raw.websocket;
    if (w === null || w === false) cfg.websocket = null;
    else {
      if (!isObject(w)) throw new ConfigError('websocket', 'must be an object or null');
      checkKeys(w, 'websocket', ['port', 'host', 'path']);
      cfg.websocket = { port: integer(w.port ?? 8080, 'websocket.port', 0, 65535), path: w.path === undefined ? '/mqtt' : string(w.path, 'websocket.path') };
      if (w.host !== undefined) cfg.websocket.host = string(w.host, 'websocket.host');
    }
  }
  if (raw.allowAnonymous !== undefined) {
    if (typeof raw.allowAnonymous !== 'boolean') throw new ConfigError('allowAnonymous', 'must be true or false');
    cfg.allowAnonymous = raw.allowAnonymous;
  }
  if (raw.acl !== undefined) cfg.acl = parseAcl(raw.acl);
  if (raw.protect !== undefined) cfg.protect = parseFilters(raw.protect, 'protect');
  if (raw.identityFrom !== undefined) cfg.identityFrom = oneOf(raw.identityFrom, 'identityFrom', ['client-id', 'username', 'certificate'] as const);
  if (raw.tee !== undefined) cfg.tee = parseTee(raw.tee, base.tee);
  if (raw.subscribeDeniedReason !== undefined) {
    cfg.subscribeDeniedReason = oneOf(raw.subscribeDeniedReason, 'subscribeDeniedReason', [0x80, 0x87] as const);
  }
  if (raw.persistence !== undefined) cfg.persistence = parsePersistence(raw.persistence);
  if (raw.logLevel !== undefined) {
    cfg.logLevel = oneOf(raw.logLevel, 'logLevel', ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const);
  }
  if (raw.limits !== undefined) {
    if (!isObject(raw.limits)) throw new ConfigError('limits', 'must be an object');
    checkKeys(raw.limits, 'limits', Object.keys(limitRanges));
    for (const [k, [min, max]] of Object.entries(limitRanges) as [keyof Limits, [number, number]][]) {
      const v = raw.limits[k];
      if (v !== undefined) cfg.limits[k] = integer(v, `limits.${k}`, min, max);
    }
  }
  if (raw.passwordFile !== undefined) cfg.passwordFile = raw.passwordFile === null ? null : string(raw.passwordFile, 'passwordFile');
  if (raw.http !== undefined) cfg.http = parseHttp(raw.http);
  if (raw.sysInterval !== undefined) cfg.sysInterval = integer(raw.sysInterval, 'sysInterval', 0, 86_400);
  if (raw.user !== undefined) cfg.user = nullableString(raw.user, 'user');
  checkIsolation(cfg);
  return cfg;
}

/** Settings of the trusted component's isolation that contradict each other. */
export function checkIsolation(cfg: BrokerConfig): void {
  const tee = cfg.tee;
  if (tee === null) return;
  if (tee.socket !== null && tee.backend === 'inline') throw new ConfigError('tee.socket', 'a standalone service is used through the process backend, not inline');
  if (tee.socket !== null && tee.user !== null) throw new ConfigError('tee.user', 'the standalone service at tee.socket runs as the user its own start gives it (e.g. User= in its systemd unit): remove tee.user');
  if (tee.user !== null && tee.backend === 'inline') throw new ConfigError('tee.user', 'the inline backend runs inside the broker: use the process backend');
  if (tee.user !== null && tee.user === cfg.user) throw new ConfigError('tee.user', 'must be another user than the broker\'s "user": the point is that the broker cannot read the trusted state');
}

function parseHttp(v: unknown): HttpConfig | null {
  if (v === null || v === false) return null;
  if (!isObject(v)) throw new ConfigError('http', 'must be an object or null');
  checkKeys(v, 'http', ['port', 'host', 'admins']);
  const admins = v.admins ?? [];
  if (!Array.isArray(admins)) throw new ConfigError('http.admins', 'must be an array of usernames from the password file');
  return {
    port: integer(v.port ?? 8081, 'http.port', 0, 65535),
    host: v.host === undefined ? '127.0.0.1' : string(v.host, 'http.host'),
    admins: admins.map((a, i) => string(a, `http.admins[${i}]`)),
  };
}

export function loadConfigFile(path: string, base?: BrokerConfig): BrokerConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError('(file)', `cannot read ${path}: ${(err as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError('(file)', `${path} is not valid JSON: ${(err as Error).message}`);
  }
  return parseConfig(raw, base);
}
