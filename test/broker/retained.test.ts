/** Retained messages: set, replace, clear; retain flag on delivery; v5 retain-as-published and retain handling. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

for (const protocolVersion of [4, 5] as const) {
  const v = protocolVersion === 4 ? 'v3.1.1' : 'v5';

  test(`${v}: a new subscriber gets the retained message with the retain flag, live copies come without it`, async () => {
    const topic = unique('retained/set');
    const pub = await tb.mqtt({ protocolVersion });
    await pub.publishAsync(topic, 'kept', { qos: 1, retain: true });
    const sub = await tb.mqtt({ protocolVersion });
    const inbox = inboxOf(sub);
    await sub.subscribeAsync(topic, { qos: 1 });
    const kept = await inbox.next('the retained message');
    assert.equal(kept.payload, 'kept');
    assert.equal(kept.packet.retain, true);
    await pub.publishAsync(topic, 'live', { qos: 1, retain: true });
    const live = await inbox.next('the live message');
    assert.equal(live.payload, 'live');
    assert.equal(live.packet.retain, false);
  });

  test(`${v}: a retained message replaces the previous one and an empty payload clears it`, async () => {
    const topic = unique('retained/replace');
    const pub = await tb.mqtt({ protocolVersion });
    await pub.publishAsync(topic, 'first', { qos: 1, retain: true });
    await pub.publishAsync(topic, 'second', { qos: 1, retain: true });

    const sub1 = await tb.mqtt({ protocolVersion });
    const inbox1 = inboxOf(sub1);
    await sub1.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, 'marker', { qos: 1 });
    assert.deepEqual((await inbox1.take(2)).map((m) => m.payload), ['second', 'marker']);

    await pub.publishAsync(topic, '', { qos: 1, retain: true });
    const sub2 = await tb.mqtt({ protocolVersion });
    const inbox2 = inboxOf(sub2);
    await sub2.subscribeAsync(topic, { qos: 1 });
    await pub.publishAsync(topic, 'marker', { qos: 1 });
    assert.deepEqual((await inbox2.take(1)).map((m) => m.payload), ['marker'], 'no retained message after clearing');
  });

  test(`${v}: a wildcard subscription receives the retained messages of every matching topic`, async () => {
    const base = unique('retained/wild');
    const pub = await tb.mqtt({ protocolVersion });
    await pub.publishAsync(`${base}/a`, 'A', { qos: 1, retain: true });
    await pub.publishAsync(`${base}/b/c`, 'BC', { qos: 1, retain: true });
    await pub.publishAsync(`${base}-other`, 'no', { qos: 1, retain: true });
    const sub = await tb.mqtt({ protocolVersion });
    const inbox = inboxOf(sub);
    await sub.subscribeAsync(`${base}/#`, { qos: 1 });
    const got = await inbox.take(2);
    assert.deepEqual(got.map((m) => `${m.topic}=${m.payload}`).sort(), [`${base}/a=A`, `${base}/b/c=BC`]);
    assert.ok(got.every((m) => m.packet.retain));
  });
}

test('v5: retain-as-published keeps the retain flag on live messages, without it the flag is cleared', async () => {
  const topic = unique('retained/rap');
  const asPublished = await tb.mqtt({ protocolVersion: 5 });
  const plain = await tb.mqtt({ protocolVersion: 5 });
  const rapInbox = inboxOf(asPublished);
  const plainInbox = inboxOf(plain);
  await asPublished.subscribeAsync(topic, { qos: 1, rap: true });
  await plain.subscribeAsync(topic, { qos: 1, rap: false });
  const pub = await tb.mqtt({ protocolVersion: 5 });
  await pub.publishAsync(topic, 'r', { qos: 1, retain: true });
  assert.equal((await rapInbox.next()).packet.retain, true);
  assert.equal((await plainInbox.next()).packet.retain, false);
});

test('v5: retain handling 0 sends retained messages on every subscribe, 1 only on a new subscription, 2 never', async () => {
  const topic = unique('retained/rh');
  const pub = await tb.mqtt({ protocolVersion: 5 });
  await pub.publishAsync(topic, 'kept', { qos: 1, retain: true });
  const sub = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(sub);
  const receivedOnSubscribe = async (rh: 0 | 1 | 2): Promise<string[]> => {
    await sub.subscribeAsync(topic, { qos: 1, rh });
    await pub.publishAsync(topic, `marker-${rh}`, { qos: 1 });
    const out: string[] = [];
    for (;;) {
      const m = await inbox.next();
      out.push(m.payload);
      if (m.payload.startsWith('marker')) return out;
    }
  };
  assert.deepEqual(await receivedOnSubscribe(0), ['kept', 'marker-0'], 'rh 0, new subscription');
  assert.deepEqual(await receivedOnSubscribe(0), ['kept', 'marker-0'], 'rh 0, existing subscription');
  assert.deepEqual(await receivedOnSubscribe(1), ['marker-1'], 'rh 1, existing subscription');
  assert.deepEqual(await receivedOnSubscribe(2), ['marker-2'], 'rh 2, existing subscription');
  await sub.unsubscribeAsync(topic);
  assert.deepEqual(await receivedOnSubscribe(1), ['kept', 'marker-1'], 'rh 1, new subscription');
  await sub.unsubscribeAsync(topic);
  assert.deepEqual(await receivedOnSubscribe(2), ['marker-2'], 'rh 2, new subscription');
});
