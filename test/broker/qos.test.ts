/** QoS 0/1/2 in both directions, and redelivery of unacknowledged messages on reconnect. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IPublishPacket, QoS } from 'mqtt-packet';
import { inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker();
});
after(() => tb.close());

for (const protocolVersion of [4, 5] as const) {
  describe(`MQTT ${protocolVersion === 4 ? '3.1.1' : '5'}`, () => {
    test('QoS 0, 1 and 2 messages reach a QoS 2 subscriber at the QoS they were published with', async () => {
      const topic = unique('qos/all');
      const sub = await tb.mqtt({ protocolVersion });
      const inbox = inboxOf(sub);
      await sub.subscribeAsync(topic, { qos: 2 });
      const pub = await tb.mqtt({ protocolVersion });
      for (const qos of [0, 1, 2] as const) await pub.publishAsync(topic, `q${qos}`, { qos });
      const got = await inbox.take(3);
      assert.deepEqual(
        got.map((m) => [m.payload, m.packet.qos]),
        [['q0', 0], ['q1', 1], ['q2', 2]],
      );
    });

    test('a message is delivered at the lower of the published and the granted QoS', async () => {
      const topic = unique('qos/downgrade');
      const sub = await tb.mqtt({ protocolVersion });
      const inbox = inboxOf(sub);
      const granted = await sub.subscribeAsync(topic, { qos: 1 });
      assert.equal(granted[0]?.qos, 1);
      const pub = await tb.mqtt({ protocolVersion });
      await pub.publishAsync(topic, 'two', { qos: 2 });
      const m = await inbox.next();
      assert.equal(m.packet.qos, 1);
      assert.equal(m.payload, 'two');
    });

    test('an incoming QoS 1 PUBLISH is answered with a PUBACK carrying its packet id', async () => {
      const raw = await tb.raw(protocolVersion);
      await raw.connect({ clientId: unique('q1-in') });
      raw.send({ cmd: 'publish', topic: unique('qos/in1'), payload: 'x', qos: 1, dup: false, retain: false, messageId: 4242 });
      const ack = await raw.expect('puback');
      assert.equal(ack.messageId, 4242);
    });

    test('an incoming QoS 2 message is routed once even if re-sent before PUBREL, and PUBREL gets PUBCOMP', async () => {
      const topic = unique('qos/in2');
      const sub = await tb.mqtt({ protocolVersion });
      const inbox = inboxOf(sub);
      // QoS 1: MQTT.js hands a QoS 1 message over on arrival (QoS 2 only at PUBREL), so order is wire order
      await sub.subscribeAsync(topic, { qos: 1 });
      const raw = await tb.raw(protocolVersion);
      await raw.connect({ clientId: unique('q2-in') });
      const publish: IPublishPacket = { cmd: 'publish', topic, payload: 'once', qos: 2, dup: false, retain: false, messageId: 7 };
      raw.send(publish);
      assert.equal((await raw.expect('pubrec')).messageId, 7);
      raw.send({ ...publish, dup: true });
      assert.equal((await raw.expect('pubrec')).messageId, 7);
      raw.send({ cmd: 'pubrel', messageId: 7 });
      assert.equal((await raw.expect('pubcomp')).messageId, 7);
      raw.send({ cmd: 'publish', topic, payload: 'marker', qos: 0, dup: false, retain: false });
      const got = await inbox.take(2);
      assert.deepEqual(got.map((m) => m.payload), ['once', 'marker']);
    });

    test('an outgoing QoS 2 message follows PUBLISH, PUBREC, PUBREL, PUBCOMP with one packet id', async () => {
      const topic = unique('qos/out2');
      const raw = await tb.raw(protocolVersion);
      await raw.connect({ clientId: unique('q2-out') });
      await raw.subscribe(topic, 2);
      const pub = await tb.mqtt({ protocolVersion });
      await pub.publishAsync(topic, 'exactly once', { qos: 2 });
      const p = await raw.expect('publish');
      assert.equal(p.qos, 2);
      assert.equal(p.dup, false);
      assert.equal(String(p.payload), 'exactly once');
      raw.send({ cmd: 'pubrec', messageId: p.messageId });
      assert.equal((await raw.expect('pubrel')).messageId, p.messageId);
      raw.send({ cmd: 'pubcomp', messageId: p.messageId });
      // the flow is over: the next message uses the session normally
      await pub.publishAsync(topic, 'next', { qos: 0 });
      assert.equal(String((await raw.expect('publish')).payload), 'next');
    });

    for (const qos of [1, 2] as QoS[]) {
      test(`an unacknowledged QoS ${qos} message is sent again with the dup flag when the session reconnects`, async () => {
        const topic = unique(`qos/redeliver${qos}`);
        const clientId = unique(`redeliver${qos}`);
        const persistent = protocolVersion === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
        const first = await tb.raw(protocolVersion);
        await first.connect({ clientId, ...persistent });
        await first.subscribe(topic, qos);
        const pub = await tb.mqtt({ protocolVersion });
        await pub.publishAsync(topic, 'unacked', { qos });
        const original = await first.expect('publish');
        assert.equal(original.dup, false);
        first.destroy(); // no PUBACK / PUBREC

        const second = await tb.raw(protocolVersion);
        const connack = await second.connect({ clientId, ...persistent });
        assert.equal(connack.sessionPresent, true);
        const again = await second.expect('publish');
        assert.equal(again.dup, true);
        assert.equal(again.qos, qos);
        assert.equal(again.messageId, original.messageId);
        assert.equal(String(again.payload), 'unacked');
        second.send({ cmd: qos === 1 ? 'puback' : 'pubrec', messageId: again.messageId });
        if (qos === 2) second.send({ cmd: 'pubcomp', messageId: (await second.expect('pubrel')).messageId });
      });
    }

    test('a QoS 2 message acknowledged with PUBREC gets its PUBREL again, not the PUBLISH, after a reconnect', async () => {
      const topic = unique('qos/pubrel-again');
      const clientId = unique('pubrel-again');
      const persistent = protocolVersion === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
      const first = await tb.raw(protocolVersion);
      await first.connect({ clientId, ...persistent });
      await first.subscribe(topic, 2);
      const pub = await tb.mqtt({ protocolVersion });
      await pub.publishAsync(topic, 'half done', { qos: 2 });
      const p = await first.expect('publish');
      first.send({ cmd: 'pubrec', messageId: p.messageId });
      await first.expect('pubrel');
      first.destroy(); // no PUBCOMP

      const second = await tb.raw(protocolVersion);
      await second.connect({ clientId, ...persistent });
      const rel = await second.expect('pubrel');
      assert.equal(rel.messageId, p.messageId);
      second.send({ cmd: 'pubcomp', messageId: rel.messageId });
    });
  });
}
