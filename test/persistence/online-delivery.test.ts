/** Deliveries to a connected persistent session: they leave with the commit that stores them. */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import type { Packet } from 'mqtt-packet';
import { startTestBroker, waitUntil, type TestBroker } from '../helpers/broker.js';

const brokers: TestBroker[] = [];
after(() => Promise.allSettled(brokers.map((b) => b.close())));

test('a persistent client that subscribes to its own topic gets each PUBACK/PUBREC in the same read as its copy or before it', async () => {
  const b = await startTestBroker();
  brokers.push(b);
  const c = await b.raw(5);
  // Every packet from the broker with the number of the socket read it came in.
  const seen: { packet: Packet; read: number }[] = [];
  const parser = mqttPacket.parser({ protocolVersion: 5 });
  let reads = 0;
  parser.on('packet', (packet: Packet) => seen.push({ packet, read: reads }));
  c.socket.on('data', (chunk: Buffer) => {
    reads++;
    parser.parse(chunk);
  });
  await c.connect({ clientId: 'self-subscriber', clean: true, properties: { sessionExpiryInterval: 600 } });
  await c.subscribe('own/topic', 2);

  const sent = [1, 2, 1, 2, 1].map((qos) => ({ qos, id: c.packetId() }));
  for (const { qos, id } of sent) {
    c.send({ cmd: 'publish', topic: 'own/topic', payload: Buffer.from(`m${id}`), qos: qos as 1 | 2, messageId: id, retain: false, dup: false });
    // one at a time, as a client that waits for its copy before it goes on
    await waitUntil(() => seen.some((s) => s.packet.cmd === 'publish' && String(s.packet.payload) === `m${id}`), `the copy of m${id}`);
    await waitUntil(() => seen.some((s) => (s.packet.cmd === 'puback' || s.packet.cmd === 'pubrec') && s.packet.messageId === id), `the acknowledgement of m${id}`);
  }

  for (const { qos, id } of sent) {
    const copy = seen.find((s) => s.packet.cmd === 'publish' && String(s.packet.payload) === `m${id}`)!;
    const ack = seen.find((s) => s.packet.cmd === (qos === 1 ? 'puback' : 'pubrec') && s.packet.messageId === id)!;
    assert.ok(ack.read <= copy.read, `m${id} (QoS ${qos}): its copy came in read ${copy.read}, its acknowledgement only in read ${ack.read}`);
  }
});
