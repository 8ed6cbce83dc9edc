/**
 * Session queue limits: maxQueuedMessages and maxQueuedBytes bound what waits beyond the in-flight
 * window (as mosquitto's max_queued_messages / max_queued_bytes); what a full queue drops is
 * counted and logged once per burst.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { IConnectPacket, Packet } from 'mqtt-packet';
import { pino } from 'pino';
import { defaultConfig, type BrokerConfig } from '../../src/config.js';
import { startBroker, type RunningBroker } from '../../src/server.js';
import { connectMqtt, unique, waitUntil } from '../helpers/broker.js';
import { RawClient } from '../helpers/raw-client.js';

interface LogLine {
  level: number;
  msg: string;
  clientId?: string;
}

let running: RunningBroker;
let config: BrokerConfig;
let dataDir: string;
let port: number;
let publisher: MqttClient;
const logs: LogLine[] = [];
const mqttClients: MqttClient[] = [];
const rawClients: RawClient[] = [];

before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-queue-test-'));
  config = { ...defaultConfig(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'warn', tee: null };
  const log = pino({ level: 'warn' }, { write: (line: string) => void logs.push(JSON.parse(line) as LogLine) });
  running = await startBroker(config, { log });
  port = running.port('tcp') ?? 0;
  publisher = await connectMqtt(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5 }, mqttClients);
});

after(async () => {
  for (const c of rawClients) c.destroy();
  await Promise.allSettled(mqttClients.map((c) => c.endAsync(true)));
  await running.close();
  rmSync(dataDir, { recursive: true, force: true });
});

beforeEach(() => {
  // each test sets the limits it is about; sessions read them when they queue
  config.limits.maxInflight = 32;
  config.limits.maxQueuedMessages = 0;
  config.limits.maxQueuedBytes = 0;
});

async function raw(version: 4 | 5): Promise<RawClient> {
  const c = await RawClient.open(port, version);
  rawClients.push(c);
  return c;
}

const dropped = (): number => running.broker.counters.dropped;
const dropWarnings = (clientId: string): LogLine[] => logs.filter((l) => l.clientId === clientId && l.msg.includes('queue full'));

/** Publishes each payload at QoS 1, one after the other (each routed before the next is sent). */
async function publishAll(topic: string, payloads: string[]): Promise<void> {
  for (const p of payloads) await publisher.publishAsync(topic, p, { qos: 1 });
}

/** Every packet the broker sends before it answers a PINGREQ sent now (a barrier, no sleep). */
async function untilPong(c: RawClient): Promise<Packet[]> {
  c.send({ cmd: 'pingreq' });
  const got: Packet[] = [];
  for (let p = await c.next(); p.cmd !== 'pingresp'; p = await c.next()) got.push(p);
  return got;
}

/** Acknowledges every PUBLISH as it comes until the barrier; returns the payloads in order. */
async function drainAll(c: RawClient): Promise<string[]> {
  const payloads: string[] = [];
  for (;;) {
    const got = await untilPong(c);
    if (got.length === 0) return payloads;
    for (const p of got) {
      assert.equal(p.cmd, 'publish');
      payloads.push(String(p.payload));
      c.send({ cmd: 'puback', messageId: p.messageId });
    }
  }
}

/** A v3.1.1 persistent session subscribed at QoS 1 to a fresh topic, its client gone. */
async function offlineSubscriber(name: string): Promise<{ clientId: string; topic: string; connect: Partial<IConnectPacket> }> {
  const clientId = unique(name);
  const topic = unique(`queue/${name}`);
  const connect = { clientId, clean: false };
  const c = await raw(4);
  await c.connect(connect);
  await c.subscribe(topic, 1);
  c.send({ cmd: 'disconnect' });
  await c.closed;
  await waitUntil(() => !running.broker.clients.has(clientId), `${clientId} is disconnected`);
  return { clientId, topic, connect };
}

const range = (prefix: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${prefix}${i}`);

test('an offline session keeps maxQueuedMessages QoS 1 messages; the rest are dropped, counted, and logged once', async () => {
  config.limits.maxQueuedMessages = 3;
  const { clientId, topic, connect } = await offlineSubscriber('count');
  const before = dropped();
  await publishAll(topic, range('m', 7));
  assert.equal(dropped() - before, 4, 'four deliveries counted as dropped');
  assert.equal(dropWarnings(clientId).length, 1, 'one warning for the whole burst, not one per message');
  const back = await raw(4);
  assert.equal((await back.connect(connect)).sessionPresent, true);
  assert.deepEqual(await drainAll(back), ['m0', 'm1', 'm2'], 'the oldest three were kept, in order');
});

test('maxQueuedBytes stops queueing once the queued payload bytes reach it', async () => {
  config.limits.maxQueuedBytes = 10;
  const { clientId, topic, connect } = await offlineSubscriber('bytes');
  const before = dropped();
  // 4-byte payloads: queued at 0, 4 and 8 bytes; at 12 bytes (>= 10) the rest are dropped
  await publishAll(topic, ['b000', 'b001', 'b002', 'b003', 'b004']);
  assert.equal(dropped() - before, 2);
  assert.equal(dropWarnings(clientId).length, 1);
  const back = await raw(4);
  await back.connect(connect);
  assert.deepEqual(await drainAll(back), ['b000', 'b001', 'b002']);
});

test('messages in flight do not count against maxQueuedMessages: an online client gets Receive Maximum + maxQueuedMessages without loss', async () => {
  config.limits.maxQueuedMessages = 3;
  const topic = unique('queue/online');
  const clientId = unique('online');
  const c = await raw(5);
  await c.connect({ clientId, properties: { receiveMaximum: 2 } });
  await c.subscribe(topic, 1);
  const before = dropped();
  await publishAll(topic, range('m', 6));
  assert.equal(dropped() - before, 1, 'only the sixth (2 in flight + 3 queued before it) is dropped');
  assert.deepEqual(await drainAll(c), range('m', 5));
  assert.equal(dropWarnings(clientId).length, 1);
});

test('dropping is logged again for a new burst once the queue has drained, and not in between', async () => {
  config.limits.maxQueuedMessages = 2;
  const topic = unique('queue/bursts');
  const clientId = unique('bursts');
  const c = await raw(4);
  config.limits.maxInflight = 1; // v3.1.1: the broker's in-flight window for this client
  await c.connect({ clientId });
  await c.subscribe(topic, 1);
  const before = dropped();
  await publishAll(topic, range('a', 6)); // 1 in flight, 2 queued, 3 dropped
  assert.equal(dropWarnings(clientId).length, 1);
  assert.deepEqual(await drainAll(c), range('a', 3));
  await publishAll(topic, range('b', 5)); // a second burst: 1 in flight, 2 queued, 2 dropped
  assert.equal(dropped() - before, 5);
  assert.equal(dropWarnings(clientId).length, 2, 'one warning per burst');
  assert.deepEqual(await drainAll(c), range('b', 3));
});

test('with both limits 0 nothing is dropped', async () => {
  const { topic, connect } = await offlineSubscriber('unbounded');
  const before = dropped();
  await publishAll(topic, range('u', 20));
  assert.equal(dropped(), before);
  const back = await raw(4);
  await back.connect(connect);
  assert.deepEqual(await drainAll(back), range('u', 20));
});
