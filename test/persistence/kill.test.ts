/**
 * Black box, real processes: the broker CLI is killed with SIGKILL at random points under QoS 1 and
 * QoS 2 traffic to an online and an offline persistent subscriber, several times, and restarted on
 * the same data folder. Every message the broker acknowledged must arrive; at QoS 2 exactly once.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import mqttPacket, { type Packet, type QoS } from 'mqtt-packet';
import { withTimeout, waitUntil, WAIT_MS } from '../helpers/wait.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const ROUNDS = 4;
const WINDOW = 30;

const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-kill-test-'));
let child: ChildProcess | undefined;
after(() => {
  if (child?.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dataDir, { recursive: true, force: true });
});

/** Starts the CLI broker on the data folder and resolves with its port once it listens. */
async function startBroker(): Promise<number> {
  const config = join(dataDir, 'config.json');
  writeFileSync(config, JSON.stringify({ tee: null, limits: { maxQueuedMessages: 0, maxQueuedBytes: 0 } }));
  const proc = spawn(process.execPath, [MAIN, 'broker', '--port', '0', '--host', '127.0.0.1', '--data', dataDir, '--config', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  child = proc;
  let log = '';
  return withTimeout(
    new Promise<number>((resolve, reject) => {
      proc.once('exit', (code) => reject(new Error(`the broker exited with ${code} before listening: ${log}`)));
      createInterface({ input: proc.stderr! }).on('line', (line) => {
        log += `${line}\n`;
        try {
          const entry = JSON.parse(line) as { msg?: string; port?: number };
          if (entry.msg === 'listening' && entry.port !== undefined) resolve(entry.port);
        } catch {
          // not a log line
        }
      });
    }),
    3 * WAIT_MS,
    'the CLI broker to listen',
  );
}

async function kill(): Promise<void> {
  const proc = child!;
  proc.kill('SIGKILL');
  if (proc.exitCode === null && proc.signalCode === null) await new Promise((resolve) => proc.once('exit', resolve));
}

/** A minimal MQTT v5 client on a socket: the test sees and decides every acknowledgement. */
class Client {
  private readonly socket: Socket;
  private readonly connack: Promise<boolean>;
  closed = false;

  constructor(port: number, clientId: string, clean: boolean, onPacket: (p: Packet, c: Client) => void) {
    this.socket = connect({ host: '127.0.0.1', port });
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    this.connack = new Promise((resolve, reject) => {
      parser.on('packet', (p: Packet) => (p.cmd === 'connack' ? resolve(p.sessionPresent) : onPacket(p, this)));
      this.socket.once('close', () => reject(new Error(`${clientId}: closed before CONNACK`)));
    });
    this.connack.catch(() => {});
    this.socket.on('data', (chunk: Buffer) => parser.parse(chunk));
    this.socket.on('error', () => {});
    this.socket.on('close', () => (this.closed = true));
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean, keepalive: 0, properties: { sessionExpiryInterval: clean ? 0 : 3600 } });
  }

  ready(): Promise<boolean> {
    return withTimeout(this.connack, WAIT_MS, 'CONNACK');
  }

  send(p: Packet): void {
    if (!this.closed) this.socket.write(mqttPacket.generate(p, { protocolVersion: 5 }));
  }

  end(): void {
    this.socket.destroy();
  }
}

/** A subscriber that keeps its QoS 2 state across connections, as a real client does: a message counts at its first PUBLISH. */
class Subscriber {
  readonly received = new Map<string, number>();
  /** QoS 2 packet ids answered with PUBREC and not yet released: a PUBLISH with one of them is the same message. */
  private readonly awaitingRelease = new Set<number>();
  client: Client | undefined;
  private subacked: (() => void) | undefined;

  constructor(readonly clientId: string) {}

  async connect(port: number, filter?: string): Promise<boolean> {
    this.client = new Client(port, this.clientId, false, (p, c) => this.onPacket(p, c));
    const present = await this.client.ready();
    if (filter !== undefined) {
      const subacked = new Promise<void>((resolve) => (this.subacked = resolve));
      this.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 2 }] });
      await withTimeout(subacked, WAIT_MS, 'SUBACK');
    }
    return present;
  }

  private onPacket(p: Packet, c: Client): void {
    if (p.cmd === 'publish') {
      const id = p.messageId ?? 0;
      const fresh = p.qos !== 2 || !this.awaitingRelease.has(id);
      if (fresh) {
        const key = p.payload.toString();
        this.received.set(key, (this.received.get(key) ?? 0) + 1);
      }
      if (p.qos === 1) c.send({ cmd: 'puback', messageId: id });
      if (p.qos === 2) {
        this.awaitingRelease.add(id);
        c.send({ cmd: 'pubrec', messageId: id });
      }
    } else if (p.cmd === 'suback') {
      this.subacked?.();
    } else if (p.cmd === 'pubrel') {
      this.awaitingRelease.delete(p.messageId ?? 0);
      c.send({ cmd: 'pubcomp', messageId: p.messageId });
    }
  }
}

/** Publishes numbered messages with at most WINDOW unacknowledged; records what the broker acknowledged. */
class Publisher {
  readonly acknowledged: string[] = [];
  private next = 0;
  private inflight = new Map<number, string>();
  private client: Client | undefined;

  constructor(readonly qos: QoS, readonly topics: string[]) {}

  async start(port: number): Promise<void> {
    this.inflight.clear();
    this.client = new Client(port, `publisher-q${this.qos}`, true, (p) => this.onPacket(p));
    await this.client.ready();
    this.fill();
  }

  private fill(): void {
    const c = this.client!;
    while (!c.closed && this.inflight.size < WINDOW) {
      const n = this.next++;
      const topic = this.topics[n % this.topics.length]!;
      const id = (n % 65535) + 1;
      const payload = `${topic}#${n}`;
      this.inflight.set(id, payload);
      c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: this.qos, messageId: id, retain: false, dup: false });
    }
  }

  private onPacket(p: Packet): void {
    const id = p.messageId ?? 0;
    if ((p.cmd === 'puback' && this.qos === 1) || (p.cmd === 'pubrec' && this.qos === 2)) {
      const payload = this.inflight.get(id);
      if (payload !== undefined && (p.reasonCode ?? 0) < 0x80) this.acknowledged.push(payload);
      if (p.cmd === 'pubrec') this.client!.send({ cmd: 'pubrel', messageId: id });
      else this.inflight.delete(id);
    } else if (p.cmd === 'pubcomp') {
      this.inflight.delete(id);
    } else return;
    this.fill();
  }
}

test('SIGKILL at random points under QoS 1 and QoS 2 traffic: every acknowledged message arrives, QoS 2 exactly once, online and offline subscribers', async () => {
  const online = new Subscriber('online-subscriber');
  const offline = new Subscriber('offline-subscriber');
  const publishers = [new Publisher(1, ['k/on/q1', 'k/off/q1']), new Publisher(2, ['k/on/q2', 'k/off/q2'])];
  let port = await startBroker();
  await online.connect(port, 'k/on/#');
  await offline.connect(port, 'k/off/#');
  offline.client!.end();
  for (let round = 0; round < ROUNDS; round++) {
    if (round > 0) {
      port = await startBroker();
      assert.equal(await online.connect(port), true, `round ${round}: the online subscriber's session came back`);
    }
    await Promise.all(publishers.map((p) => p.start(port)));
    await new Promise((resolve) => setTimeout(resolve, 150 + Math.floor(Math.random() * 450)));
    await kill();
    online.client!.end();
  }
  port = await startBroker();
  assert.equal(await online.connect(port), true, 'the online subscriber resumes after the last kill');
  assert.equal(await offline.connect(port), true, 'the offline subscriber resumes after the last kill');
  const acknowledged = publishers.flatMap((p) => p.acknowledged);
  const arrived = (key: string): boolean => (key.includes('/on/') ? online : offline).received.has(key);
  await waitUntil(() => acknowledged.every(arrived), 'every acknowledged message arrived', 3 * WAIT_MS).catch(() => {});
  const lost = acknowledged.filter((k) => !arrived(k));
  const duplicated = [...online.received, ...offline.received].filter(([k, n]) => k.includes('/q2#') && n > 1).map(([k]) => k);
  const counts = publishers.map((p) => `QoS ${p.qos}: ${p.acknowledged.length} acknowledged`).join(', ');
  if (process.env.KILL_TEST_VERBOSE) console.log(counts, 'received', online.received.size, offline.received.size);
  assert.ok(publishers.every((p) => p.acknowledged.length > 100), `traffic flowed before the kills (${counts})`);
  assert.deepEqual(lost.slice(0, 10), [], `${lost.length} acknowledged messages lost (${counts})`);
  assert.deepEqual(duplicated.slice(0, 10), [], `${duplicated.length} QoS 2 messages delivered more than once`);
  online.client!.end();
  offline.client!.end();
  await kill();
});

test('a will whose delay is running when the broker is killed is published by the restarted broker when the delay ends', async () => {
  let port = await startBroker();
  const topic = 'wills/delayed';
  const withWill = connect({ host: '127.0.0.1', port });
  withWill.on('error', () => {});
  withWill.write(
    mqttPacket.generate(
      {
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'will-owner', clean: false, keepalive: 0,
        properties: { sessionExpiryInterval: 60 },
        will: { topic, payload: Buffer.from('gone'), qos: 1, retain: true, properties: { willDelayInterval: 2 } },
      },
      { protocolVersion: 5 },
    ),
  );
  await withTimeout(new Promise<void>((resolve) => withWill.once('data', () => resolve())), WAIT_MS, 'CONNACK');
  const lostAt = Date.now();
  withWill.destroy();
  // the broker sees the connection go and stores the running will (a commit within milliseconds)
  await new Promise((resolve) => setTimeout(resolve, 300));
  await kill();
  port = await startBroker();
  const watcher = new Subscriber('will-watcher');
  await watcher.connect(port, topic);
  await waitUntil(() => watcher.received.has('gone'), 'the will to be published', 3 * WAIT_MS);
  const after = Date.now() - lostAt;
  assert.ok(after >= 1900, `published ${after} ms after the connection was lost, not before its 2 s delay`);
  watcher.client!.end();
  await kill();
});

test('a SUBACK is sent once the subscription is committed: SIGKILL on its arrival, and the restarted broker still has it', async () => {
  const rounds = 3;
  const filters: string[] = [];
  for (let round = 0; round < rounds; round++) {
    const port = await startBroker();
    const filter = `suback/kept/${round}`;
    filters.push(filter);
    let killed: Promise<void> | undefined;
    let firstSubacked: (() => void) | undefined;
    const c = new Client(port, 'suback-subscriber', false, (p) => {
      if (p.cmd !== 'suback') return;
      if (p.messageId === 1) firstSubacked?.();
      // the kill leaves within the same tick as the SUBACK's arrival
      else killed ??= kill();
    });
    await c.ready();
    // a commit just before makes the next one wait its turn (the group commit's minimum interval):
    // a SUBACK sent ahead of its commit would then be acknowledged milliseconds before the data is safe
    const first = new Promise<void>((resolve) => (firstSubacked = resolve));
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `suback/warm/${round}`, qos: 1 }] });
    await withTimeout(first, WAIT_MS, 'the first SUBACK');
    c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: filter, qos: 1 }] });
    await waitUntil(() => killed !== undefined, 'the second SUBACK', WAIT_MS);
    await killed;
    c.end();
  }
  const port = await startBroker();
  const subscriber = new Subscriber('suback-subscriber');
  assert.equal(await subscriber.connect(port), true, 'the session came back');
  const publisher = new Client(port, 'suback-publisher', true, () => {});
  await publisher.ready();
  filters.forEach((topic, i) => publisher.send({ cmd: 'publish', topic, payload: Buffer.from(topic), qos: 1, messageId: i + 1, retain: false, dup: false }));
  await waitUntil(() => filters.every((f) => subscriber.received.has(f)), 'a message on every acknowledged subscription', WAIT_MS).catch(() => {});
  assert.deepEqual(filters.filter((f) => !subscriber.received.has(f)), [], 'subscriptions acknowledged before the kill and missing after the restart');
  publisher.end();
  subscriber.client!.end();
  await kill();
});
