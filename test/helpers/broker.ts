/**
 * Shared helpers for black-box broker tests: a broker on ephemeral ports in a temp data folder,
 * MQTT.js clients that are closed with it, a message inbox, and bounded waits (no sleeps).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as mqttConnect, type IClientOptions, type IClientPublishOptions, type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import type { QoS } from 'mqtt-packet';
import { defaultConfig, type BrokerConfig } from '../../src/config.js';
import { startBroker, type RunningBroker, type StartOptions } from '../../src/server.js';
import type { Broker } from '../../src/broker/broker.js';
import { issueClientCertificate, type CertificateAndKey } from '../../src/transport/dev-certs.js';
import { RawClient } from './raw-client.js';
import { WAIT_MS, withTimeout } from './wait.js';

export { elapse, waitUntil, WAIT_MS, withTimeout } from './wait.js';
export { codes, RawClient } from './raw-client.js';

export interface TestBroker {
  readonly running: RunningBroker;
  readonly broker: Broker;
  readonly config: BrokerConfig;
  readonly dataDir: string;
  /** Plain TCP port. */
  readonly port: number;
  /** `mqtt://127.0.0.1:PORT`. */
  readonly url: string;
  /** An MQTT.js client on the plain listener (or `url`), connected; closed with the broker. */
  mqtt(options?: IClientOptions, url?: string): Promise<MqttClient>;
  /** A new MQTT.js client subscribed to `filter`; returns its inbox. */
  watch(filter: string, options?: { qos?: QoS; protocolVersion?: 4 | 5 }): Promise<Inbox>;
  /** Publishes through a shared MQTT.js v5 client and waits for the acknowledgement (QoS 1 by default). */
  publish(topic: string, payload: string | Buffer, options?: IClientPublishOptions): Promise<void>;
  /** A raw socket on the plain listener speaking `version`; closed with the broker. */
  raw(version?: 4 | 5): Promise<RawClient>;
  close(): Promise<void>;
}

/** A broker on 127.0.0.1, port 0, silent, with a fresh temp data folder; `tune` edits the config. */
export async function startTestBroker(tune?: (config: BrokerConfig) => void, options?: StartOptions): Promise<TestBroker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-broker-test-'));
  // The trusted component (protected topics) has tests of its own; the broker core runs without it.
  const config: BrokerConfig = { ...defaultConfig(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent', tee: null };
  tune?.(config);
  let running: RunningBroker;
  try {
    running = await startBroker(config, options);
  } catch (err) {
    rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
  const port = running.port('tcp') ?? 0;
  const url = `mqtt://127.0.0.1:${port}`;
  const mqttClients: MqttClient[] = [];
  const rawClients: RawClient[] = [];
  let publisher: Promise<MqttClient> | undefined;
  return {
    running,
    broker: running.broker,
    config,
    dataDir,
    port,
    url,
    mqtt: (options = {}, target = url) => connectMqtt(target, options, mqttClients),
    async watch(filter, { qos = 1, protocolVersion = 5 } = {}) {
      const client = await connectMqtt(url, { protocolVersion }, mqttClients);
      await client.subscribeAsync(filter, { qos });
      return inboxOf(client);
    },
    async publish(topic, payload, options = {}) {
      publisher ??= connectMqtt(url, { protocolVersion: 5 }, mqttClients);
      await (await publisher).publishAsync(topic, payload, { qos: 1, ...options });
    },
    async raw(version = 4) {
      const client = await RawClient.open(port, version);
      rawClients.push(client);
      return client;
    },
    async close() {
      for (const c of rawClients) c.destroy();
      await Promise.allSettled(mqttClients.map((c) => c.endAsync(true)));
      await running.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

const inboxes = new WeakMap<MqttClient, Inbox>();
const connacks = new WeakMap<MqttClient, IConnackPacket>();

/**
 * Connects MQTT.js without automatic reconnection (a test sees every disconnect) and records the
 * client in `track` so it can be closed later. Messages are recorded from the first byte on (a
 * resumed session's queue arrives right behind CONNACK): read them with `inboxOf(client)`.
 */
export function connectMqtt(url: string, options: IClientOptions = {}, track?: MqttClient[]): Promise<MqttClient> {
  const client = mqttConnect(url, { reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options });
  track?.push(client);
  inboxes.set(client, new Inbox(client));
  const connected = new Promise<MqttClient>((resolve, reject) => {
    client.once('connect', (connack) => {
      connacks.set(client, connack);
      resolve(client);
    });
    // Kept for the client's life: a later error (e.g. a DISCONNECT from the broker) must not be an
    // unhandled 'error' event that crashes the test process; after CONNACK rejecting is a no-op.
    client.on('error', reject);
    client.once('close', () => reject(new Error(`connection to ${url} closed before CONNACK`)));
  });
  return withTimeout(connected, WAIT_MS + 1000, `MQTT.js to connect to ${url}`);
}

/** Every message the client has received, in order (recording starts before CONNECT). */
export function inboxOf(client: MqttClient): Inbox {
  let inbox = inboxes.get(client);
  if (!inbox) inboxes.set(client, (inbox = new Inbox(client)));
  return inbox;
}

/** The CONNACK the client was accepted with. */
export function connackOf(client: MqttClient): IConnackPacket {
  const connack = connacks.get(client);
  assert.ok(connack, 'client was connected with connectMqtt');
  return connack;
}

export interface Received {
  topic: string;
  payload: string;
  packet: IPublishPacket;
}

/** Records every message an MQTT.js client receives, in order; `next()` awaits the next one. */
export class Inbox {
  readonly messages: Received[] = [];
  private read = 0;
  private waiter: (() => void) | undefined;

  constructor(client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.messages.push({ topic, payload: payload.toString(), packet });
      this.waiter?.();
    });
  }

  /** The next message not yet returned by `next()`. */
  async next(what = 'a message', ms = WAIT_MS): Promise<Received> {
    if (this.read >= this.messages.length) {
      await withTimeout(new Promise<void>((resolve) => (this.waiter = resolve)), ms, what);
      this.waiter = undefined;
    }
    return this.messages[this.read++]!;
  }

  /** The next `n` messages. */
  async take(n: number, what = `${n} messages`): Promise<Received[]> {
    const out: Received[] = [];
    for (let i = 0; i < n; i++) out.push(await this.next(what));
    return out;
  }
}

let counter = 0;
/** A topic (or client id) no other test uses. */
export function unique(prefix: string): string {
  counter++;
  return `${prefix}-${process.pid}-${counter}`;
}

export interface ClientCertificate extends CertificateAndKey {
  certPath: string;
  keyPath: string;
}

export interface DevPki {
  /** PEM of the development CA the broker created in its data folder. */
  caCert: string;
  caCertPath: string;
  /** A client certificate with subject CN `commonName`, signed by that CA, also written to files. */
  issue(commonName: string): Promise<ClientCertificate>;
}

/** The development CA of a broker started with TLS and no certificates configured. */
export function devPki(dataDir: string): DevPki {
  const caCertPath = join(dataDir, 'certs', 'ca.crt');
  const ca: CertificateAndKey = { cert: readFileSync(caCertPath, 'utf8'), key: readFileSync(join(dataDir, 'certs', 'ca.key'), 'utf8') };
  return {
    caCert: ca.cert,
    caCertPath,
    async issue(commonName) {
      const pair = await issueClientCertificate(ca, commonName);
      const base = join(dataDir, `client-${commonName.replace(/[^\w.-]/g, '_')}`);
      writeFileSync(`${base}.crt`, pair.cert);
      writeFileSync(`${base}.key`, pair.key, { mode: 0o600 });
      return { ...pair, certPath: `${base}.crt`, keyPath: `${base}.key` };
    },
  };
}
