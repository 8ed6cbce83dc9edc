/** MQTT 5 flow control and size limits: topic aliases, Receive Maximum and Maximum Packet Size, both ways. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { totalPacketSize } from '../../src/mqtt/codec.js';
import { codes, inboxOf, startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';

const MAX_PACKET = 2048;
let tb: TestBroker;
before(async () => {
  tb = await startTestBroker((c) => {
    c.limits.maxPacketSize = MAX_PACKET;
  });
});
after(() => tb.close());

const publish = (topic: string, payload: string | Buffer, extra: Partial<IPublishPacket> = {}): IPublishPacket => ({
  cmd: 'publish',
  topic,
  payload,
  qos: 0,
  dup: false,
  retain: false,
  ...extra,
});

describe('topic aliases', () => {
  test('a client may set a topic alias and then publish with the alias alone', async () => {
    const topic = unique('alias/in');
    const sub = await tb.mqtt({ protocolVersion: 5 });
    await sub.subscribeAsync(topic, { qos: 1 });
    const raw = await tb.raw(5);
    const connack = await raw.connect({ clientId: unique('alias-in') });
    assert.equal(connack.properties?.topicAliasMaximum, 16);
    raw.send(publish(topic, 'set', { properties: { topicAlias: 3 } }));
    raw.send(publish('', 'use', { properties: { topicAlias: 3 } }));
    const got = await inboxOf(sub).take(2);
    assert.deepEqual(got.map((m) => [m.topic, m.payload]), [[topic, 'set'], [topic, 'use']]);
  });

  for (const alias of [0, 17]) {
    test(`topic alias ${alias} (outside 1..Topic Alias Maximum) gets DISCONNECT 0x94 and the connection closed`, async () => {
      const raw = await tb.raw(5);
      await raw.connect({ clientId: unique('alias-bad') });
      raw.send(publish(unique('alias/bad'), 'x', { properties: { topicAlias: alias } }));
      const rest = await raw.closedByBroker();
      assert.deepEqual(codes(rest), [['disconnect', 0x94]]);
    });
  }

  test('the broker uses topic aliases towards a client that allows them, never above its maximum', async () => {
    const topics = [unique('alias/out-a'), unique('alias/out-b'), unique('alias/out-c')];
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('alias-out'), properties: { topicAliasMaximum: 2 } });
    for (const t of topics) await raw.subscribe(t, 0);
    const pub = await tb.mqtt({ protocolVersion: 5 });
    const sequence = [topics[0]!, topics[0]!, topics[1]!, topics[1]!, topics[2]!, topics[0]!];
    for (const [i, t] of sequence.entries()) await pub.publishAsync(t, `m${i}`, { qos: 1 });
    const aliasOf = new Map<number, string>();
    const seen: string[] = [];
    let aliasOnly = 0;
    for (let i = 0; i < sequence.length; i++) {
      const p = await raw.expect('publish');
      const alias = p.properties?.topicAlias;
      let topic = p.topic;
      if (alias !== undefined) {
        assert.ok(alias >= 1 && alias <= 2, `alias ${alias} within the client's maximum`);
        if (topic.length > 0) aliasOf.set(alias, topic);
        else {
          topic = aliasOf.get(alias) ?? assert.fail(`alias ${alias} used before it was set`);
          aliasOnly++;
        }
      }
      seen.push(topic);
    }
    assert.deepEqual(seen, sequence);
    assert.ok(aliasOnly > 0, 'a repeated topic went out with the alias alone');
    const sub = await tb.raw(5);
    await sub.connect({ clientId: unique('alias-none') });
    await sub.subscribe(topics[0]!, 0);
    await pub.publishAsync(topics[0]!, 'plain', { qos: 0 });
    const plain = await sub.expect('publish');
    assert.equal(plain.topic, topics[0]);
    assert.equal(plain.properties?.topicAlias, undefined, 'no alias for a client that did not allow them');
  });
});

describe('Receive Maximum', () => {
  test('the broker keeps at most Receive Maximum QoS 1 messages unacknowledged towards a client', async () => {
    const topic = unique('recvmax/out');
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('recvmax-out'), properties: { receiveMaximum: 2 } });
    await raw.subscribe(topic, 1);
    const pub = await tb.mqtt({ protocolVersion: 5 });
    for (const m of ['m1', 'm2', 'm3']) await pub.publishAsync(topic, m, { qos: 1 });
    await pub.publishAsync(topic, 'q0', { qos: 0 }); // QoS 0 is not held back
    const first = [await raw.expect('publish'), await raw.expect('publish'), await raw.expect('publish')];
    assert.deepEqual(first.map((p) => String(p.payload)), ['m1', 'm2', 'q0'], 'm3 waits for an acknowledgement');
    raw.send({ cmd: 'puback', messageId: first[0]!.messageId });
    assert.equal(String((await raw.expect('publish')).payload), 'm3');
  });

  test('a session resumed with a smaller Receive Maximum gets at most that many unacknowledged QoS 1 messages, then the rest in order as it acknowledges', async () => {
    const topic = unique('recvmax/resume');
    const clientId = unique('recvmax-resume');
    const first = await tb.raw(5);
    await first.connect({ clientId, clean: true, properties: { receiveMaximum: 10, sessionExpiryInterval: 60 } });
    await first.subscribe(topic, 1);
    const pub = await tb.mqtt({ protocolVersion: 5 });
    const sent = Array.from({ length: 10 }, (_, i) => `m${i}`);
    for (const m of sent) await pub.publishAsync(topic, m, { qos: 1 });
    const ids = new Map<string, number>();
    for (const m of sent) {
      const p = await first.expect('publish');
      assert.equal(String(p.payload), m);
      ids.set(m, p.messageId!);
    }
    // all 10 stay unacknowledged; the connection drops
    first.destroy();
    await waitUntil(() => !tb.broker.clients.has(clientId), 'the first connection is gone');

    const back = await tb.raw(5);
    const connack = await back.connect({ clientId, clean: false, properties: { receiveMaximum: 2, sessionExpiryInterval: 60 } });
    assert.equal(connack.sessionPresent, true);
    /** Every packet the broker sends before it answers a PINGREQ sent now (a barrier, no sleep). */
    const untilPong = async (): Promise<Packet[]> => {
      back.send({ cmd: 'pingreq' });
      const got: Packet[] = [];
      for (let p = await back.next(); p.cmd !== 'pingresp'; p = await back.next()) got.push(p);
      return got;
    };
    const summary = (packets: Packet[]): [string, string, boolean, number | undefined][] =>
      packets.map((p) => (p.cmd === 'publish' ? [p.cmd, String(p.payload), p.dup, p.messageId] : [p.cmd, '', false, undefined]));
    const resent = (m: string): [string, string, boolean, number | undefined] => ['publish', m, true, ids.get(m)];

    assert.deepEqual(summary(await untilPong()), [resent('m0'), resent('m1')], 'only Receive Maximum (2) resent at once');
    // a message published now waits behind the ones still to be resent
    await pub.publishAsync(topic, 'm10', { qos: 1 });
    assert.deepEqual(await untilPong(), [], 'nothing more before an acknowledgement');

    const received = ['m0', 'm1'];
    for (let i = 0; i < 9; i++) {
      back.send({ cmd: 'puback', messageId: ids.get(received[i]!)! });
      const got = await untilPong();
      assert.equal(got.length, 1, `one PUBLISH per acknowledgement (after ${received[i]}): ${JSON.stringify(summary(got))}`);
      const p = got[0]!;
      assert.equal(p.cmd, 'publish');
      received.push(String(p.payload));
      if (i < 8) assert.deepEqual(summary(got), [resent(`m${i + 2}`)]);
      else assert.deepEqual(summary(got).map(([cmd, m, dup]) => [cmd, m, dup]), [['publish', 'm10', false]], 'the new message comes last, as a first delivery');
    }
    assert.deepEqual(received, [...sent, 'm10']);
  });

  test('on resume, QoS 2 flows awaiting PUBCOMP count against the new Receive Maximum: PUBRELs first, the held PUBLISH after a PUBCOMP', async () => {
    const topic = unique('recvmax/resume2');
    const clientId = unique('recvmax-resume2');
    const first = await tb.raw(5);
    await first.connect({ clientId, clean: true, properties: { receiveMaximum: 10, sessionExpiryInterval: 60 } });
    await first.subscribe(topic, 2);
    const pub = await tb.mqtt({ protocolVersion: 5 });
    for (const m of ['q0', 'q1', 'q2']) await pub.publishAsync(topic, m, { qos: 2 });
    const got = [await first.expect('publish'), await first.expect('publish'), await first.expect('publish')];
    assert.deepEqual(got.map((p) => String(p.payload)), ['q0', 'q1', 'q2']);
    const [id0, id1, id2] = got.map((p) => p.messageId!);
    for (const id of [id0, id1]) {
      first.send({ cmd: 'pubrec', messageId: id });
      assert.equal((await first.expect('pubrel')).messageId, id);
    }
    first.destroy();
    await waitUntil(() => !tb.broker.clients.has(clientId), 'the first connection is gone');

    const back = await tb.raw(5);
    assert.equal((await back.connect({ clientId, clean: false, properties: { receiveMaximum: 2, sessionExpiryInterval: 60 } })).sessionPresent, true);
    const untilPong = async (): Promise<Packet[]> => {
      back.send({ cmd: 'pingreq' });
      const out: Packet[] = [];
      for (let p = await back.next(); p.cmd !== 'pingresp'; p = await back.next()) out.push(p);
      return out;
    };
    const summary = (packets: Packet[]): [string, number | undefined, string][] =>
      packets.map((p) => [p.cmd, p.messageId, p.cmd === 'publish' ? `${String(p.payload)} dup=${p.dup}` : '']);
    assert.deepEqual(summary(await untilPong()), [['pubrel', id0, ''], ['pubrel', id1, '']], 'two flows awaiting PUBCOMP fill Receive Maximum 2');
    back.send({ cmd: 'pubcomp', messageId: id0 });
    assert.deepEqual(summary(await untilPong()), [['publish', id2, 'q2 dup=true']]);
  });

  test('a client exceeding the broker\'s Receive Maximum with QoS 2 gets DISCONNECT 0x93', async () => {
    const raw = await tb.raw(5);
    const connack = await raw.connect({ clientId: unique('recvmax-in') });
    const max = connack.properties?.receiveMaximum ?? 65535;
    assert.equal(max, tb.config.limits.receiveMaximum);
    const topic = unique('recvmax/in');
    for (let id = 1; id <= max; id++) raw.send(publish(topic, 'x', { qos: 2, messageId: id }));
    for (let id = 1; id <= max; id++) assert.equal((await raw.expect('pubrec')).messageId, id);
    raw.send(publish(topic, 'one too many', { qos: 2, messageId: max + 1 }));
    const rest = await raw.closedByBroker();
    assert.deepEqual(codes(rest), [['disconnect', 0x93]]);
  });
});

describe('Maximum Packet Size', () => {
  for (const protocolVersion of [4, 5] as const) {
    test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: a packet above the broker's maximum closes that connection and the broker keeps serving others`, async () => {
      const topic = unique('maxpkt/in');
      const bystander = await tb.mqtt({ protocolVersion: 5 });
      await bystander.subscribeAsync(topic, { qos: 1 });
      const raw = await tb.raw(protocolVersion);
      const connack = await raw.connect({ clientId: unique('maxpkt-in') });
      if (protocolVersion === 5) assert.equal(connack.properties?.maximumPacketSize, MAX_PACKET);
      raw.send(publish(topic, Buffer.alloc(MAX_PACKET), { qos: 1, messageId: 1 }));
      const rest = await raw.closedByBroker();
      const expected = protocolVersion === 5 ? [['disconnect', 0x95]] : [];
      assert.deepEqual(codes(rest), expected);
      const pub = await tb.mqtt({ protocolVersion: 5 });
      await pub.publishAsync(topic, 'still here', { qos: 1 });
      assert.equal((await inboxOf(bystander).next()).payload, 'still here');
    });
  }

  test('a packet announcing a length above the maximum is refused before its body arrives', async () => {
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('maxpkt-header') });
    // PUBLISH QoS 0 announcing 10 MB (remaining length 0x80 0xad 0xe2 0x04), then only a few bytes
    raw.write(Buffer.from([0x30, 0x80, 0xad, 0xe2, 0x04, 0x00, 0x01, 0x61]));
    const rest = await raw.closedByBroker();
    assert.deepEqual(codes(rest), [['disconnect', 0x95]]);
  });

  test('the broker never sends a client a packet above the Maximum Packet Size it announced', async () => {
    const topic = unique('maxpkt/out');
    const limit = 128;
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('maxpkt-out'), properties: { maximumPacketSize: limit, receiveMaximum: 1 } });
    await raw.subscribe(topic, 1);
    const pub = await tb.mqtt({ protocolVersion: 5 });
    await pub.publishAsync(topic, Buffer.alloc(limit), { qos: 1 });
    await pub.publishAsync(topic, Buffer.alloc(limit), { qos: 0 });
    await pub.publishAsync(topic, 'small', { qos: 1 });
    const p = await raw.expect('publish');
    assert.equal(String(p.payload), 'small', 'the oversized messages were skipped');
    assert.ok(totalPacketSize(p.length ?? 0) <= limit);
    raw.send({ cmd: 'puback', messageId: p.messageId });
    // with Receive Maximum 1, a skipped QoS 1 message holding its slot would block everything after it
    for (let i = 0; i < 3; i++) await pub.publishAsync(topic, `after${i}`, { qos: 1 });
    for (let i = 0; i < 3; i++) {
      const next = await raw.expect('publish');
      assert.equal(String(next.payload), `after${i}`);
      raw.send({ cmd: 'puback', messageId: next.messageId });
    }
  });
});
