import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { QoS } from 'mqtt-packet';
import { TargetCollector } from '../../src/broker/targets.js';
import { SubscriptionTree, type SubscriptionOptions } from '../../src/broker/subscriptions.js';
import { Session } from '../../src/broker/session.js';
import type { Message } from '../../src/broker/message.js';

function options(qos: QoS, subscriptionId?: number): SubscriptionOptions {
  return { qos, noLocal: false, retainAsPublished: false, retainHandling: 0, subscriptionId };
}

function message(topic: string, qos: QoS): Message {
  return { topic, payload: Buffer.from('x'), qos, retain: false, properties: undefined, expiresAt: 0, origin: 'publisher' };
}

test('each message gets one target per session, overlapping subscriptions merged, whatever earlier messages targeted', () => {
  const tree = new SubscriptionTree();
  const sessions = new Map<string, Session>();
  for (const id of ['a', 'b', 'c']) sessions.set(id, new Session(id, { maxQueuedMessages: 0, maxQueuedBytes: 0 }, { dropped: 0 }));
  tree.add('a', 'x/#', options(0, 1));
  tree.add('a', 'x/+', options(1, 2));
  tree.add('b', 'x/y', options(2));
  tree.add('c', 'z', options(1, 7));
  tree.add('c', 'z/#', options(0, 8));
  const collector = new TargetCollector(tree, sessions, new Map());
  const summary = (topic: string, qos: QoS): string[] =>
    collector.collect(message(topic, qos), undefined).map((t) => `${t.session.clientId} q${t.qos} [${[...(t.subscriptionIds ?? [])].sort().join(',')}]`).sort();

  for (let round = 0; round < 3; round++) {
    assert.deepEqual(summary('x/y', 2), ['a q1 [1,2]', 'b q2 []']);
    assert.deepEqual(summary('z', 1), ['c q1 [7,8]']);
    assert.deepEqual(summary('x/y/z', 1), ['a q0 [1]']);
    assert.deepEqual(summary('nothing', 1), []);
  }
  // one client's targets only (a retained message for its new subscription)
  assert.deepEqual(
    collector.collect(message('x/y', 1), 'b').map((t) => t.session.clientId),
    ['b'],
  );
  assert.deepEqual(summary('x/y', 2), ['a q1 [1,2]', 'b q2 []'], 'after a collection restricted to one client');
});
