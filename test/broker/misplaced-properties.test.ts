/**
 * mqtt-packet decodes any MQTT 5 property in any packet; a property the packet may not carry
 * (MQTT-2.2.2.2: a Malformed Packet) closes that connection and never reaches another client.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { codes, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

const utf8 = (s: string): number[] => {
  const b = Buffer.from(s);
  return [b.length >> 8, b.length & 0xff, ...b];
};

test('a PUBLISH carrying a Session Expiry Interval is refused with DISCONNECT 0x81 and not forwarded; a PUBLISH with allowed properties still is', async () => {
  const topic = unique('misplaced');
  const sub = await tb.raw(5);
  await sub.connect({ clientId: unique('misplaced-sub') });
  await sub.subscribe(topic, 0);
  const pub = await tb.raw(5);
  await pub.connect({ clientId: unique('misplaced-pub') });
  // QoS 0 PUBLISH, properties: Session Expiry Interval (0x11) = 5
  const body = [...utf8(topic), 5, 0x11, 0, 0, 0, 5, 0x78];
  pub.write(Buffer.from([0x30, body.length, ...body]));
  assert.deepEqual(codes(await pub.closedByBroker()), [['disconnect', 0x81]]);

  const good = await tb.raw(5);
  await good.connect({ clientId: unique('misplaced-good') });
  good.send({ cmd: 'publish', topic, payload: Buffer.from('fine'), qos: 0, dup: false, retain: false, properties: { contentType: 'text/plain' } });
  const p = await sub.expect('publish');
  assert.equal(p.payload.toString(), 'fine', 'the subscriber gets the good message only');
  assert.deepEqual(p.properties, { contentType: 'text/plain' });
});

test('a will carrying a property that Will Properties do not allow (Topic Alias) refuses the CONNECT: closed, no session', async () => {
  const raw = await tb.raw(5);
  const clientId = unique('misplaced-will');
  raw.send({
    cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId, clean: true, keepalive: 0,
    will: { topic: 'w', payload: Buffer.from('x'), qos: 0, retain: false, properties: { topicAlias: 3 } as object },
  });
  const rest = await raw.closedByBroker();
  assert.ok(rest.every((p) => p.cmd !== 'connack' || p.reasonCode !== 0), `not accepted: ${JSON.stringify(codes(rest))}`);
  assert.equal(tb.broker.sessions.has(clientId), false);
});
