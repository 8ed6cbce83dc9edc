/** Sessions and connections: offline queueing, clean start, expiry, wills, keep alive, takeover, client ids. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IConnectPacket } from 'mqtt-packet';
import { codes, connackOf, elapse, inboxOf, startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

const gone = (clientId: string): Promise<void> => waitUntil(() => !tb.broker.clients.has(clientId), `${clientId} is disconnected`);

describe('persistent sessions', () => {
  for (const protocolVersion of [4, 5] as const) {
    const v = protocolVersion === 4 ? 'v3.1.1' : 'v5';
    const persistent = protocolVersion === 4 ? { clean: false } : { clean: false, properties: { sessionExpiryInterval: 60 } };

    /** A persistent session subscribed to a fresh topic whose client has disconnected normally. */
    async function offlineSubscriber(name: string): Promise<{ clientId: string; topic: string }> {
      const clientId = unique(name);
      const topic = unique(`session/${name}`);
      const sub = await tb.mqtt({ protocolVersion, clientId, ...persistent });
      await sub.subscribeAsync(topic, { qos: 2 });
      await sub.endAsync();
      await gone(clientId);
      return { clientId, topic };
    }

    test(`${v}: QoS 1 and 2 messages published while the client is offline are delivered in order when it returns`, async () => {
      const { clientId, topic } = await offlineSubscriber('offline');
      const pub = await tb.mqtt({ protocolVersion });
      await pub.publishAsync(topic, 'a', { qos: 1 });
      await pub.publishAsync(topic, 'b', { qos: 2 });
      await pub.publishAsync(topic, 'c', { qos: 1 });
      // a raw client sees the order on the wire (MQTT.js hands QoS 2 messages over at PUBREL)
      const back = await tb.raw(protocolVersion);
      assert.equal((await back.connect({ clientId, ...persistent })).sessionPresent, true);
      const got: [string, number][] = [];
      for (let i = 0; i < 3; i++) {
        const p = await back.expect('publish');
        got.push([String(p.payload), p.qos]);
        back.send({ cmd: p.qos === 1 ? 'puback' : 'pubrec', messageId: p.messageId });
      }
      assert.deepEqual(got, [['a', 1], ['b', 2], ['c', 1]]);
    });

    test(`${v}: a clean start discards the stored session and its subscriptions`, async () => {
      const { clientId, topic } = await offlineSubscriber('cleanstart');
      const pub = await tb.mqtt({ protocolVersion });
      await pub.publishAsync(topic, 'queued', { qos: 1 });
      const fresh = await tb.mqtt({ protocolVersion, clientId, clean: true });
      assert.equal(connackOf(fresh).sessionPresent, false);
      await fresh.subscribeAsync(`${topic}-marker`, { qos: 1 });
      await pub.publishAsync(topic, 'after', { qos: 1 });
      await pub.publishAsync(`${topic}-marker`, 'marker', { qos: 1 });
      assert.deepEqual((await inboxOf(fresh).take(1)).map((m) => m.payload), ['marker'], 'neither the queued message nor the old subscription survived');
    });
  }

  test('v5: a session ends after its expiry interval (as changed on DISCONNECT); before that, reconnecting finds it', async () => {
    const clientId = unique('expiry');
    const first = await tb.raw(5);
    await first.connect({ clientId, clean: true, properties: { sessionExpiryInterval: 60 } });
    first.send({ cmd: 'disconnect', reasonCode: 0 });
    await first.closedByBroker();
    const early = await tb.raw(5);
    assert.equal((await early.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } })).sessionPresent, true);
    early.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 1 } });
    await early.closedByBroker();
    await waitUntil(() => !tb.broker.sessions.has(clientId), 'the session has expired');
    const late = await tb.raw(5);
    assert.equal((await late.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 60 } })).sessionPresent, false);
  });

  test('v5: a message whose expiry passes while queued is dropped, others arrive with the remaining interval', async () => {
    const clientId = unique('msgexpiry');
    const topic = unique('session/msgexpiry');
    const connect = { clientId, clean: false, properties: { sessionExpiryInterval: 60 } };
    const sub = await tb.raw(5);
    await sub.connect(connect);
    await sub.subscribe(topic, 1);
    sub.send({ cmd: 'disconnect', reasonCode: 0 });
    await sub.closedByBroker();
    const pub = await tb.mqtt({ protocolVersion: 5 });
    await pub.publishAsync(topic, 'short', { qos: 1, properties: { messageExpiryInterval: 1 } });
    await pub.publishAsync(topic, 'long', { qos: 1, properties: { messageExpiryInterval: 30 } });
    await elapse(1300); // the behaviour under test is time passing
    const back = await tb.raw(5);
    await back.connect(connect);
    const p = await back.expect('publish');
    assert.equal(String(p.payload), 'long');
    const left = p.properties?.messageExpiryInterval ?? 0;
    assert.ok(left >= 1 && left <= 29, `remaining expiry ${left} s was decremented`);
  });
});

describe('will messages', () => {
  type WillFields = Partial<NonNullable<IConnectPacket['will']>>;

  /** A watcher subscribed to a fresh topic, and a raw client connected with a will ("gone", QoS 1) on it. */
  async function connectWithWill(name: string, protocolVersion: 4 | 5, connect: Partial<IConnectPacket> = {}, willFields: WillFields = {}) {
    const topic = unique(`will/${name}`);
    const clientId = unique(`will-${name}`);
    const watcher = await tb.watch(topic, { protocolVersion });
    const raw = await tb.raw(protocolVersion);
    await raw.connect({ clientId, ...connect, will: { topic, payload: Buffer.from('gone'), qos: 1, retain: false, ...willFields } });
    return { topic, clientId, watcher, raw };
  }

  for (const protocolVersion of [4, 5] as const) {
    const v = protocolVersion === 4 ? 'v3.1.1' : 'v5';

    test(`${v}: the will is published when the connection drops without DISCONNECT`, async () => {
      const { topic, watcher, raw } = await connectWithWill('abrupt', protocolVersion, {}, { retain: true });
      raw.destroy();
      const m = await watcher.next('the will');
      assert.equal(m.payload, 'gone');
      assert.equal(m.packet.qos, 1);
      // a retained will is stored as the topic's retained message
      const r = await (await tb.watch(topic, { protocolVersion })).next('the retained will');
      assert.equal(r.payload, 'gone');
      assert.equal(r.packet.retain, true);
    });

    test(`${v}: no will is published after a normal DISCONNECT`, async () => {
      const { topic, clientId, watcher, raw } = await connectWithWill('clean', protocolVersion);
      raw.send({ cmd: 'disconnect' });
      await raw.closedByBroker();
      await gone(clientId);
      await tb.publish(topic, 'marker');
      assert.equal((await watcher.next()).payload, 'marker');
    });
  }

  test('v5: DISCONNECT with reason 0x04 publishes the will', async () => {
    const { watcher, raw } = await connectWithWill('0x04', 5);
    raw.send({ cmd: 'disconnect', reasonCode: 0x04 });
    assert.equal((await watcher.next('the will')).payload, 'gone');
  });

  test('v5: a will with a delay is published after the delay, not at once', async () => {
    const { topic, clientId, watcher, raw } = await connectWithWill('delay', 5, { properties: { sessionExpiryInterval: 60 } }, { properties: { willDelayInterval: 2 } });
    const pub = await tb.mqtt({ protocolVersion: 5 }); // connected beforehand: the marker must beat the delay
    raw.destroy();
    await gone(clientId);
    await pub.publishAsync(topic, 'marker', { qos: 1 });
    assert.equal((await watcher.next()).payload, 'marker', 'the will did not go out at once');
    assert.equal((await watcher.next('the delayed will')).payload, 'gone');
  });

  test('v5: a will is published when the session ends, if that comes before its delay', async () => {
    const { watcher, raw } = await connectWithWill('session-end', 5, { properties: { sessionExpiryInterval: 1 } }, { properties: { willDelayInterval: 3600 } });
    raw.destroy();
    assert.equal((await watcher.next('the will at session end')).payload, 'gone');
  });

  test('v5: reconnecting within the will delay cancels the will', async () => {
    const { topic, clientId, watcher, raw } = await connectWithWill('cancel', 5, { properties: { sessionExpiryInterval: 3600 } }, { properties: { willDelayInterval: 3600 } });
    raw.destroy();
    await gone(clientId);
    const back = await tb.raw(5);
    assert.equal((await back.connect({ clientId, clean: false, properties: { sessionExpiryInterval: 3600 } })).sessionPresent, true);
    // ending the session now would publish a will that is still pending
    back.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 0 } });
    await back.closedByBroker();
    await waitUntil(() => !tb.broker.sessions.has(clientId), 'the session has ended');
    await tb.publish(topic, 'marker');
    assert.equal((await watcher.next()).payload, 'marker');
  });
});

describe('keep alive', () => {
  test('clients silent for 1.5 times their keep alive are disconnected (v5: DISCONNECT 0x8D), wills published; a pinging one stays', async () => {
    const topic = unique('keepalive/will');
    const watcher = await tb.watch(topic);
    const silent = await tb.raw(4);
    await silent.connect({ clientId: unique('ka-silent'), keepalive: 1, will: { topic, payload: Buffer.from('timed out'), qos: 1, retain: false } });
    const silent5 = await tb.raw(5);
    await silent5.connect({ clientId: unique('ka-silent5'), keepalive: 1 });
    const pinging = await tb.raw(4);
    await pinging.connect({ clientId: unique('ka-pinging'), keepalive: 1 });
    let pings = 0;
    const pinger = setInterval(() => {
      pinging.send({ cmd: 'pingreq' });
      pings++;
    }, 300);
    try {
      assert.deepEqual(await silent.closedByBroker(), []);
      assert.deepEqual(codes(await silent5.closedByBroker()), [['disconnect', 0x8d]]);
    } finally {
      clearInterval(pinger);
    }
    assert.equal((await watcher.next('the will')).payload, 'timed out');
    // the silent ones had 1.5 s (PINGREQs every 300 ms, less the time the other CONNECTs took)
    assert.ok(pings >= 3, `${pings} PINGREQs before the silent clients were cut off`);
    // the exact exchange: one PINGRESP per PINGREQ, nothing else
    for (let i = 0; i < pings; i++) await pinging.expect('pingresp');
    await assert.rejects(pinging.next('a packet after the last PINGRESP', 300), /timed out/);
    assert.equal(pinging.isClosed, false);
  });

  test('v5: a client asking for a keep alive of 120 s is told the server keep alive of 60 s', async () => {
    const raw = await tb.raw(5);
    const connack = await raw.connect({ clientId: unique('ka-120'), keepalive: 120 });
    assert.equal(connack.properties?.serverKeepAlive, 60);
    const modest = await tb.raw(5);
    const ok = await modest.connect({ clientId: unique('ka-30'), keepalive: 30 });
    assert.equal(ok.properties?.serverKeepAlive, undefined);
  });
});

describe('client identifiers and takeover', () => {
  test('v5: an empty client id gets an assigned client identifier the broker knows the client by', async () => {
    const raw = await tb.raw(5);
    const connack = await raw.connect({ clientId: '' });
    const assigned = connack.properties?.assignedClientIdentifier;
    assert.ok(assigned && assigned.length > 0);
    assert.ok(tb.broker.clients.has(assigned));
  });

  test('v3.1.1: an empty client id is refused (return code 2) without clean session, accepted with it', async () => {
    const persistent = await tb.raw(4);
    // CONNECT "MQTT" level 4, flags 0 (no clean session), keep alive 0, client id "" (mqtt-packet will not encode it)
    persistent.write(Buffer.from([0x10, 0x0c, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x00, 0x00, 0x00, 0x00, 0x00]));
    assert.equal((await persistent.expect('connack')).returnCode, 2);
    await persistent.closedByBroker();
    const clean = await tb.raw(4);
    assert.equal((await clean.connect({ clientId: '', clean: true })).returnCode, 0);
  });

  for (const protocolVersion of [4, 5] as const) {
    const v5 = protocolVersion === 5;
    test(`${v5 ? 'v5' : 'v3.1.1'}: a second connection with the same client id takes over; the old one is closed${v5 ? ' with DISCONNECT 0x8E' : ''}`, async () => {
      const clientId = unique('takeover');
      const old = await tb.raw(protocolVersion);
      await old.connect({ clientId });
      const fresh = await tb.raw(protocolVersion);
      assert.deepEqual(codes([await fresh.connect({ clientId })]), [['connack', 0]]);
      assert.deepEqual(codes(await old.closedByBroker()), v5 ? [['disconnect', 0x8e]] : []);
      fresh.send({ cmd: 'pingreq' });
      await fresh.expect('pingresp');
      assert.equal(tb.broker.clients.get(clientId)?.closed, false);
    });
  }
});

describe('shutdown', () => {
  test('closing the broker sends v5 clients DISCONNECT 0x8B and closes v3.1.1 clients', async () => {
    const doomed = await startTestBroker();
    try {
      const v5 = await doomed.raw(5);
      await v5.connect({ clientId: 'v5' });
      const v4 = await doomed.raw(4);
      await v4.connect({ clientId: 'v4' });
      await doomed.running.close();
      assert.deepEqual(codes(await v5.closedByBroker()), [['disconnect', 0x8b]]);
      assert.deepEqual(await v4.closedByBroker(), []);
    } finally {
      await doomed.close();
    }
  });
});
