/** MQTT 3.1 (protocol name "MQIsdp", level 3) clients share the listener with 3.1.1 and 5.0 ones. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connackOf, inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

describe('MQTT 3.1', () => {
  let tb: TestBroker;
  before(async () => {
    tb = await startTestBroker((c) => (c.tee = null));
  });
  after(async () => tb?.close());

  it('a 3.1 client connects, subscribes and exchanges QoS 0, 1 and 2 messages with a 5.0 client', async () => {
    const topic = unique('v31');
    const old = await tb.mqtt({ protocolId: 'MQIsdp', protocolVersion: 3, clientId: unique('v31c') });
    assert.equal(connackOf(old).returnCode, 0);
    assert.equal(tb.broker.clients.get(old.options.clientId!)?.version, 3);
    await old.subscribeAsync(topic, { qos: 2 });
    for (const qos of [0, 1, 2] as const) await tb.publish(topic, `from v5 at ${qos}`, { qos });
    const got = await inboxOf(old).take(3);
    assert.deepEqual(got.map((m) => [m.payload, m.packet.qos]), [['from v5 at 0', 0], ['from v5 at 1', 1], ['from v5 at 2', 2]]);
    const modern = await tb.watch(topic);
    await old.publishAsync(topic, 'from v3.1', { qos: 1 });
    assert.equal((await modern.next()).payload, 'from v3.1');
  });

  it('a 3.1 client with an empty client id is refused with return code 2 (identifier rejected)', async () => {
    const raw = await tb.raw(4);
    // written by hand: encoders refuse an empty 3.1 client id
    raw.write(Buffer.from([0x10, 14, 0, 6, ...Buffer.from('MQIsdp'), 3, 0x02, 0, 0, 0, 0]));
    const connack = await raw.expect('connack');
    assert.equal(connack.returnCode, 2);
    await raw.closedByBroker();
  });
});
