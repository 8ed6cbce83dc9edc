/** The built-in ACL as seen by clients: refused subscriptions and publications. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { BrokerConfig } from '../../src/config.js';
import { inboxOf, startTestBroker, unique, type TestBroker } from '../helpers/broker.js';

const rules = (c: BrokerConfig): void => {
  c.acl = [
    { permission: 'deny', action: 'subscribe', topic: 'test/nosubscribe' },
    { permission: 'deny', action: 'publish', topic: 'secret/#' },
  ];
};

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker(rules);
});
after(() => tb.close());

test('v3.1.1: a subscription denied by the ACL gets SUBACK 0x80, others in the same SUBSCRIBE are granted', async () => {
  const raw = await tb.raw(4);
  await raw.connect({ clientId: unique('acl3') });
  const suback = await raw.subscribe([
    { topic: 'test/nosubscribe', qos: 2 },
    { topic: unique('acl/ok'), qos: 2 },
  ]);
  assert.deepEqual(suback.granted, [0x80, 2]);
});

test('v5: a subscription denied by the ACL gets the configured reason code (default 0x87)', async () => {
  assert.equal(tb.config.subscribeDeniedReason, 0x87);
  const raw = await tb.raw(5);
  await raw.connect({ clientId: unique('acl5') });
  assert.deepEqual((await raw.subscribe('test/nosubscribe', 1)).granted, [0x87]);
});

test('v5: with subscribeDeniedReason 0x80 a denied subscription gets 0x80', async () => {
  const other = await startTestBroker((c) => {
    rules(c);
    c.subscribeDeniedReason = 0x80;
  });
  try {
    const raw = await other.raw(5);
    await raw.connect({ clientId: unique('acl5-80') });
    assert.deepEqual((await raw.subscribe('test/nosubscribe', 1)).granted, [0x80]);
  } finally {
    await other.close();
  }
});

for (const protocolVersion of [4, 5] as const) {
  test(`v${protocolVersion === 4 ? '3.1.1' : '5'}: a publication denied by the ACL is not routed${protocolVersion === 5 ? ' and gets PUBACK 0x87' : ''}`, async () => {
    const topic = `secret/${unique('acl')}`;
    const marker = unique('acl/marker');
    const sub = await tb.mqtt({ protocolVersion });
    await sub.subscribeAsync('secret/#', { qos: 1 });
    await sub.subscribeAsync(marker, { qos: 1 });
    const raw = await tb.raw(protocolVersion);
    await raw.connect({ clientId: unique('acl-pub') });
    raw.send({ cmd: 'publish', topic, payload: 'leak', qos: 1, dup: false, retain: false, messageId: 5 });
    const ack = await raw.expect('puback');
    assert.equal(ack.messageId, 5);
    if (protocolVersion === 5) assert.equal(ack.reasonCode, 0x87);
    const pub = await tb.mqtt({ protocolVersion });
    await pub.publishAsync(marker, 'marker', { qos: 1 });
    assert.equal((await inboxOf(sub).next()).payload, 'marker');
  });
}
