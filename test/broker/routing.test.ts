/** Routing: wildcards, `$`-topics, overlapping subscriptions, subscription ids, no-local, shared subscriptions, v5 properties. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

test('+ matches exactly one level and # any number of levels, including the parent', async () => {
  const base = unique('route/wild');
  const plusInbox = await tb.watch(`${base}/+/end`, { protocolVersion: 4 });
  const hashInbox = await tb.watch(`${base}/#`, { protocolVersion: 4 });
  for (const t of [`${base}/x/end`, `${base}/x/y/end`, base, `${base}/z`, `${base}/done/end`]) await tb.publish(t, t);
  assert.deepEqual((await plusInbox.take(2)).map((m) => m.topic), [`${base}/x/end`, `${base}/done/end`]);
  assert.deepEqual((await hashInbox.take(5)).map((m) => m.topic), [`${base}/x/end`, `${base}/x/y/end`, base, `${base}/z`, `${base}/done/end`]);
});

test('topics starting with $ are not matched by # or + at the first level, only by a filter naming them', async () => {
  const level = unique('dollar');
  const wild = await tb.mqtt();
  const wildInbox = inboxOf(wild);
  await wild.subscribeAsync({ '#': { qos: 1 }, [`+/${level}`]: { qos: 1 } });
  const explicitInbox = await tb.watch(`$test/${level}`);
  await tb.publish(`$test/${level}`, 'dollar');
  await tb.publish(`plain/${level}`, 'marker');
  assert.equal((await explicitInbox.next()).payload, 'dollar');
  // `#` and `+/level` both match the marker: it arrives once, and nothing came before it
  const first = await wildInbox.next();
  assert.equal(first.payload, 'marker');
  assert.equal(first.topic, `plain/${level}`);
  await wild.endAsync(); // its `#` would match every later test's messages
});

test('v3.1.1: overlapping subscriptions deliver one copy at the highest granted QoS', async () => {
  const base = unique('route/overlap');
  const sub = await tb.mqtt({ protocolVersion: 4 });
  const inbox = inboxOf(sub);
  await sub.subscribeAsync({ [`${base}/#`]: { qos: 2 }, [`${base}/+`]: { qos: 1 } });
  const pub = await tb.mqtt({ protocolVersion: 4 });
  await pub.publishAsync(`${base}/a`, 'one', { qos: 2 });
  await sub.subscribeAsync(`${base}-marker`, { qos: 1 });
  await pub.publishAsync(`${base}-marker`, 'marker', { qos: 1 });
  const got = await inbox.take(2);
  assert.deepEqual(got.map((m) => [m.payload, m.packet.qos]), [['one', 2], ['marker', 1]]);
});

test('v5: overlapping subscriptions deliver one copy carrying every matching subscription identifier', async () => {
  const base = unique('route/subid');
  const sub = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(sub);
  await sub.subscribeAsync(`${base}/#`, { qos: 1, properties: { subscriptionIdentifier: 11 } });
  await sub.subscribeAsync(`${base}/+`, { qos: 2, properties: { subscriptionIdentifier: 22 } });
  await sub.subscribeAsync(`${base}/only`, { qos: 0 });
  const pub = await tb.mqtt({ protocolVersion: 5 });
  await pub.publishAsync(`${base}/only`, 'both', { qos: 2 });
  await pub.publishAsync(`${base}/x/y`, 'one', { qos: 2 });
  const [both, one] = await inbox.take(2);
  assert.equal(both!.payload, 'both');
  assert.equal(both!.packet.qos, 2);
  const ids = both!.packet.properties?.subscriptionIdentifier;
  assert.deepEqual(Array.isArray(ids) ? [...ids].sort() : ids, [11, 22]);
  assert.equal(one!.payload, 'one');
  assert.equal(one!.packet.qos, 1);
  assert.equal(one!.packet.properties?.subscriptionIdentifier, 11);
});

test('v5: a no-local subscription does not receive its own messages but receives others', async () => {
  const topic = unique('route/nolocal');
  const self = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(self);
  await self.subscribeAsync(topic, { qos: 1, nl: true });
  await self.publishAsync(topic, 'own', { qos: 1 });
  const other = await tb.mqtt({ protocolVersion: 5 });
  await other.publishAsync(topic, 'other', { qos: 1 });
  assert.equal((await inbox.next()).payload, 'other');
});

test('v5: a shared subscription delivers each message to one member, round robin', async () => {
  const topic = unique('route/shared');
  const members = [await tb.mqtt({ protocolVersion: 5 }), await tb.mqtt({ protocolVersion: 5 })];
  const inboxes = members.map((m) => inboxOf(m));
  for (const m of members) await m.subscribeAsync(`$share/workers/${topic}`, { qos: 1 });
  const watcher = await tb.mqtt({ protocolVersion: 5 });
  const watcherInbox = inboxOf(watcher);
  await watcher.subscribeAsync(topic, { qos: 1 });
  const pub = await tb.mqtt({ protocolVersion: 5 });
  for (let i = 1; i <= 6; i++) await pub.publishAsync(topic, `m${i}`, { qos: 1 });
  // the ordinary subscriber sees all six; then each member has its three
  assert.equal((await watcherInbox.take(6)).length, 6);
  const a = (await inboxes[0]!.take(3)).map((m) => m.payload);
  const b = (await inboxes[1]!.take(3)).map((m) => m.payload);
  assert.deepEqual([...a, ...b].sort(), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
  const odd = ['m1', 'm3', 'm5'];
  const even = ['m2', 'm4', 'm6'];
  assert.ok(
    (JSON.stringify(a) === JSON.stringify(odd) && JSON.stringify(b) === JSON.stringify(even)) ||
      (JSON.stringify(a) === JSON.stringify(even) && JSON.stringify(b) === JSON.stringify(odd)),
    `members alternate: ${JSON.stringify(a)} / ${JSON.stringify(b)}`,
  );
});

test('v5: user properties, payload format, content type, response topic and correlation data reach the subscriber', async () => {
  const topic = unique('route/props');
  const sub = await tb.mqtt({ protocolVersion: 5 });
  const inbox = inboxOf(sub);
  await sub.subscribeAsync(topic, { qos: 1 });
  const pub = await tb.mqtt({ protocolVersion: 5 });
  const properties = {
    userProperties: { site: 'lab', rack: '7' },
    payloadFormatIndicator: true,
    contentType: 'application/json',
    responseTopic: `${topic}/reply`,
    correlationData: Buffer.from([1, 2, 3]),
  };
  await pub.publishAsync(topic, '{"ok":true}', { qos: 1, properties });
  const p = (await inbox.next()).packet.properties;
  assert.deepEqual({ ...p?.userProperties }, { site: 'lab', rack: '7' });
  assert.equal(p?.payloadFormatIndicator, true);
  assert.equal(p?.contentType, 'application/json');
  assert.equal(p?.responseTopic, `${topic}/reply`);
  assert.deepEqual(p?.correlationData, Buffer.from([1, 2, 3]));
});

test('v5: publishing to a topic without subscribers is acknowledged with 0x10 No matching subscribers', async () => {
  const raw = await tb.raw(5);
  await raw.connect({ clientId: unique('nomatch') });
  raw.send({ cmd: 'publish', topic: unique('route/nobody'), payload: 'x', qos: 1, dup: false, retain: false, messageId: 1 });
  assert.equal((await raw.expect('puback')).reasonCode, 0x10);
});
