/**
 * src/mqtt/codec.ts and parser-pool.ts drive mqtt-packet's parser through state it keeps but does
 * not document (see the comment at the top of codec.ts for why). package.json pins the exact
 * version; these tests fail when an update changes any of the internals relied on, so that an
 * update is a decision, not an accident.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import mqttPacket, { type Packet } from 'mqtt-packet';
import type { ParserInternals } from '../../src/mqtt/parser-pool.js';

const require = createRequire(import.meta.url);

function parser(protocolVersion?: number): { internals: ParserInternals; packets: Packet[]; errors: Error[] } {
  const p = mqttPacket.parser(protocolVersion === undefined ? undefined : { protocolVersion });
  const packets: Packet[] = [];
  const errors: Error[] = [];
  p.on('packet', (packet: Packet) => packets.push(packet));
  p.on('error', (err: Error) => errors.push(err));
  return { internals: p as unknown as ParserInternals, packets, errors };
}

function idle(i: ParserInternals): boolean {
  return i._stateCounter === 0 && i._list.length === 0 && i.packet.length === -1;
}

const publish = (topic: string, payload: Buffer, version = 4): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 1, messageId: 7, retain: false, dup: false }, { protocolVersion: version });

test('package.json pins the exact mqtt-packet version installed', () => {
  const ours = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { dependencies: Record<string, string> };
  const installed = (require('mqtt-packet/package.json') as { version: string }).version;
  assert.match(ours.dependencies['mqtt-packet']!, /^\d+\.\d+\.\d+$/, 'an exact version, no range');
  assert.equal(installed, ours.dependencies['mqtt-packet']);
});

test('a fresh parser and one between whole packets are idle: state 0, empty _list, packet.length -1', () => {
  const { internals, packets } = parser();
  assert.ok(idle(internals));
  assert.equal(internals.parse(publish('a/b', Buffer.from('hi'))), 0, 'parse returns the bytes it holds');
  assert.equal(packets.length, 1);
  assert.ok(idle(internals));
});

test('with the header and length of a packet read, the parser waits in state 2 holding _list bytes of packet.length', () => {
  const { internals, packets } = parser();
  const bytes = publish('t', Buffer.alloc(300, 1));
  const headerBytes = 3; // type byte and a 2-byte remaining length (300 + 5 > 127)
  internals.parse(bytes.subarray(0, headerBytes + 10));
  assert.equal(internals._stateCounter, 2);
  assert.equal(internals.packet.length, bytes.length - headerBytes);
  assert.equal(internals._list.length, 10, 'the bytes after the header');
  assert.ok(!idle(internals));
  // exactly the rest of the packet: emitted, and idle again (how the decoder hands the fast path back)
  const need = internals.packet.length - internals._list.length;
  internals.parse(bytes.subarray(headerBytes + 10, headerBytes + 10 + need));
  assert.equal(packets.length, 1);
  assert.deepEqual((packets[0] as { payload: Buffer }).payload, Buffer.alloc(300, 1));
  assert.ok(idle(internals));
  // an announced length is known before the body arrives (the decoder refuses oversized packets then)
  internals.parse(Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]));
  assert.equal(internals.packet.length, 268_435_455);
});

test('_list.slice(start, end) gives the raw bytes of the packet being parsed', () => {
  const { internals } = parser();
  const bytes = publish('t', Buffer.alloc(300, 1));
  internals.parse(bytes.subarray(0, 13));
  assert.deepEqual(internals._list.slice(0, 10), bytes.subarray(3, 13));
});

test('_parseString, _parseBuffer and _parseNum are called through the instance, so wrapping them there sees every field', () => {
  const { internals, packets } = parser();
  for (const name of ['_parseString', '_parseBuffer', '_parseNum'] as const) assert.equal(typeof internals[name], 'function', name);
  const seen: { raw: Buffer; result: string | null }[] = [];
  const parseString = internals._parseString;
  internals._parseString = () => {
    const start = internals._pos + 2; // the string's bytes follow its 2-byte length at _pos
    const result = parseString.call(internals);
    seen.push({ raw: result === null ? Buffer.alloc(0) : internals._list.slice(start, internals._pos), result });
    return result;
  };
  const nums: number[] = [];
  const parseNum = internals._parseNum;
  internals._parseNum = () => {
    const n = parseNum.call(internals);
    nums.push(n);
    return n;
  };
  const buffers: (Buffer | null)[] = [];
  const parseBuffer = internals._parseBuffer;
  internals._parseBuffer = () => {
    const b = parseBuffer.call(internals);
    buffers.push(b);
    return b;
  };
  internals.parse(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'cl-ü', clean: true, keepalive: 30, username: 'u', password: Buffer.from('pw') }));
  assert.equal(packets.length, 1);
  assert.deepEqual(seen.map((s) => s.result), ['MQTT', 'cl-ü', 'u']);
  assert.deepEqual(seen[1]!.raw, Buffer.from('cl-ü'), 'the raw UTF-8 bytes of the field');
  assert.ok(nums.includes(30), 'the keep alive is read by _parseNum');
  assert.deepEqual(buffers, [Buffer.from('pw')]);
});

test('a field cut short reads as null (string) or -1 (two-byte integer), without an error', () => {
  const cut = (bytes: number[]): { strings: (string | null)[]; nums: number[]; packets: Packet[]; errors: Error[] } => {
    const { internals, packets, errors } = parser();
    const strings: (string | null)[] = [];
    const nums: number[] = [];
    const parseString = internals._parseString;
    const parseNum = internals._parseNum;
    internals._parseString = () => {
      const r = parseString.call(internals);
      strings.push(r);
      return r;
    };
    internals._parseNum = () => {
      const n = parseNum.call(internals);
      nums.push(n);
      return n;
    };
    internals.parse(Buffer.from(bytes));
    return { strings, nums, packets, errors };
  };
  // a QoS 1 PUBLISH whose topic length (5) runs past its 4-byte body
  const topicCut = cut([0x32, 0x04, 0x00, 0x05, 0x61, 0x62]);
  assert.deepEqual(topicCut.strings, [null]);
  // a QoS 1 PUBLISH whose packet id is cut after one byte: emitted, its id read as -1
  const idCut = cut([0x32, 0x04, 0x00, 0x01, 0x61, 0x00]);
  assert.deepEqual(idCut.strings, ['a']);
  assert.ok(idCut.nums.includes(-1));
  assert.equal(idCut.errors.length, 0, 'no error: the decoder must notice by itself');
  assert.equal(idCut.packets.length, 1);
});

test('settings.protocolVersion is what the parser reads to decode v5 properties, and a CONNECT sets it', () => {
  const v5 = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { contentType: 'a/b' } }, { protocolVersion: 5 });
  const a = parser();
  a.internals.settings = { protocolVersion: 5 };
  a.internals.parse(v5);
  assert.equal((a.packets[0] as { properties?: { contentType?: string } }).properties?.contentType, 'a/b');
  const b = parser();
  b.internals.parse(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0 }, { protocolVersion: 5 }));
  assert.equal(b.internals.settings.protocolVersion, 5);
});

test('writeToStream.cacheNumbers is the switch codec.ts turns off, and generate still writes packet ids', () => {
  const w = mqttPacket.writeToStream as unknown as { cacheNumbers: boolean };
  assert.equal(typeof w.cacheNumbers, 'boolean');
  const bytes = mqttPacket.generate({ cmd: 'puback', messageId: 0x1234 });
  assert.deepEqual([...bytes], [0x40, 0x02, 0x12, 0x34]);
});
