// $SYS topics under mosquitto's names, as a subscriber sees them over a real connection.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { elapse, startTestBroker, WAIT_MS } from '../helpers/broker.js';
import type { Inbox } from '../helpers/broker.js';

/** The latest value of each $SYS topic received so far. */
function latest(inbox: Inbox): Map<string, string> {
  return new Map(inbox.messages.map((m) => [m.topic, m.payload]));
}

async function until(inbox: Inbox, topic: string, value: (v: string) => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    const v = latest(inbox).get(topic);
    if (v !== undefined && value(v)) return;
    assert.ok(Date.now() < deadline, `${what}; $SYS so far: ${JSON.stringify([...latest(inbox)])}`);
    await inbox.next(what).catch(() => undefined);
  }
}

test('$SYS/broker/... is retained under mosquitto\'s names, updated every sysInterval seconds; a wildcard subscription to # does not see it', async () => {
  const b = await startTestBroker((c) => (c.sysInterval = 1));
  try {
    const all = await b.watch('#', { qos: 0 });
    const sys = await b.watch('$SYS/broker/#', { qos: 0 });
    // retained: a new subscriber gets the current values at once
    await until(sys, '$SYS/broker/version', (v) => /^mqt-tz version \d+\.\d+\.\d+/.test(v), 'the version');
    for (const name of ['uptime', 'clients/connected', 'clients/total', 'messages/received', 'messages/sent', 'publish/messages/received', 'bytes/received', 'bytes/sent', 'subscriptions/count', 'retained messages/count', 'load/messages/received/1min', 'load/bytes/sent/15min', 'load/connections/5min']) {
      await until(sys, `$SYS/broker/${name}`, () => true, name);
    }
    // the first of each topic is its retained value, sent with the SUBACK; later ones are live
    const first = new Map<string, boolean>();
    for (const m of sys.messages) if (!first.has(m.topic)) first.set(m.topic, m.packet.retain);
    assert.deepEqual([...first].filter(([, retained]) => !retained), [], 'every topic came first as a retained message');
    assert.match(latest(sys).get('$SYS/broker/uptime')!, /^\d+ seconds$/);
    // the two watchers are connected; the count follows within an interval
    await until(sys, '$SYS/broker/clients/connected', (v) => Number(v) >= 2, 'clients/connected to count the watchers');
    await b.publish('plain/x', 'one', { qos: 1 });
    await until(sys, '$SYS/broker/messages/received', (v) => Number(v) >= 1, 'messages/received to count a PUBLISH');
    await until(sys, '$SYS/broker/load/messages/received/1min', (v) => Number(v) > 0, 'the 1-minute load to rise');
    assert.deepEqual(all.messages.map((m) => m.topic), ['plain/x']);
  } finally {
    await b.close();
  }
});

test('sysInterval 0 publishes no $SYS topics', async () => {
  const b = await startTestBroker((c) => (c.sysInterval = 0));
  try {
    const sys = await b.watch('$SYS/#', { qos: 0 });
    await elapse(300);
    assert.equal(sys.messages.length, 0);
    assert.equal(b.broker.retained.size, 0);
  } finally {
    await b.close();
  }
});

test('a client cannot write $SYS: v5 PUBACK 0x87, nothing routed or retained, while $SYSTEM/x is an ordinary topic', async () => {
  const b = await startTestBroker((c) => (c.sysInterval = 0));
  try {
    const sys = await b.watch('$SYS/#', { qos: 1 });
    const other = await b.watch('$SYSTEM/#', { qos: 1 });
    const raw = await b.raw(5);
    await raw.connect({ clientId: 'forger' });
    raw.send({ cmd: 'publish', topic: '$SYS/broker/version', payload: 'forged', qos: 1, messageId: 1, retain: true, dup: false });
    assert.equal((await raw.expect('puback')).reasonCode, 0x87);
    raw.send({ cmd: 'publish', topic: '$SYSTEM/x', payload: 'fine', qos: 1, messageId: 2, retain: false, dup: false });
    assert.equal((await raw.expect('puback')).reasonCode ?? 0, 0);
    assert.equal((await other.next()).payload, 'fine');
    assert.equal(sys.messages.length, 0, 'the forged message reached no subscriber');
    assert.equal(b.broker.retained.size, 0, 'and was not retained');
  } finally {
    await b.close();
  }
});
