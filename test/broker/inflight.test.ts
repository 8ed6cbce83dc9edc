import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InflightTable } from '../../src/broker/inflight.js';
import type { Delivery } from '../../src/broker/message.js';
import { seededRandom } from '../helpers/random.js';

function delivery(packetId: number): Delivery {
  return {
    message: { topic: 't', payload: Buffer.alloc(0), qos: 1, retain: false, properties: undefined, expiresAt: 0, origin: 'p' },
    payload: Buffer.alloc(0),
    lead: undefined,
    qos: 1,
    retain: false,
    subscriptionIds: undefined,
    packetId,
    state: 'publish',
    inPublisherForm: false,
    storeId: 0,
  };
}

test('ids that share a home slot, and runs that wrap past the end of the table, stay findable as others are deleted', () => {
  const t = new InflightTable();
  // 16 slots at first: 1, 17, 33 share home slot 1; 15, 31 start at the last slot and wrap to 0
  const ids = [1, 17, 33, 15, 31, 2];
  const ds = new Map(ids.map((id) => [id, delivery(id)]));
  for (const id of ids) t.set(id, ds.get(id)!);
  assert.equal(t.size, ids.length);
  for (const id of ids) assert.equal(t.get(id), ds.get(id));
  assert.equal(t.delete(17), true);
  assert.equal(t.delete(15), true);
  assert.equal(t.delete(17), false, 'deleted once');
  for (const id of [1, 33, 31, 2]) assert.equal(t.get(id), ds.get(id), `id ${id} after deleting 17 and 15`);
  assert.equal(t.has(17), false);
  assert.equal(t.get(15), undefined);
  assert.equal(t.size, 4);
});

test('entries come back in the order they were added, across growth and deletions; set on a present id replaces in place', () => {
  const t = new InflightTable();
  const ids = Array.from({ length: 40 }, (_, i) => 65535 - i * 7);
  for (const id of ids) t.set(id, delivery(id));
  for (const id of ids.filter((_, i) => i % 3 === 0)) t.delete(id);
  const replaced = delivery(ids[1]!);
  t.set(ids[1]!, replaced);
  const kept = ids.filter((_, i) => i % 3 !== 0);
  assert.deepEqual(t.inOrder().map(([id]) => id), kept);
  assert.equal(t.get(ids[1]!), replaced);
  t.clear();
  assert.equal(t.size, 0);
  assert.deepEqual(t.inOrder(), []);
  assert.equal(t.get(ids[1]!), undefined);
});

test('agrees with a Map over a long random run of adds and deletes, as a session makes them', () => {
  const random = seededRandom(0x2545f491);
  const t = new InflightTable();
  const m = new Map<number, Delivery>();
  for (let step = 0; step < 20_000; step++) {
    const id = 1 + random(300);
    if (random(3) === 0 || m.size > 100) {
      assert.equal(t.delete(id), m.delete(id), `delete ${id} at step ${step}`);
    } else {
      const d = delivery(id);
      t.set(id, d);
      m.set(id, d);
    }
    assert.equal(t.size, m.size);
    const probe = 1 + random(300);
    assert.equal(t.get(probe), m.get(probe), `get ${probe} at step ${step}`);
  }
  assert.deepEqual(
    t.inOrder().map(([id]) => id),
    [...m.keys()],
  );
});
