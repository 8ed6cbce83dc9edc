/** limits.maxOfflineSessions: past it, the session offline longest ends as at its expiry. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';

const MAX = 2;
let tb: TestBroker;
before(async () => {
  tb = await startTestBroker((c) => {
    c.limits.maxOfflineSessions = MAX;
  });
});
after(() => tb.close());

const persistent = { clean: false, properties: { sessionExpiryInterval: 600 } };

/** Connects `clientId` with a persistent session, then drops the connection (no DISCONNECT: a will stays pending). */
async function offline(clientId: string, will?: { topic: string; delay: number }): Promise<void> {
  const raw = await tb.raw(5);
  await raw.connect({
    clientId,
    ...persistent,
    will: will && { topic: will.topic, payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: will.delay } },
  });
  raw.destroy();
  await waitUntil(() => !tb.broker.clients.has(clientId), `${clientId} is disconnected`);
}

test('the session offline longest ends first; a resumed one leaves the line; the count and the bound hold', async () => {
  const before = tb.broker.counters.offlineSessionsEnded;
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((n) => unique(`offline-${n}`));
  await offline(a!);
  await offline(b!);
  await offline(c!);
  assert.ok(!tb.broker.sessions.has(a!), 'the first offline session ended');
  assert.ok(tb.broker.sessions.has(b!) && tb.broker.sessions.has(c!));
  assert.equal(tb.broker.counters.offlineSessionsEnded, before + 1);

  // b comes back and goes again: it is now the latest to go offline, so c ends next
  const back = await tb.raw(5);
  assert.equal((await back.connect({ clientId: b!, ...persistent })).sessionPresent, true);
  back.destroy();
  await waitUntil(() => !tb.broker.clients.has(b!), 'b is disconnected again');
  await offline(d!);
  assert.ok(!tb.broker.sessions.has(c!), 'c, offline longest, ended');
  assert.ok(tb.broker.sessions.has(b!) && tb.broker.sessions.has(d!));
  assert.equal(tb.broker.counters.offlineSessionsEnded, before + 2);
});

test('an ended session publishes its waiting will at once, as at its expiry', async () => {
  const topic = unique('offline/will');
  const watcher = await tb.watch(topic);
  await offline(unique('offline-will'), { topic, delay: 3600 });
  for (let i = 0; i < MAX; i++) await offline(unique('offline-push'));
  assert.equal((await watcher.next('the will of the ended session')).payload, 'gone');
});
