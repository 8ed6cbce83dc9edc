/** A broker stopped and started again on the same data folder: what persistent sessions had comes back. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { defaultConfig, type BrokerConfig } from '../../src/config.js';
import { startBroker, type RunningBroker } from '../../src/server.js';
import { STATE_FILE } from '../../src/persistence/sqlite-store.js';
import { elapse, RawClient, waitUntil } from '../helpers/broker.js';

const dirs: string[] = [];
const clients: RawClient[] = [];
const brokers: (() => Promise<void>)[] = [];
after(async () => {
  clients.forEach((c) => c.destroy());
  await Promise.allSettled(brokers.map((close) => close()));
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** A round trip: everything the client sent before has been handled by the broker. */
async function settled(c: RawClient): Promise<void> {
  c.send({ cmd: 'pingreq' });
  await c.expect('pingresp');
}

/** A broker on a data folder that outlives it: `restart` stops it gracefully and starts another on the same folder. */
async function durableBroker(tune?: (c: BrokerConfig) => void): Promise<{ current: () => RunningBroker; port: () => number; restart: () => Promise<void>; close: () => Promise<void>; dataDir: string }> {
  const dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-restart-test-'));
  dirs.push(dataDir);
  const config: BrokerConfig = { ...defaultConfig(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent', tee: null };
  tune?.(config);
  let running = await startBroker(config);
  brokers.push(() => running.close());
  return {
    dataDir,
    current: () => running,
    port: () => running.port('tcp')!,
    async restart() {
      await running.close();
      running = await startBroker(config);
    },
    close: () => running.close(),
  };
}

async function raw(port: number, version: 4 | 5 = 5): Promise<RawClient> {
  const c = await RawClient.open(port, version);
  clients.push(c);
  return c;
}

const persistent = (clientId: string) => ({ clientId, clean: false, properties: { sessionExpiryInterval: 600 } });

function rows(dataDir: string, table: string): number {
  const db = new Database(join(dataDir, STATE_FILE), { readonly: true });
  try {
    return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
  } finally {
    db.close();
  }
}

test('an offline session, its subscriptions and its queued QoS 1/2 messages survive a restart and are delivered in order (v3.1.1 and v5)', async () => {
  const b = await durableBroker();
  for (const version of [4, 5] as const) {
    const connect = version === 5 ? persistent(`offline-v${version}`) : { clientId: `offline-v${version}`, clean: false };
    const sub = await raw(b.port(), version);
    await sub.connect(connect);
    await sub.subscribe(`q/${version}/#`, 2);
    sub.destroy();
    await waitUntil(() => !b.current().broker.clients.has(connect.clientId), 'the subscriber is offline');
  }
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'pub' });
  for (const version of [4, 5] as const) {
    for (const [i, qos] of [[1, 1], [2, 2], [3, 1]] as const) {
      pub.send({ cmd: 'publish', topic: `q/${version}/${i}`, payload: Buffer.from(`m${i}`), qos, messageId: pub.packetId(), retain: false, dup: false });
      await pub.expect(qos === 1 ? 'puback' : 'pubrec');
    }
  }
  await b.restart();
  const live = await raw(b.port());
  await live.connect({ clientId: 'pub-after' });
  for (const version of [4, 5] as const) {
    const connect = version === 5 ? persistent(`offline-v${version}`) : { clientId: `offline-v${version}`, clean: false };
    const back = await raw(b.port(), version);
    assert.equal((await back.connect(connect)).sessionPresent, true, `v${version} session present after the restart`);
    const got = [await back.expect('publish'), await back.expect('publish'), await back.expect('publish')];
    assert.deepEqual(got.map((p) => `${p.topic}=${p.payload.toString()}@${p.qos}`), [`q/${version}/1=m1@1`, `q/${version}/2=m2@2`, `q/${version}/3=m3@1`]);
    // the subscription came back too
    live.send({ cmd: 'publish', topic: `q/${version}/4`, payload: Buffer.from('live'), qos: 0, retain: false, dup: false });
    assert.equal((await back.expect('publish')).payload.toString(), 'live');
    back.destroy();
  }
  await b.close();
});

test('in-flight messages are resent with DUP and their packet ids after a restart; one past PUBREC gets PUBREL, not the message again', async () => {
  const b = await durableBroker();
  const sub = await raw(b.port());
  await sub.connect(persistent('inflight'));
  await sub.subscribe('f/#', 2);
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'pub-inflight' });
  pub.send({ cmd: 'publish', topic: 'f/1', payload: Buffer.from('one'), qos: 1, messageId: 1, retain: false, dup: false });
  pub.send({ cmd: 'publish', topic: 'f/2', payload: Buffer.from('two'), qos: 2, messageId: 2, retain: false, dup: false });
  pub.send({ cmd: 'publish', topic: 'f/3', payload: Buffer.from('three'), qos: 2, messageId: 3, retain: false, dup: false });
  const first = await sub.expect('publish');
  const second = await sub.expect('publish');
  const third = await sub.expect('publish');
  // the subscriber acknowledges only the second with PUBREC, and never completes it
  sub.send({ cmd: 'pubrec', messageId: second.messageId });
  await sub.expect('pubrel');
  assert.deepEqual([(await pub.next()).cmd, (await pub.next()).cmd, (await pub.next()).cmd], ['puback', 'pubrec', 'pubrec']);
  await b.restart();
  const back = await raw(b.port());
  assert.equal((await back.connect(persistent('inflight'))).sessionPresent, true);
  const again = [await back.next(), await back.next(), await back.next()];
  assert.deepEqual(
    again.map((p) => (p.cmd === 'publish' ? ['publish', p.messageId, p.dup, p.payload.toString()] : [p.cmd, p.messageId])),
    [
      ['publish', first.messageId, true, 'one'],
      ['pubrel', second.messageId],
      ['publish', third.messageId, true, 'three'],
    ],
  );
  await b.close();
});

test('an incoming QoS 2 message acknowledged with PUBREC before a restart is not routed again when the publisher resends it', async () => {
  const b = await durableBroker();
  const sub = await raw(b.port());
  await sub.connect(persistent('q2-sub'));
  await sub.subscribe('once', 1);
  const pub = await raw(b.port());
  await pub.connect(persistent('q2-pub'));
  pub.send({ cmd: 'publish', topic: 'once', payload: Buffer.from('x'), qos: 2, messageId: 9, retain: false, dup: false });
  await pub.expect('pubrec');
  const p = await sub.expect('publish');
  sub.send({ cmd: 'puback', messageId: p.messageId });
  await settled(sub);
  await b.restart();
  const sub2 = await raw(b.port());
  await sub2.connect(persistent('q2-sub'));
  const pub2 = await raw(b.port());
  assert.equal((await pub2.connect(persistent('q2-pub'))).sessionPresent, true);
  pub2.send({ cmd: 'publish', topic: 'once', payload: Buffer.from('x'), qos: 2, messageId: 9, retain: false, dup: true });
  await pub2.expect('pubrec');
  pub2.send({ cmd: 'pubrel', messageId: 9 });
  const comp = await pub2.expect('pubcomp');
  assert.equal(comp.reasonCode ?? 0, 0, 'the id was known: PUBCOMP success');
  // a QoS 0 marker behind it: the subscriber sees the marker first and nothing else
  pub2.send({ cmd: 'publish', topic: 'once', payload: Buffer.from('marker'), qos: 0, retain: false, dup: false });
  assert.equal((await sub2.expect('publish')).payload.toString(), 'marker');
  await b.close();
});

test('retained messages survive a restart; one whose expiry passed while the broker was down does not', async () => {
  const b = await durableBroker();
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'retainer' });
  pub.send({ cmd: 'publish', topic: 'keep/a', payload: Buffer.from('kept'), qos: 1, messageId: 1, retain: true, dup: false });
  pub.send({ cmd: 'publish', topic: 'keep/b', payload: Buffer.from('short'), qos: 1, messageId: 2, retain: true, dup: false, properties: { messageExpiryInterval: 1 } });
  pub.send({ cmd: 'publish', topic: 'keep/c', payload: Buffer.from('long'), qos: 1, messageId: 3, retain: true, dup: false, properties: { messageExpiryInterval: 600 } });
  for (let i = 0; i < 3; i++) await pub.expect('puback');
  await b.restart();
  await elapse(1100);
  const sub = await raw(b.port());
  await sub.connect({ clientId: 'reader' });
  await sub.subscribe('keep/#', 1);
  const got = [await sub.expect('publish'), await sub.expect('publish')].map((p) => [p.topic, p.payload.toString(), p.retain]).sort();
  assert.deepEqual(got, [['keep/a', 'kept', true], ['keep/c', 'long', true]]);
  const expiry = await (async () => {
    sub.send({ cmd: 'publish', topic: 'keep/marker', payload: Buffer.from(''), qos: 0, retain: false, dup: false });
    return (await sub.expect('publish')).topic;
  })();
  assert.equal(expiry, 'keep/marker', 'keep/b expired: nothing else came');
  await b.close();
});

test('an offline session whose expiry passes while the broker is down is gone after the restart, rows included', async () => {
  const b = await durableBroker();
  const sub = await raw(b.port());
  await sub.connect({ clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } });
  await sub.subscribe('s/#', 1);
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'pub-short' });
  sub.destroy();
  await waitUntil(() => !b.current().broker.clients.has('short'), 'the subscriber is offline');
  pub.send({ cmd: 'publish', topic: 's/1', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
  await pub.expect('puback');
  await b.current().close();
  await elapse(1100);
  await b.restart();
  const back = await raw(b.port());
  assert.equal((await back.connect({ clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } })).sessionPresent, false);
  await b.close();
  assert.equal(rows(b.dataDir, 'deliveries'), 0);
});

test('clean sessions and QoS 0 write nothing: after their traffic the store holds no session or delivery row', async () => {
  const b = await durableBroker();
  const sub = await raw(b.port());
  await sub.connect({ clientId: 'clean-sub', clean: true });
  await sub.subscribe('c/#', 2);
  const durableSub = await raw(b.port());
  await durableSub.connect(persistent('qos0-only'));
  await durableSub.subscribe('c/#', 0);
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'clean-pub' });
  for (let i = 1; i <= 20; i++) pub.send({ cmd: 'publish', topic: `c/${i}`, payload: Buffer.from('x'), qos: 1, messageId: i, retain: false, dup: false });
  for (let i = 1; i <= 20; i++) await pub.expect('puback');
  sub.destroy();
  await b.close();
  assert.equal(rows(b.dataDir, 'deliveries'), 0);
  assert.equal(rows(b.dataDir, 'sessions'), 1, 'only the persistent session (its QoS 0 subscription delivers nothing durable)');
});

test('"persistence": false writes no state file and forgets sessions at a restart', async () => {
  const b = await durableBroker((c) => (c.persistence = null));
  const sub = await raw(b.port());
  await sub.connect(persistent('memory-only'));
  await sub.subscribe('m/#', 1);
  await b.restart();
  const back = await raw(b.port());
  assert.equal((await back.connect(persistent('memory-only'))).sessionPresent, false);
  await b.close();
  assert.throws(() => rows(b.dataDir, 'sessions'));
});

test('maxQueuedMessages bounds the stored queue too, and a queued message whose expiry passes while the broker is down is not delivered', async () => {
  const b = await durableBroker((c) => (c.limits.maxQueuedMessages = 5));
  const sub = await raw(b.port());
  await sub.connect(persistent('bounded'));
  await sub.subscribe('b/#', 1);
  sub.destroy();
  await waitUntil(() => !b.current().broker.clients.has('bounded'), 'the subscriber is offline');
  const pub = await raw(b.port());
  await pub.connect({ clientId: 'pub-bounded' });
  pub.send({ cmd: 'publish', topic: 'b/short', payload: Buffer.from('expires'), qos: 1, messageId: 1, retain: false, dup: false, properties: { messageExpiryInterval: 1 } });
  for (let i = 2; i <= 10; i++) pub.send({ cmd: 'publish', topic: `b/${i}`, payload: Buffer.from(`m${i}`), qos: 1, messageId: i, retain: false, dup: false });
  for (let i = 1; i <= 10; i++) await pub.expect('puback');
  await b.current().close();
  assert.equal(rows(b.dataDir, 'deliveries'), 5, 'five stored, the rest dropped as in memory');
  await elapse(1100);
  await b.restart();
  const back = await raw(b.port());
  assert.equal((await back.connect(persistent('bounded'))).sessionPresent, true);
  const got = [await back.expect('publish'), await back.expect('publish'), await back.expect('publish'), await back.expect('publish')];
  assert.deepEqual(got.map((p) => p.payload.toString()), ['m2', 'm3', 'm4', 'm5']);
  await settled(back);
  await b.close();
});
