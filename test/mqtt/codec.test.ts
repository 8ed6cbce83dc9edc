// The decoder's hand-written fast path (whole PUBLISH and PUBACK packets) must decode exactly what
// mqtt-packet decodes, whatever the chunking, and hand everything else to mqtt-packet unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket, { type Packet } from 'mqtt-packet';
import { Decoder, encode, type ProtocolVersion } from '../../src/mqtt/codec.js';

/** A deterministic pseudo-random sequence, so a failure can be replayed. */
function rng(seed: number): () => number {
  let x = seed;
  return () => {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    return x / 0x7fffffff;
  };
}

function packets(version: ProtocolVersion, n: number, next: () => number): Packet[] {
  const out: Packet[] = [];
  for (let k = 0; k < n; k++) {
    const r = next();
    const qos = Math.floor(next() * 3) as 0 | 1 | 2;
    if (r < 0.45) {
      const size = [0, 1, 100, 127, 128, 16_383, 16_384, 70_000][Math.floor(next() * 8)]!;
      const p: Packet = {
        cmd: 'publish', qos, dup: qos > 0 && next() < 0.3, retain: next() < 0.3,
        topic: ['a', 'sensors/ü/température', 'x/'.repeat(40), ''][Math.floor(next() * (version === 5 ? 4 : 3))]!,
        payload: Buffer.alloc(size, k & 0xff),
      };
      if (qos > 0) p.messageId = 1 + Math.floor(next() * 65_534);
      if (version === 5 && (p.topic === '' || next() < 0.3)) p.properties = { topicAlias: 1 + Math.floor(next() * 9), ...(next() < 0.5 ? { contentType: 'text/plain' } : {}) };
      out.push(p);
    } else if (r < 0.75) {
      const p: Packet = { cmd: 'puback', messageId: 1 + Math.floor(next() * 65_534) };
      if (version === 5 && next() < 0.3) p.reasonCode = 0x10;
      out.push(p);
    } else if (r < 0.85) out.push({ cmd: 'pingreq' });
    else if (r < 0.95) out.push({ cmd: 'pubrec', messageId: 7 });
    else out.push({ cmd: 'subscribe', messageId: 9, subscriptions: [{ topic: 'a/#', qos: 1 }] });
  }
  return out;
}

/** Decodes `stream` in chunks with `decode`: the packets seen, as plain comparable objects. */
function decodeAll(stream: Buffer, cuts: number[], version: ProtocolVersion, fast: boolean): unknown[] {
  const seen: unknown[] = [];
  const onPacket = (p: Packet): void => {
    const { payload, ...rest } = p as Packet & { payload?: Buffer | string | null };
    seen.push({ ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined && v !== null)), payload: payload == null ? null : Buffer.from(payload).toString('hex') });
  };
  let decode: (b: Buffer) => void;
  if (fast) {
    const d = new Decoder(1 << 20, { onPacket: onPacket, onMalformed: (m) => assert.fail(`malformed: ${m}`), onTooLarge: () => assert.fail('too large') });
    d.setProtocolVersion(version);
    decode = (b) => d.push(b);
  } else {
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on('packet', onPacket);
    decode = (b) => void parser.parse(b);
  }
  let from = 0;
  for (const c of [...cuts, stream.length]) {
    decode(stream.subarray(from, c));
    from = c;
  }
  return seen;
}

for (const version of [4, 5] as const) {
  test(`v${version}: the decoder yields what mqtt-packet yields for mixed packet streams cut anywhere`, () => {
    const next = rng(version * 7919);
    for (let round = 0; round < 40; round++) {
      const list = packets(version, 30, next);
      const stream = Buffer.concat(list.map((p) => mqttPacket.generate(p, { protocolVersion: version })));
      const cuts = round % 4 === 0 ? [] : Array.from({ length: 1 + Math.floor(next() * 12) }, () => Math.floor(next() * stream.length)).sort((a, b) => a - b);
      const expected = decodeAll(stream, cuts, version, false);
      assert.equal(expected.length, list.length);
      assert.deepEqual(decodeAll(stream, cuts, version, true), expected, `round ${round}, cuts ${cuts.join(',')}`);
    }
  });
}

test('a malformed PUBLISH after good ones in the same chunk is still refused, and the good ones arrive first', () => {
  const good = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('ok'), qos: 1, messageId: 1, dup: false, retain: false });
  const badUtf8 = Buffer.from([0x30, 0x05, 0x00, 0x01, 0xff, 0x61, 0x62]); // topic is not UTF-8
  const dupQos0 = Buffer.from([0x38, 0x04, 0x00, 0x01, 0x74, 0x61]); // DUP on QoS 0
  for (const bad of [badUtf8, dupQos0]) {
    const seen: string[] = [];
    const d = new Decoder(1 << 20, { onPacket: (p) => seen.push(p.cmd), onMalformed: () => seen.push('malformed'), onTooLarge: () => seen.push('too large') });
    d.setProtocolVersion(4);
    d.push(Buffer.concat([good, good, bad, good]));
    assert.deepEqual(seen, ['publish', 'publish', 'malformed']);
  }
});

test('a PUBLISH over the maximum packet size is refused as too large, also when whole in the chunk', () => {
  const seen: string[] = [];
  const d = new Decoder(100, { onPacket: (p) => seen.push(p.cmd), onMalformed: () => seen.push('malformed'), onTooLarge: () => seen.push('too large') });
  d.setProtocolVersion(4);
  d.push(mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.alloc(200), qos: 0, dup: false, retain: false }));
  assert.deepEqual(seen, ['too large']);
});

test('after a packet split across chunks the fast path takes over again: mqtt-packet only finishes the split packet', () => {
  const one = mqttPacket.generate({ cmd: 'publish', topic: 'secure/stream', payload: Buffer.alloc(4096, 7), qos: 1, messageId: 1, dup: false, retain: false });
  const stream = Buffer.concat(Array.from({ length: 160 }, () => one)); // ~650 kB, cut into 64 KiB chunks below
  let seen = 0;
  const d = new Decoder(1 << 20, { onPacket: () => seen++, onMalformed: (m) => assert.fail(m), onTooLarge: () => assert.fail('too large') });
  d.setProtocolVersion(4);
  // every mqtt-packet parser (the decoder borrows one from a pool) counts what it is fed
  const proto = Object.getPrototypeOf(mqttPacket.parser()) as { parse(this: unknown, b: Buffer): number };
  const parse = proto.parse;
  let fedToParser = 0;
  proto.parse = function (this: unknown, b: Buffer): number {
    fedToParser += b.length;
    return parse.call(this, b);
  };
  try {
    for (let at = 0; at < stream.length; at += 65_536) d.push(stream.subarray(at, at + 65_536));
  } finally {
    proto.parse = parse;
  }
  assert.equal(seen, 160);
  // each of the 10 chunk boundaries splits one onPacket: at most ~2 packets' worth per boundary
  assert.ok(fedToParser <= 10 * 2 * one.length, `${fedToParser} of ${stream.length} bytes went through mqtt-packet`);
});

test('a repeated topic is recognised by its bytes: topics of equal length that differ are decoded apart, and bad bytes are still refused', () => {
  const publish = (topic: Buffer, id: number): Buffer =>
    Buffer.concat([Buffer.from([0x32, 2 + topic.length + 2 + 1]), Buffer.from([0, topic.length]), topic, Buffer.from([0, id, 0x78])]);
  const topics = ['a/b', 'a/b', 'a/c', 'a/b', 'b/b', 'b/b'];
  const seen: string[] = [];
  const d = new Decoder(1 << 20, {
    onPacket: (p) => seen.push(p.cmd === 'publish' ? `${p.topic}#${p.messageId}` : p.cmd),
    onMalformed: () => seen.push('malformed'),
    onTooLarge: () => seen.push('too large'),
  });
  d.setProtocolVersion(4);
  d.push(Buffer.concat(topics.map((t, i) => publish(Buffer.from(t), i + 1))));
  // same length as the remembered 'b/b', one byte not UTF-8
  d.push(publish(Buffer.from([0x62, 0x2f, 0xff]), 9));
  assert.deepEqual(seen, [...topics.map((t, i) => `${t}#${i + 1}`), 'malformed']);
});

test('decoders borrow parsers only while a packet is partial: interleaved decoders each get their own packets, whole, and hold nothing between packets', () => {
  const next = rng(4242);
  const streams = [4, 5, 5].map((version) => {
    const list = packets(version as ProtocolVersion, 40, next);
    const bytes = Buffer.concat(list.map((p) => mqttPacket.generate(p, { protocolVersion: version as ProtocolVersion })));
    const cuts = Array.from({ length: 25 }, () => Math.floor(next() * bytes.length)).sort((a, b) => a - b);
    return { version: version as ProtocolVersion, bytes, cuts: [...cuts, bytes.length], expected: decodeAll(bytes, cuts, version as ProtocolVersion, false) };
  });
  const seen: unknown[][] = streams.map(() => []);
  const decoders = streams.map((s, i) => {
    const d = new Decoder(1 << 20, {
      onPacket: (p) => {
        const { payload, ...rest } = p as Packet & { payload?: Buffer | string | null };
        seen[i]!.push({ ...Object.fromEntries(Object.entries(rest).filter(([, v]) => v !== undefined && v !== null)), payload: payload == null ? null : Buffer.from(payload).toString('hex') });
      },
      onMalformed: (m) => assert.fail(`malformed: ${m}`),
      onTooLarge: () => assert.fail('too large'),
    });
    d.setProtocolVersion(s.version);
    return d;
  });
  // one cut of each stream in turn
  const from = streams.map(() => 0);
  for (let k = 0; k < 26; k++) {
    streams.forEach((s, i) => {
      decoders[i]!.push(s.bytes.subarray(from[i], s.cuts[k]));
      from[i] = s.cuts[k]!;
    });
  }
  streams.forEach((s, i) => assert.deepEqual(seen[i], s.expected, `stream ${i} (v${s.version})`));
  for (const d of decoders) assert.equal(d.buffered, 0);
});

test('a parser given back after a v5 CONNECT parses the next decoder\'s packets in that decoder\'s version', () => {
  const got: Packet[] = [];
  const events = { onPacket: (p: Packet) => got.push(p), onMalformed: (m: string) => assert.fail(m), onTooLarge: () => assert.fail('too large') };
  const a = new Decoder(1 << 20, events);
  // (a property: the plain CONNECT is decoded without a parser)
  a.push(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'v5', clean: true, keepalive: 0, properties: { sessionExpiryInterval: 10 } }, { protocolVersion: 5 }));
  a.setProtocolVersion(5);
  const b = new Decoder(1 << 20, events);
  b.setProtocolVersion(4);
  b.push(mqttPacket.generate({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'a/b', qos: 1 }] }, { protocolVersion: 4 }));
  assert.deepEqual(got.map((p) => p.cmd), ['connect', 'subscribe']);
  assert.deepEqual((got[1] as { subscriptions: unknown[] }).subscriptions, [{ topic: 'a/b', qos: 1 }]);
});

/** What a fresh decoder makes of `bytes` pushed whole (the fast path may take a CONNECT) or a byte at a time (mqtt-packet only). */
function connectOutcome(bytes: Buffer, whole: boolean): unknown[] {
  const seen: unknown[] = [];
  const d: Decoder = new Decoder(1 << 20, {
    onPacket: (p) => {
      // as the CONNECT handler does
      if (p.cmd === 'connect') d.setProtocolVersion((p.protocolVersion ?? 4) as ProtocolVersion);
      const { payload, password, ...rest } = p as Packet & { payload?: Buffer | null; password?: Buffer };
      seen.push({ ...rest, payload: payload == null ? null : payload.toString('hex'), password: password?.toString('hex') });
    },
    onMalformed: (m) => seen.push(`malformed: ${m}`),
    onTooLarge: () => seen.push('too large'),
  });
  if (whole) d.push(bytes);
  else for (let i = 0; i < bytes.length; i++) d.push(bytes.subarray(i, i + 1));
  return seen;
}

test('CONNECT: the plain form decoded by hand equals what mqtt-packet decodes, and every other or mutated form is still judged by mqtt-packet', () => {
  const base = { cmd: 'connect', protocolId: 'MQTT', clean: true, keepalive: 30 } as const;
  const forms: [Packet, ProtocolVersion][] = [];
  for (const protocolVersion of [3, 4, 5] as const) {
    const protocolId = protocolVersion === 3 ? 'MQIsdp' : 'MQTT';
    for (const clientId of protocolVersion === 3 ? ['c-1'] : ['', 'c-1', 'ü-client']) {
      forms.push([{ ...base, protocolId, protocolVersion, clientId }, protocolVersion]);
      forms.push([{ ...base, protocolId, protocolVersion, clientId, clean: clientId === '', keepalive: 0, username: 'user', password: Buffer.from('secret') }, protocolVersion]);
      forms.push([{ ...base, protocolId, protocolVersion, clientId, username: 'only-user' }, protocolVersion]);
      forms.push([{ ...base, protocolId, protocolVersion, clientId, will: { topic: 'w', payload: Buffer.from('gone'), qos: 1, retain: true } }, protocolVersion]);
      if (protocolVersion === 5) forms.push([{ ...base, protocolVersion, clientId, properties: { sessionExpiryInterval: 60, receiveMaximum: 5 } }, protocolVersion]);
    }
  }
  const next = rng(1883);
  let checked = 0;
  for (const [packet, version] of forms) {
    const bytes = mqttPacket.generate(packet, { protocolVersion: version });
    const whole = connectOutcome(bytes, true);
    assert.deepEqual(whole, connectOutcome(bytes, false), `${bytes.toString('hex')}`);
    assert.equal(whole.length, 1);
    assert.equal((whole[0] as { cmd: string }).cmd, 'connect');
    // mutations: a byte changed, the packet cut short or followed by a byte of more
    for (let k = 0; k < 60; k++) {
      const m = Buffer.from(bytes);
      const r = next();
      let mutated: Buffer;
      if (r < 0.7) {
        m[Math.floor(next() * m.length)] = Math.floor(next() * 256);
        mutated = m;
      } else if (r < 0.85) mutated = m.subarray(0, 2 + Math.floor(next() * (m.length - 2)));
      else {
        mutated = Buffer.concat([m, Buffer.from([Math.floor(next() * 256)])]);
        mutated[1]!++;
      }
      assert.deepEqual(connectOutcome(mutated, true), connectOutcome(mutated, false), `mutated ${mutated.toString('hex')}`);
      checked++;
    }
  }
  assert.ok(checked > 1000);
});

test('a plain CONNECT and the PUBLISH behind it in one chunk: the PUBLISH is decoded in the CONNECT\'s version', () => {
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'c', clean: true, keepalive: 0 }, { protocolVersion: 5 });
  const publish = mqttPacket.generate({ cmd: 'publish', topic: 't', payload: Buffer.from('x'), qos: 0, dup: false, retain: false, properties: { contentType: 'a' } }, { protocolVersion: 5 });
  const got: Packet[] = [];
  const d = new Decoder(1 << 20, { onPacket: (p) => got.push(p), onMalformed: (m) => assert.fail(m), onTooLarge: () => assert.fail('too large') });
  d.push(Buffer.concat([connect, publish]));
  assert.deepEqual(got.map((p) => p.cmd), ['connect', 'publish']);
  assert.deepEqual((got[1] as { properties?: object }).properties, { contentType: 'a' });
});

test('CONNACK for MQTT 3.1.1 is the four bytes mqtt-packet makes', () => {
  for (const sessionPresent of [false, true]) {
    for (const returnCode of [0, 1, 5]) {
      const packet: Packet = { cmd: 'connack', sessionPresent, returnCode };
      assert.deepEqual(encode(packet, 4), mqttPacket.generate(packet, { protocolVersion: 4 }));
    }
  }
});
