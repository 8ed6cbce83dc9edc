/** Bad input closes only the offending connection; protocol violations get the right v5 reason code. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { codes, inboxOf, RawClient, startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

/** v5 packets carry a property length (0 here) after the variable header. */
const props = (v: 4 | 5): number[] => (v === 5 ? [0x00] : []);

/** A subscriber connected before the trouble, and proof it is still served after. */
async function bystander(): Promise<() => Promise<void>> {
  const topic = unique('bystander');
  const sub = await tb.mqtt({ protocolVersion: 5 });
  await sub.subscribeAsync(topic, { qos: 1 });
  return async () => {
    const pub = await tb.mqtt({ protocolVersion: 4 });
    await pub.publishAsync(topic, 'still served', { qos: 1 });
    assert.equal((await inboxOf(sub).next()).payload, 'still served');
  };
}

describe('malformed input', () => {
  const cases: [string, (v: 4 | 5) => number[]][] = [
    ['reserved packet type 0', () => [0x00, 0x00]],
    ['PUBLISH with QoS 3', () => [0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]],
    ['SUBSCRIBE with wrong fixed-header flags', () => [0x80, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00]],
    ['a remaining length of five bytes', () => [0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]],
    ['a QoS 0 PUBLISH with the DUP flag', (v) => [0x38, 0x04 + props(v).length, 0x00, 0x01, 0x61, ...props(v), 0x62]],
    ['a topic name that is not UTF-8', (v) => [0x30, 0x05 + props(v).length, 0x00, 0x02, 0xc3, 0x28, ...props(v), 0x61]],
    ['a topic name with an encoded surrogate (U+D800)', (v) => [0x30, 0x06 + props(v).length, 0x00, 0x03, 0xed, 0xa0, 0x80, ...props(v), 0x61]],
    ['a topic filter that is not UTF-8', (v) => [0x82, 0x07 + props(v).length, 0x00, 0x01, ...props(v), 0x00, 0x02, 0xc3, 0x28, 0x00]],
  ];
  for (const protocolVersion of [4, 5] as const) {
    for (const [name, bytes] of cases) {
      test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: ${name} closes that connection only`, async () => {
        const stillServed = await bystander();
        const raw = await tb.raw(protocolVersion);
        await raw.connect({ clientId: unique('malformed') });
        const malformedBefore = tb.broker.counters.malformedPackets;
        raw.write(Buffer.from(bytes(protocolVersion)));
        const rest = await raw.closedByBroker();
        assert.equal(tb.broker.counters.malformedPackets, malformedBefore + 1, 'counted');
        if (protocolVersion === 5) {
          assert.deepEqual(codes(rest), [['disconnect', 0x81]], 'DISCONNECT Malformed Packet');
        }
        await stillServed();
      });
    }
  }

  // found by the fuzzer: mqtt-packet reads such a field as null (or a packet id as -1) without an
  // error; a user property of null reached a subscriber's PUBLISH encoding and crashed the broker
  const cutFields: [string, number[]][] = [
    ['user property value', [0x30, 0x0a, 0x00, 0x01, 0x61, 0x06, 0x26, 0x00, 0x01, 0x6b, 0x00, 0x05]],
    ['content type', [0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x03, 0x00, 0x09]],
    ['correlation data', [0x30, 0x07, 0x00, 0x01, 0x61, 0x03, 0x09, 0x00, 0x09]],
  ];
  for (const [name, bytes] of cutFields) {
    test(`v5: a PUBLISH whose ${name} runs past the end of the packet is malformed (0x81) and reaches no subscriber`, async () => {
      const inbox = await tb.watch('a');
      const raw = await tb.raw(5);
      await raw.connect({ clientId: unique('cut-field') });
      const malformedBefore = tb.broker.counters.malformedPackets;
      raw.write(Buffer.from(bytes));
      assert.deepEqual(codes(await raw.closedByBroker()), [['disconnect', 0x81]]);
      assert.equal(tb.broker.counters.malformedPackets, malformedBefore + 1, 'counted');
      await tb.publish('a', 'well formed');
      assert.equal((await inbox.next()).payload, 'well formed', 'the cut packet was not delivered');
    });
  }

  const cutIds: [string, number[]][] = [
    ['PUBREL', [0x62, 0x01, 0x05]],
    ['PUBACK', [0x40, 0x00]],
    ['QoS 1 PUBLISH', [0x32, 0x03, 0x00, 0x01, 0x61]],
  ];
  for (const protocolVersion of [4, 5] as const) {
    for (const [name, bytes] of cutIds) {
      test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: a ${name} whose packet id is cut short is malformed, closes that connection only and routes nothing`, async () => {
        const inbox = await tb.watch('a');
        const raw = await tb.raw(protocolVersion);
        await raw.connect({ clientId: unique('cut-id') });
        const malformedBefore = tb.broker.counters.malformedPackets;
        const errorsBefore = tb.broker.counters.handlerFailures;
        raw.write(Buffer.from(bytes));
        const rest = await raw.closedByBroker();
        if (protocolVersion === 5) assert.deepEqual(codes(rest), [['disconnect', 0x81]]);
        else assert.deepEqual(rest, []);
        assert.equal(tb.broker.counters.malformedPackets, malformedBefore + 1, 'counted as malformed');
        assert.equal(tb.broker.counters.handlerFailures, errorsBefore, 'no handler failed');
        await tb.publish('a', 'well formed');
        assert.equal((await inbox.next()).payload, 'well formed', 'the cut PUBLISH was not routed');
      });
    }
  }

  test('bytes that are not MQTT before CONNECT close the connection without an answer', async () => {
    const stillServed = await bystander();
    const raw = await tb.raw(4);
    raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    assert.deepEqual(await raw.closedByBroker(), []);
    await stillServed();
  });

  test('a CONNECT with protocol name "hj" is refused by closing the connection', async () => {
    const raw = await tb.raw(4);
    // CONNECT, protocol name "hj", level 4, clean session, keep alive 0, client id "x"
    raw.write(Buffer.from([0x10, 0x0b, 0x00, 0x02, 0x68, 0x6a, 0x04, 0x02, 0x00, 0x00, 0x00, 0x01, 0x78]));
    const rest = await raw.closedByBroker();
    assert.ok(rest.every((p) => p.cmd === 'connack' && (p.returnCode ?? p.reasonCode ?? 0) !== 0), JSON.stringify(rest));
  });

  test('an unknown protocol level gets CONNACK 0x01 and the connection closed', async () => {
    const raw = await tb.raw(4);
    raw.write(Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x07, 0x02, 0x00, 0x00, 0x00, 0x01, 0x78]));
    assert.deepEqual(codes(await raw.closedByBroker()), [['connack', 1]]);
  });
});

describe('protocol violations', () => {
  test('v3.1.1: a second CONNECT on one connection closes it', async () => {
    const raw = await tb.raw(4);
    const clientId = unique('twice');
    await raw.connect({ clientId });
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0 });
    assert.deepEqual(await raw.closedByBroker(), []);
  });

  test('v5: a second CONNECT on one connection gets DISCONNECT 0x82 Protocol Error', async () => {
    const raw = await tb.raw(5);
    const clientId = unique('twice5');
    await raw.connect({ clientId });
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 0 });
    assert.deepEqual(codes(await raw.closedByBroker()), [['disconnect', 0x82]]);
  });

  test('a packet other than CONNECT as the first packet closes the connection', async () => {
    const raw = await tb.raw(4);
    raw.send({ cmd: 'pingreq' });
    assert.deepEqual(await raw.closedByBroker(), []);
  });

  test('v5: publishing to a topic name with a wildcard gets DISCONNECT 0x90 Topic Name Invalid', async () => {
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('wildpub') });
    raw.send({ cmd: 'publish', topic: 'a/+/b', payload: 'x', qos: 0, dup: false, retain: false });
    assert.deepEqual(codes(await raw.closedByBroker()), [['disconnect', 0x90]]);
  });

  const violations: [string, (v: 4 | 5) => number[]][] = [
    ['a QoS 1 PUBLISH with packet identifier 0', (v) => [0x32, 0x05 + props(v).length, 0x00, 0x01, 0x61, 0x00, 0x00, ...props(v)]],
    ['a SUBSCRIBE with packet identifier 0', (v) => [0x82, 0x06 + props(v).length, 0x00, 0x00, ...props(v), 0x00, 0x01, 0x61, 0x00]],
    ['an UNSUBSCRIBE without topic filters', (v) => [0xa2, 0x02 + props(v).length, 0x00, 0x01, ...props(v)]],
  ];
  for (const protocolVersion of [4, 5] as const) {
    for (const [name, bytes] of violations) {
      test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: ${name} closes the connection${protocolVersion === 5 ? ' with DISCONNECT 0x82' : ''}`, async () => {
        const raw = await tb.raw(protocolVersion);
        await raw.connect({ clientId: unique('violation') });
        raw.write(Buffer.from(bytes(protocolVersion)));
        assert.deepEqual(codes(await raw.closedByBroker()), protocolVersion === 5 ? [['disconnect', 0x82]] : []);
      });
    }
  }

  for (const property of ['receiveMaximum', 'maximumPacketSize'] as const) {
    test(`v5: a CONNECT with ${property} 0 is refused with CONNACK 0x82 Protocol Error`, async () => {
      const raw = await tb.raw(5);
      const connack = await raw.connect({ clientId: unique('zero'), properties: { [property]: 0 } });
      assert.equal(connack.reasonCode, 0x82);
      await raw.closedByBroker();
    });
  }

  for (const protocolVersion of [4, 5] as const) {
    test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: an invalid topic filter is refused in the SUBACK, valid ones next to it are granted`, async () => {
      const raw = await tb.raw(protocolVersion);
      await raw.connect({ clientId: unique('badfilter') });
      const suback = await raw.subscribe([
        { topic: 'a/#/b', qos: 1 },
        { topic: unique('fine'), qos: 1 },
        { topic: 'a+/b', qos: 0 },
      ]);
      const refused = protocolVersion === 5 ? 0x8f : 0x80;
      assert.deepEqual(suback.granted, [refused, 1, refused]);
    });
  }
});

describe('connection limit', () => {
  test('maxConnections is honoured: one more client is refused until a place is free', async () => {
    const limited = await startTestBroker((c) => {
      c.limits.maxConnections = 2;
    });
    try {
      const a = await limited.raw(4);
      await a.connect({ clientId: 'a' });
      const b = await limited.raw(4);
      await b.connect({ clientId: 'b' });
      const extra = await RawClient.open(limited.port, 4);
      try {
        extra.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'c', clean: true, keepalive: 0 });
        assert.deepEqual(await extra.closedByBroker(), [], 'refused without a CONNACK');
      } finally {
        extra.destroy();
      }
      a.send({ cmd: 'disconnect' });
      await a.closedByBroker();
      await waitUntil(() => limited.broker.connections.size < 2 && limited.running.listeners.every((l) => l.connectionCount < 2), 'a place is free');
      const c = await limited.raw(4);
      assert.equal((await c.connect({ clientId: 'c' })).returnCode, 0);
    } finally {
      await limited.close();
    }
  });
});
