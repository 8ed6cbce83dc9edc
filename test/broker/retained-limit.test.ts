/** limits.maxRetainedMessages: past it, a retained message on a new topic is routed but not kept. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

const MAX = 3;
let tb: TestBroker;
before(async () => {
  tb = await startTestBroker((c) => {
    c.limits.maxRetainedMessages = MAX;
  });
});
after(() => tb.close());

/** The retained messages a new subscription to `filter` receives, by topic (a marker on `marker` ends them). */
async function retainedUnder(filter: string, marker: string): Promise<Map<string, string>> {
  const sub = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(sub);
  await sub.subscribeAsync([filter, marker], { qos: 1 });
  await tb.publish(marker, 'end', { qos: 1 });
  const got = new Map<string, string>();
  for (;;) {
    const m = await inbox.next('a retained message or the marker');
    if (m.topic === marker) break;
    assert.equal(m.packet.retain, true);
    got.set(m.topic, m.payload);
  }
  await sub.endAsync();
  return got;
}

test('past the limit a retained message on a new topic reaches the subscribers but is not kept; replacing and clearing still work', async () => {
  const base = unique('retained-limit');
  const topic = (n: number): string => `${base}/t${n}`;
  const live = await tb.mqtt({ protocolVersion: 5 });
  const liveInbox = inboxOf(live);
  await live.subscribeAsync(`${base}/#`, { qos: 1 });
  const pub = await tb.mqtt({ protocolVersion: 5 });
  const dropped = tb.broker.counters.retainedDropped;

  // the broker's own $SYS topics are retained too, and not counted
  const clientRetained = (): number => tb.broker.retained.size - tb.broker.retained.systemSize;
  assert.equal(clientRetained(), 0);
  for (let n = 1; n <= MAX; n++) await pub.publishAsync(topic(n), `v${n}`, { qos: 1, retain: true });
  assert.equal(clientRetained(), MAX);
  // one over: acknowledged and delivered live, not kept
  await pub.publishAsync(topic(4), 'v4', { qos: 1, retain: true });
  assert.deepEqual((await liveInbox.take(MAX + 1)).map((m) => m.payload), ['v1', 'v2', 'v3', 'v4']);
  assert.equal(tb.broker.counters.retainedDropped, dropped + 1);
  assert.equal(clientRetained(), MAX);

  // a topic that has one can still replace it
  await pub.publishAsync(topic(2), 'v2 again', { qos: 1, retain: true });
  assert.deepEqual(
    [...(await retainedUnder(`${base}/+`, unique('marker')))].sort(),
    [[topic(1), 'v1'], [topic(2), 'v2 again'], [topic(3), 'v3']],
    'the three kept, t2 replaced, t4 absent',
  );
  assert.equal(tb.broker.counters.retainedDropped, dropped + 1, 'a replacement is not refused');

  // clearing one makes room for a new topic
  await pub.publishAsync(topic(1), '', { qos: 1, retain: true });
  await pub.publishAsync(topic(4), 'v4 kept', { qos: 1, retain: true });
  assert.deepEqual(
    [...(await retainedUnder(`${base}/+`, unique('marker')))].sort(),
    [[topic(2), 'v2 again'], [topic(3), 'v3'], [topic(4), 'v4 kept']],
  );
  assert.equal(tb.broker.counters.retainedDropped, dropped + 1);
  await Promise.all([live.endAsync(), pub.endAsync()]);
});

test('a will with the retain flag counts against the limit as a retained PUBLISH does', async () => {
  // the first test leaves the store full (t2, t3, t4)
  assert.equal(tb.broker.retained.size - tb.broker.retained.systemSize, MAX);
  const topic = unique('retained-limit/will');
  const watcher = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(watcher);
  await watcher.subscribeAsync(topic, { qos: 1 });
  const dropped = tb.broker.counters.retainedDropped;
  const raw = await tb.raw(5);
  await raw.connect({ clientId: unique('will-client'), will: { topic, payload: Buffer.from('gone'), qos: 1, retain: true } });
  raw.destroy();
  assert.equal((await inbox.next('the will')).payload, 'gone');
  assert.equal(tb.broker.counters.retainedDropped, dropped + 1);
  assert.equal(tb.broker.retained.has(topic), false);
  await watcher.endAsync();
});
