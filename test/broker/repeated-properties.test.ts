/**
 * MQTT 5 allows most properties once per packet (MQTT-2.2.2); mqtt-packet turns a repeated one into
 * an array, a value no handler expects. Such a packet is a Protocol Error for that connection alone:
 * it once reached a session's queue as a correlation-data array and crashed the broker when the
 * subscriber's connection closed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { codes, inboxOf, startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

const utf8 = (s: string): number[] => {
  const b = Buffer.from(s);
  return [b.length >> 8, b.length & 0xff, ...b];
};

/** A v5 PUBLISH with the given raw property bytes. */
function publishV5(topic: string, qos: 0 | 1, retain: boolean, properties: number[], payload: string, packetId = 1): Buffer {
  const body = [...utf8(topic), ...(qos > 0 ? [packetId >> 8, packetId & 0xff] : []), ...varint(properties.length), ...properties, ...Buffer.from(payload)];
  return Buffer.from([0x30 | (qos << 1) | (retain ? 1 : 0), ...varint(body.length), ...body]);
}

const correlation = (value: string): number[] => [0x09, ...utf8(value)];
const expiry = (seconds: number): number[] => [0x02, (seconds >>> 24) & 0xff, (seconds >>> 16) & 0xff, (seconds >>> 8) & 0xff, seconds & 0xff];

describe('a repeated v5 property', () => {
  test('in a QoS 1 PUBLISH queued for a persistent session is refused with DISCONNECT 0x82, and the subscriber disconnecting later does not stop the broker', async () => {
    const topic = unique('dup-correlation');
    const sub = await tb.raw(5);
    const subscriberId = unique('persistent');
    await sub.connect({ clientId: subscriberId, clean: false, properties: { sessionExpiryInterval: 300 } });
    await sub.subscribe(topic, 1);

    const pub = await tb.raw(5);
    await pub.connect({ clientId: unique('dup-pub') });
    pub.write(publishV5(topic, 1, false, [...correlation('a'), ...correlation('b')], 'x'));
    assert.deepEqual(codes(await pub.closedByBroker()), [['disconnect', 0x82]]);

    // the subscriber leaves: its session settles what waits for it (the path that crashed)
    sub.destroy();
    await waitUntil(() => tb.broker.connections.size === 1, 'the subscriber gone');
    // the broker still serves: the session resumes with nothing from the refused PUBLISH
    const again = await tb.raw(5);
    const connack = await again.connect({ clientId: subscriberId, clean: false, properties: { sessionExpiryInterval: 300 } });
    assert.equal(connack.sessionPresent, true);
    const watcher = await tb.watch(topic);
    await tb.publish(topic, 'fine');
    assert.equal((await watcher.next()).payload, 'fine');
    const p = await again.expect('publish');
    assert.equal(p.payload.toString(), 'fine', 'the refused message was never queued');
  });

  test('in a retained PUBLISH is refused and nothing is retained', async () => {
    const topic = unique('dup-retained');
    const pub = await tb.raw(5);
    await pub.connect({ clientId: unique('dup-ret') });
    pub.write(publishV5(topic, 0, true, [...expiry(60), ...expiry(61)], 'kept?'));
    assert.deepEqual(codes(await pub.closedByBroker()), [['disconnect', 0x82]]);
    const watcher = await tb.watch(topic);
    await tb.publish(topic, 'marker');
    assert.equal((await watcher.next()).payload, 'marker', 'no retained message came before the marker');
  });

  for (const [name, bytes] of [
    ['content type', [0x03, ...utf8('a'), 0x03, ...utf8('b')]],
    ['response topic', [0x08, ...utf8('r/1'), 0x08, ...utf8('r/2')]],
    // (mqtt-packet overwrites a repeat whose first value is 0 or empty instead of listing it: that
    // packet stays well-typed and is taken with its last value)
    ['payload format indicator', [0x01, 0x01, 0x01, 0x01]],
    ['topic alias', [0x23, 0x00, 0x01, 0x23, 0x00, 0x01]],
  ] as const) {
    test(`${name} twice in a PUBLISH gets DISCONNECT 0x82 and is counted`, async () => {
      const pub = await tb.raw(5);
      await pub.connect({ clientId: unique('dup') });
      const before = tb.broker.counters.malformedPackets;
      pub.write(publishV5(unique('dup-topic'), 1, false, [...bytes], 'x'));
      assert.deepEqual(codes(await pub.closedByBroker()), [['disconnect', 0x82]]);
      assert.equal(tb.broker.counters.malformedPackets, before + 1);
    });
  }

  test('user properties may repeat (MQTT-3.3.2.3.7) and reach the subscriber in order', async () => {
    const topic = unique('user-props');
    const sub = await tb.mqtt({ protocolVersion: 5 });
    await sub.subscribeAsync(topic, { qos: 1 });
    const inbox = inboxOf(sub);
    const pub = await tb.raw(5);
    await pub.connect({ clientId: unique('up') });
    const user = (k: string, v: string): number[] => [0x26, ...utf8(k), ...utf8(v)];
    pub.write(publishV5(topic, 1, false, [...user('k', '1'), ...user('k', '2')], 'x'));
    assert.equal((await pub.expect('puback')).messageId, 1);
    const got = await inbox.next();
    assert.deepEqual({ ...got.packet.properties?.userProperties }, { k: ['1', '2'] });
  });

  test('in a will is refused with CONNACK 0x82 and the will is never published', async () => {
    const topic = unique('dup-will');
    const watcher = await tb.watch(topic);
    const raw = await tb.raw(5);
    // CONNECT v5 with a will whose properties hold correlation data twice
    const willProps = [...correlation('a'), ...correlation('b')];
    const body = [
      ...utf8('MQTT'), 5, 0x06 /* clean start, will flag, will QoS 0 */, 0x00, 0x00, 0x00 /* no properties */,
      ...utf8(unique('will-client')), ...varint(willProps.length), ...willProps, ...utf8(topic), ...utf8('gone'),
    ];
    raw.write(Buffer.from([0x10, ...varint(body.length), ...body]));
    assert.deepEqual(codes(await raw.closedByBroker()), [['connack', 0x82]]);
    await tb.publish(topic, 'marker');
    assert.equal((await watcher.next()).payload, 'marker', 'the will did not come first');
  });
});
