/**
 * The SQLite durable store: what a batch writes comes back from load, in order, across a reopen;
 * the same through the store's own thread (ThreadedSqliteStore).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openSqliteStore } from '../../src/persistence/sqlite-store.js';
import type { Change, StoredDelivery, StoredMessage, StoredSession } from '../../src/persistence/store.js';
import { ThreadedSqliteStore } from '../../src/persistence/threaded-store.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function dataDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'mqt-tz-store-test-'));
  dirs.push(d);
  return d;
}

const message = (topic: string, extra: Partial<StoredMessage> = {}): StoredMessage => ({
  topic,
  payload: Buffer.from(`payload of ${topic}`),
  qos: 1,
  retain: false,
  properties: undefined,
  expiresAt: 0,
  origin: 'publisher',
  ...extra,
});

const session: StoredSession = {
  clientId: 'c1',
  expiryInterval: 3600,
  expiresAt: 0,
  subscriptions: [
    { key: 'a/#', filter: 'a/#', group: undefined, options: { qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: 7 } },
    { key: '$share/g/b/+', filter: 'b/+', group: 'g', options: { qos: 1, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId: undefined } },
  ],
};

const delivery = (id: number, extra: Partial<StoredDelivery> = {}): StoredDelivery => ({
  id,
  clientId: 'c1',
  message: message(`a/${id}`),
  qos: 1,
  retain: false,
  subscriptionIds: undefined,
  packetId: 0,
  state: 0,
  ...extra,
});

test('sessions with every subscription option, deliveries in order, incoming QoS 2 ids, retained messages and wills come back after a reopen', async () => {
  const dir = dataDir();
  const store = openSqliteStore(dir, 'normal');
  const props = { contentType: 'text/plain', correlationData: Buffer.from([0, 1, 255]), userProperties: { k: ['v1', 'v2'] }, responseTopic: 'r', payloadFormatIndicator: true, messageExpiryInterval: 60 };
  const changes: Change[] = [
    { kind: 'session', session },
    { kind: 'delivery', delivery: delivery(3, { message: message('a/3', { properties: props, expiresAt: 1_900_000_000_000, qos: 2 }), qos: 2, retain: true, subscriptionIds: [7, 9] }) },
    { kind: 'delivery', delivery: delivery(5) },
    { kind: 'delivery', delivery: delivery(4) },
    { kind: 'delivery-state', id: 3, packetId: 12, state: 2 },
    { kind: 'delivery-state', id: 4, packetId: 13, state: 1 },
    { kind: 'incoming', clientId: 'c1', packetId: 40, waiting: true },
    { kind: 'incoming', clientId: 'c1', packetId: 41, waiting: true },
    { kind: 'incoming', clientId: 'c1', packetId: 40, waiting: false },
    { kind: 'retained', topic: 'r/1', message: message('r/1', { retain: true, qos: 2, expiresAt: 1_900_000_000_000 }) },
    { kind: 'retained', topic: 'r/2', message: message('r/2', { retain: true }) },
    { kind: 'retained', topic: 'r/2', message: null },
    { kind: 'will', clientId: 'c1', will: { clientId: 'c1', message: message('will/c1', { retain: true, qos: 1 }), publishAt: 1_800_000_000_000 } },
  ];
  await store.commit(changes);
  await store.close();

  const reopened = openSqliteStore(dir, 'normal');
  const state = await reopened.load(1_700_000_000_000);
  await reopened.close();
  assert.deepEqual(state.sessions, [session]);
  assert.deepEqual(state.deliveries.map((d) => [d.id, d.packetId, d.state]), [[3, 12, 2], [4, 13, 1], [5, 0, 0]]);
  const first = state.deliveries[0]!;
  assert.deepEqual([first.qos, first.retain, first.subscriptionIds, first.message.qos, first.message.expiresAt], [2, true, [7, 9], 2, 1_900_000_000_000]);
  assert.deepEqual(first.message.properties, props);
  assert.deepEqual(first.message.payload, Buffer.from('payload of a/3'));
  assert.deepEqual(state.incoming, [{ clientId: 'c1', packetId: 41 }]);
  assert.deepEqual(state.retained.map((m) => [m.topic, m.qos, m.retain, m.expiresAt]), [['r/1', 2, true, 1_900_000_000_000]]);
  assert.deepEqual(state.wills.map((w) => [w.clientId, w.message.topic, w.message.retain, w.publishAt]), [['c1', 'will/c1', true, 1_800_000_000_000]]);
  assert.equal(state.lastDeliveryId, 5);
});

test('a completed delivery is removed; ending a session removes its deliveries, incoming ids and will but not other sessions', async () => {
  const store = openSqliteStore(dataDir(), 'full');
  const other: StoredSession = { ...session, clientId: 'c2', subscriptions: [] };
  await store.commit([
    { kind: 'session', session },
    { kind: 'session', session: other },
    { kind: 'delivery', delivery: delivery(1) },
    { kind: 'delivery', delivery: delivery(2) },
    { kind: 'delivery', delivery: delivery(3, { clientId: 'c2' }) },
    { kind: 'incoming', clientId: 'c1', packetId: 1, waiting: true },
    { kind: 'will', clientId: 'c1', will: { clientId: 'c1', message: message('w'), publishAt: 1 } },
  ]);
  await store.commit([{ kind: 'delivery-done', id: 2 }]);
  let state = await store.load(0);
  assert.deepEqual(state.deliveries.map((d) => d.id), [1, 3]);
  await store.commit([{ kind: 'session-end', clientId: 'c1' }]);
  state = await store.load(0);
  assert.deepEqual(state.sessions.map((s) => s.clientId), ['c2']);
  assert.deepEqual(state.deliveries.map((d) => [d.id, d.clientId]), [[3, 'c2']]);
  assert.deepEqual([state.incoming, state.wills], [[], []]);
  await store.close();
});

test('load drops offline sessions whose expiry has passed (with their rows) and expired retained messages', async () => {
  const store = openSqliteStore(dataDir(), 'normal');
  await store.commit([
    { kind: 'session', session: { ...session, clientId: 'gone', expiresAt: 1000 } },
    { kind: 'session', session: { ...session, clientId: 'kept', expiresAt: 3000 } },
    { kind: 'session', session: { ...session, clientId: 'online', expiresAt: 0 } },
    { kind: 'delivery', delivery: delivery(1, { clientId: 'gone' }) },
    { kind: 'retained', topic: 'old', message: message('old', { expiresAt: 1500 }) },
    { kind: 'retained', topic: 'new', message: message('new', { expiresAt: 2500 }) },
  ]);
  const state = await store.load(2000);
  assert.deepEqual(state.sessions.map((s) => s.clientId).sort(), ['kept', 'online']);
  assert.deepEqual(state.deliveries, []);
  assert.deepEqual(state.retained.map((m) => m.topic), ['new']);
  await store.close();
});

test('a batch is all or nothing: a change the database refuses leaves the earlier changes of its batch unwritten', async () => {
  const store = openSqliteStore(dataDir(), 'normal');
  const refused = delivery(2, { message: message('x', { payload: 'not bytes' as unknown as Buffer }) });
  await assert.rejects(store.commit([{ kind: 'session', session }, { kind: 'delivery', delivery: delivery(1) }, { kind: 'delivery', delivery: refused }]));
  const state = await store.load(0);
  assert.deepEqual([state.sessions, state.deliveries], [[], []]);
  await store.close();
});

/** A payload as the broker has it: a view into a larger read buffer (a structured clone would copy all of it). */
function view(text: string): Buffer {
  const read = Buffer.alloc(8192, 0x7e);
  read.write(text, 100);
  return read.subarray(100, 100 + Buffer.byteLength(text));
}

test('batches committed on the thread come back from the database: payload bytes, properties, retained messages and wills', async () => {
  const dir = dataDir();
  const store = new ThreadedSqliteStore(dir, 'normal');
  assert.deepEqual((await store.load(0)).deliveries, []);
  const props = { contentType: 'text/plain', correlationData: Buffer.from([0, 1, 255]), userProperties: { k: ['v'] } };
  await store.commit([
    { kind: 'session', session },
    { kind: 'delivery', delivery: delivery(1, { message: message('a/1', { properties: props, payload: view('payload of a/1') }), subscriptionIds: [3] }) },
    { kind: 'delivery', delivery: delivery(2, { message: message('a/2', { payload: view('payload of a/2') }) }) },
    { kind: 'delivery-state', id: 2, packetId: 9, state: 1 },
  ]);
  await store.commit([
    { kind: 'delivery', delivery: delivery(3) },
    { kind: 'delivery-done', id: 1 },
    { kind: 'retained', topic: 'r', message: message('r', { retain: true, payload: view('payload of r') }) },
    { kind: 'will', clientId: 'c1', will: { clientId: 'c1', message: message('w', { payload: view('payload of w') }), publishAt: 5 } },
  ]);
  await store.close();
  const reader = openSqliteStore(dir, 'normal');
  const state = await reader.load(0);
  await reader.close();
  assert.deepEqual(state.sessions.map((s) => s.clientId), ['c1']);
  assert.deepEqual(state.deliveries.map((d) => [d.id, d.packetId, d.state, d.message.payload.toString()]), [[2, 9, 1, 'payload of a/2'], [3, 0, 0, 'payload of a/3']]);
  assert.deepEqual(state.retained.map((m) => m.payload.toString()), ['payload of r']);
  assert.deepEqual(state.wills.map((w) => [w.message.payload.toString(), w.publishAt]), [['payload of w', 5]]);
});

test('a batch the database refuses fails alone and leaves nothing of it; the next batch is written; a closed store refuses commits', async () => {
  const dir = dataDir();
  const store = new ThreadedSqliteStore(dir, 'normal');
  await store.load(0);
  // a STRICT table takes no text in an integer column
  const refused = delivery(2, { message: message('x', { expiresAt: 'soon' as unknown as number }) });
  await assert.rejects(store.commit([{ kind: 'session', session }, { kind: 'delivery', delivery: delivery(1) }, { kind: 'delivery', delivery: refused }]), /INTEGER|integer/);
  await store.commit([{ kind: 'session', session }, { kind: 'delivery', delivery: delivery(3) }]);
  await store.close();
  await assert.rejects(store.commit([{ kind: 'delivery-done', id: 3 }]));
  const reader = openSqliteStore(dir, 'normal');
  const state = await reader.load(0);
  await reader.close();
  assert.deepEqual(state.deliveries.map((d) => d.id), [3]);
});
