/** The hand-written PUBLISH header of the fan-out path, byte for byte against mqtt-packet's generate. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type IPublishPacket } from 'mqtt-packet';
import { publishHeader } from '../../src/mqtt/publish-header.js';

type QoS = 0 | 1 | 2;

/** mqtt-packet's bytes for the same PUBLISH; a v5 packet without properties has an empty property set. */
function reference(topic: string, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, packetId: number, v5: boolean): Buffer {
  const packet: IPublishPacket = { cmd: 'publish', topic, payload, qos, retain, dup };
  if (qos > 0) packet.messageId = packetId;
  if (v5) packet.properties = {};
  return mqttPacket.generate(packet, { protocolVersion: v5 ? 5 : 4 });
}

function ours(topic: string, payload: Buffer, qos: QoS, retain: boolean, dup: boolean, packetId: number, v5: boolean): Buffer {
  const header = publishHeader(Buffer.from(topic), payload.length, qos, retain, dup, packetId, v5);
  return Buffer.concat([header, payload]);
}

test('every combination of version, QoS, dup and retain gives mqtt-packet\'s bytes, the payload not copied into the header', () => {
  let n = 0;
  for (const v5 of [false, true]) {
    for (const qos of [0, 1, 2] as const) {
      for (const dup of [false, true]) {
        for (const retain of [false, true]) {
          for (const [topic, packetId] of [['a', 1], ['sensors/ü/température', 0xfffe], ['x/'.repeat(100), 0x8000], ['$SYS/broker', 65535]] as const) {
            const payload = Buffer.from(`payload ${n}`);
            const header = publishHeader(Buffer.from(topic), payload.length, qos, retain, dup, packetId, v5);
            const expected = reference(topic, payload, qos, retain, dup, packetId, v5);
            assert.equal(header.length, expected.length - payload.length, 'the header ends where the payload starts');
            assert.deepEqual(Buffer.concat([header, payload]), expected, `v${v5 ? 5 : 4} qos ${qos} dup ${dup} retain ${retain} topic ${topic.slice(0, 10)}`);
            n++;
          }
        }
      }
    }
  }
  assert.equal(n, 2 * 3 * 2 * 2 * 4);
});

test('the first byte is 0x30 | dup << 3 | qos << 1 | retain, and a v5 header ends in a zero property length', () => {
  const payload = Buffer.alloc(0);
  assert.deepEqual([...publishHeader(Buffer.from('t'), 0, 0, false, false, 0, false)], [0x30, 3, 0, 1, 0x74]);
  assert.deepEqual([...publishHeader(Buffer.from('t'), 0, 2, true, true, 0x0102, false)], [0x3d, 5, 0, 1, 0x74, 1, 2]);
  assert.deepEqual([...publishHeader(Buffer.from('t'), 0, 1, false, false, 7, true)], [0x32, 6, 0, 1, 0x74, 0, 7, 0]);
  assert.deepEqual(ours('t', payload, 1, false, false, 7, true), reference('t', payload, 1, false, false, 7, true));
});

test('the remaining length is right on both sides of every variable-length boundary (1 to 4 bytes), for v3.1.1 and v5', () => {
  const topic = 'bench/boundary';
  for (const v5 of [false, true]) {
    for (const qos of [0, 1] as const) {
      const fixed = 2 + topic.length + (qos > 0 ? 2 : 0) + (v5 ? 1 : 0);
      for (const [remaining, lengthBytes] of [[127, 1], [128, 2], [16_383, 2], [16_384, 3], [2_097_151, 3], [2_097_152, 4]] as const) {
        const payload = Buffer.alloc(remaining - fixed, 0x5a);
        const header = publishHeader(Buffer.from(topic), payload.length, qos, false, false, 42, v5);
        assert.equal(header.length, 1 + lengthBytes + fixed, `remaining ${remaining}`);
        assert.deepEqual(Buffer.concat([header, payload]), reference(topic, payload, qos, false, false, 42, v5), `v${v5 ? 5 : 4} qos ${qos} remaining ${remaining}`);
      }
    }
  }
});

test('what mqtt-packet parses from the hand-written header and the payload is the PUBLISH that was asked for', () => {
  for (const v5 of [false, true]) {
    const parser = mqttPacket.parser({ protocolVersion: v5 ? 5 : 4 });
    const got: IPublishPacket[] = [];
    parser.on('packet', (p) => got.push(p as IPublishPacket));
    parser.on('error', (err) => assert.fail(err));
    parser.parse(ours('home/ü/door', Buffer.from('open'), 2, true, true, 513, v5));
    assert.equal(got.length, 1);
    const p = got[0]!;
    assert.deepEqual([p.topic, Buffer.from(p.payload).toString(), p.qos, p.retain, p.dup, p.messageId], ['home/ü/door', 'open', 2, true, true, 513]);
  }
});
