import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PublisherOrder } from '../../src/broker/publisher-order.js';

test('places of one publisher run in arrival order whatever order they become ready in; other publishers do not wait', () => {
  const o = new PublisherOrder(() => assert.fail('no error expected'));
  const ran: string[] = [];
  const a1 = o.reserve('a');
  const a2 = o.reserve('a');
  const b1 = o.reserve('b');
  const a3 = o.reserve('a');
  o.ready('a', a3, () => ran.push('a3'));
  o.ready('a', a2, () => ran.push('a2'));
  o.ready('b', b1, () => ran.push('b1'));
  assert.deepEqual(ran, ['b1'], 'a2 and a3 wait for a1; b is not held up by a');
  assert.equal(o.busy('a'), true);
  assert.equal(o.busy('b'), false);
  o.ready('a', a1, () => ran.push('a1'));
  assert.deepEqual(ran, ['b1', 'a1', 'a2', 'a3']);
  assert.equal(o.busy('a'), false);
});

test('a place reserved and made ready while its lane runs is run by that same pass, after the earlier ones', () => {
  const o = new PublisherOrder(() => assert.fail('no error expected'));
  const ran: string[] = [];
  const first = o.reserve('p');
  const second = o.reserve('p');
  o.ready('p', second, () => ran.push('second'));
  o.ready('p', first, () => {
    ran.push('first');
    // e.g. a delivery that makes the same publisher's will go out
    o.ready('p', o.reserve('p'), () => ran.push('third'));
  });
  assert.deepEqual(ran, ['first', 'second', 'third']);
  assert.equal(o.busy('p'), false);
});

test('a failing place is reported and does not stall the ones behind it', () => {
  const errors: unknown[] = [];
  const o = new PublisherOrder((err) => errors.push(err));
  const ran: string[] = [];
  const a = o.reserve('p');
  const b = o.reserve('p');
  o.ready('p', b, () => ran.push('b'));
  o.ready('p', a, () => {
    throw new Error('boom');
  });
  assert.deepEqual(ran, ['b']);
  assert.equal(errors.length, 1);
});

test('drained() resolves once every lane has run, at once when none waits', async () => {
  const o = new PublisherOrder(() => undefined);
  await o.drained();
  const p = o.reserve('x');
  let done = false;
  const drained = o.drained().then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  o.ready('x', p, () => undefined);
  await drained;
  assert.equal(done, true);
});
