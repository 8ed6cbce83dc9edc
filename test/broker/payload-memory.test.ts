/**
 * A payload arrives as a view of the socket read that carried it (no copy on the hot path). What
 * the broker keeps beyond delivery (retained messages, wills, deliveries waiting on an
 * offline or stalled client) must hold its own bytes, not the whole read with tens of other
 * messages in it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { makeMessage, settleDelivery, type Delivery } from '../../src/broker/message.js';
import { ProtectedLead } from '../../src/protect/protected-lead.js';
import type { Session } from '../../src/broker/session.js';
import { startTestBroker, unique, waitUntil, type RawClient, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

/** Room a kept payload may take beyond its own bytes before it counts as holding a read. */
const SMALL = 4096;

/** One write: `messages` to their topics with 200 PUBLISHes of 100 bytes to another topic before and after each. */
function burst(messages: { topic: string; payload: string; qos?: 0 | 1; retain?: boolean }[], protocolVersion: 4 | 5 = 4): Buffer {
  const filler = mqttPacket.generate({ cmd: 'publish', topic: unique('memory/filler'), payload: Buffer.alloc(100, 0x2e), qos: 0, dup: false, retain: false }, { protocolVersion });
  const parts: Buffer[] = [];
  let id = 1;
  for (const m of messages) {
    for (let i = 0; i < 200; i++) parts.push(filler);
    const qos = m.qos ?? 0;
    parts.push(mqttPacket.generate({ cmd: 'publish', topic: m.topic, payload: Buffer.from(m.payload), qos, messageId: qos > 0 ? id++ : undefined, dup: false, retain: m.retain ?? false }, { protocolVersion }));
  }
  for (let i = 0; i < 200; i++) parts.push(filler);
  return Buffer.concat(parts);
}

async function rawPublisher(): Promise<RawClient> {
  const pub = await tb.raw(4);
  await pub.connect({ clientId: unique('memory-pub') });
  return pub;
}

function session(clientId: string): Session {
  const s = tb.broker.sessions.get(clientId);
  assert.ok(s, `session ${clientId}`);
  return s;
}

function queued(s: Session): Delivery[] {
  return [...s.queue];
}

test('a retained message keeps its own payload, not the socket read it arrived in', async () => {
  const topic = unique('memory/retained');
  const pub = await rawPublisher();
  pub.write(burst([{ topic, payload: 'on', retain: true }]));
  await waitUntil(() => tb.broker.retained.match(topic).length === 1, 'the retained message');
  const [kept] = tb.broker.retained.match(topic);
  assert.equal(kept!.payload.toString(), 'on');
  assert.ok(kept!.payload.buffer.byteLength < SMALL, `the retained payload holds ${kept!.payload.buffer.byteLength} bytes`);

  const sub = await tb.raw(4);
  await sub.connect({ clientId: unique('memory-late') });
  await sub.subscribe(topic, 0);
  const p = await sub.expect('publish');
  assert.equal(p.payload.toString(), 'on');
  assert.equal(p.retain, true);
});

test('a retained v5 message keeps its own correlation data too', async () => {
  const topic = unique('memory/correlation');
  const pub = await tb.raw(5);
  await pub.connect({ clientId: unique('memory-pub5') });
  const filler = burst([], 5);
  const kept = mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.from('on'), qos: 0, dup: false, retain: true, properties: { correlationData: Buffer.from('req-1') } }, { protocolVersion: 5 });
  pub.write(Buffer.concat([filler, kept, filler]));
  await waitUntil(() => tb.broker.retained.match(topic).length === 1, 'the retained message');
  const correlation = tb.broker.retained.match(topic)[0]!.properties?.correlationData;
  assert.equal(correlation?.toString(), 'req-1');
  assert.ok(correlation!.buffer.byteLength < SMALL, `the correlation data holds ${correlation!.buffer.byteLength} bytes`);
});

test('a will keeps its own payload, not the read that carried its CONNECT and the PUBLISHes behind it', async () => {
  const clientId = unique('memory-will');
  const topic = unique('memory/will');
  const c = await tb.raw(4);
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId, clean: true, keepalive: 0, will: { topic, payload: Buffer.from('gone'), qos: 0, retain: false } });
  c.write(Buffer.concat([connect, burst([])]));
  await c.expect('connack');
  const will = tb.broker.clients.get(clientId)?.will;
  assert.ok(will, 'the connection holds its will');
  assert.equal(will.message.payload.toString(), 'gone');
  assert.ok(will.message.payload.buffer.byteLength < SMALL, `the will payload holds ${will.message.payload.buffer.byteLength} bytes`);
});

test('deliveries queued for offline sessions hold one copy of each message between them, delivered intact', async () => {
  const topic = unique('memory/offline');
  const ids = [unique('memory-off-a'), unique('memory-off-b')];
  for (const clientId of ids) {
    const c = await tb.raw(4);
    await c.connect({ clientId, clean: false });
    await c.subscribe(topic, 1);
    c.destroy();
    await waitUntil(() => session(clientId).link === null, `${clientId} offline`);
  }
  const pub = await rawPublisher();
  pub.write(burst([{ topic, payload: 'first', qos: 1 }, { topic, payload: 'second', qos: 1 }]));
  await waitUntil(() => ids.every((id) => session(id).queue.length === 2), 'two queued deliveries per session');

  const [a, b] = ids.map((id) => queued(session(id)));
  for (const d of [...a!, ...b!]) assert.ok(d.payload.buffer.byteLength < SMALL, `a queued payload holds ${d.payload.buffer.byteLength} bytes`);
  assert.equal(a![0]!.payload.buffer, b![0]!.payload.buffer, 'both sessions share the first message copy');
  assert.notEqual(a![0]!.payload.buffer, a![1]!.payload.buffer);

  const back = await tb.raw(4);
  await back.connect({ clientId: ids[0], clean: false });
  const got: string[] = [];
  for (let i = 0; i < 2; i++) {
    const p = await back.expect('publish');
    got.push(p.payload.toString());
    back.send({ cmd: 'puback', messageId: p.messageId! });
  }
  assert.deepEqual(got, ['first', 'second']);
});

test('a connected client that stops acknowledging has its waiting deliveries settled within a sweep, and reads them intact', async () => {
  const topic = unique('memory/stalled');
  const clientId = unique('memory-stalled');
  const sub = await tb.raw(5);
  await sub.connect({ clientId, properties: { receiveMaximum: 1 } });
  await sub.subscribe(topic, 1);
  const pub = await rawPublisher();
  pub.write(burst([{ topic, payload: 'one', qos: 1 }, { topic, payload: 'two', qos: 1 }, { topic, payload: 'three', qos: 1 }]));
  const first = await sub.expect('publish');
  assert.equal(first.payload.toString(), 'one');
  const s = session(clientId);
  await waitUntil(() => s.queue.length === 2, 'two deliveries queued behind the unacknowledged one');
  // the broker's sweep runs every second; a client that completed no flow since gets settled
  await waitUntil(() => [...queued(s), ...s.inflight.inOrder().map(([, d]) => d)].every((d) => d.payload.buffer.byteLength < SMALL), 'settled deliveries', 5000);

  const got: string[] = [];
  let p: Packet = first;
  for (let i = 0; i < 2; i++) {
    sub.send({ cmd: 'puback', messageId: (p as mqttPacket.IPublishPacket).messageId! });
    p = await sub.expect('publish');
    got.push(p.payload.toString());
  }
  assert.deepEqual(got, ['two', 'three']);
});

test('settling a protected delivery keeps its ciphertext tail and its lead byte for byte, once', () => {
  // a read of 64 KiB with the envelope in it, and a trusted-component answer of 64 KiB with the lead in it
  const read = Buffer.alloc(65536, 0xaa);
  const envelope = read.subarray(1000, 1000 + 4300);
  envelope.fill(0x11, 0, 200);
  envelope.fill(0x22, 200);
  const answer = Buffer.alloc(65536, 0xbb);
  const lead = answer.subarray(5000, 5080).fill(0x33);
  const message = makeMessage('ward/1', envelope, 1, false, undefined, 'alice');
  const d: Delivery = { message, payload: envelope.subarray(200), lead: new ProtectedLead(lead, Buffer.alloc(40, 0x44)), qos: 1, retain: false, subscriptionIds: undefined, packetId: 0, state: 'publish', inPublisherForm: false, storeId: 0 };

  settleDelivery(d);
  assert.equal(message.payload.buffer.byteLength, 4300);
  assert.deepEqual(message.payload, envelope);
  assert.equal(d.payload.buffer, message.payload.buffer, 'the tail is a view of the message copy');
  assert.deepEqual(d.payload, envelope.subarray(200));
  const settled = d.lead as ProtectedLead;
  assert.equal(settled.shared.buffer.byteLength, 80);
  assert.deepEqual(Buffer.from(settled.shared), Buffer.from(lead));

  const payload = d.payload;
  settleDelivery(d);
  assert.equal(d.payload, payload, 'a settled delivery is left as it is');
  assert.equal(d.lead, settled);
});
