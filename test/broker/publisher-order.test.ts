import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PublisherOrder, type Place } from '../../src/broker/stage-runner.js';

/** A place in `origin`'s lane whose work is given when it becomes ready, as a staged message's is. */
function reserve(o: PublisherOrder, origin: string): Place {
  const place: Place = { isReady: false, next: undefined, run: () => assert.fail('ran before it was ready') };
  o.enqueue(origin, place);
  return place;
}

function ready(o: PublisherOrder, origin: string, place: Place, run: () => void): void {
  place.run = run;
  o.ready(origin, place);
}

test('places of one publisher run in arrival order whatever order they become ready in; other publishers do not wait', () => {
  const o = new PublisherOrder(() => assert.fail('no error expected'));
  const ran: string[] = [];
  const a1 = reserve(o, 'a');
  const a2 = reserve(o, 'a');
  const b1 = reserve(o, 'b');
  const a3 = reserve(o, 'a');
  ready(o, 'a', a3, () => ran.push('a3'));
  ready(o, 'a', a2, () => ran.push('a2'));
  ready(o, 'b', b1, () => ran.push('b1'));
  assert.deepEqual(ran, ['b1'], 'a2 and a3 wait for a1; b is not held up by a');
  assert.equal(o.busy('a'), true);
  assert.equal(o.busy('b'), false);
  ready(o, 'a', a1, () => ran.push('a1'));
  assert.deepEqual(ran, ['b1', 'a1', 'a2', 'a3']);
  assert.equal(o.busy('a'), false);
});

test('a place reserved and made ready while its lane runs is run by that same pass, after the earlier ones', () => {
  const o = new PublisherOrder(() => assert.fail('no error expected'));
  const ran: string[] = [];
  const first = reserve(o, 'p');
  const second = reserve(o, 'p');
  ready(o, 'p', second, () => ran.push('second'));
  ready(o, 'p', first, () => {
    ran.push('first');
    // e.g. a delivery that makes the same publisher's will go out
    o.after('p', () => ran.push('third'));
  });
  assert.deepEqual(ran, ['first', 'second', 'third']);
  assert.equal(o.busy('p'), false);
});

test('a failing place is reported and does not stall the ones behind it', () => {
  const errors: unknown[] = [];
  const o = new PublisherOrder((err) => errors.push(err));
  const ran: string[] = [];
  const a = reserve(o, 'p');
  const b = reserve(o, 'p');
  ready(o, 'p', b, () => ran.push('b'));
  ready(o, 'p', a, () => {
    throw new Error('boom');
  });
  assert.deepEqual(ran, ['b']);
  assert.equal(errors.length, 1);
});

test('drained() resolves once every lane has run, at once when none waits', async () => {
  const o = new PublisherOrder(() => undefined);
  await o.drained();
  const p = reserve(o, 'x');
  let done = false;
  const drained = o.drained().then(() => {
    done = true;
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(done, false);
  ready(o, 'x', p, () => undefined);
  await drained;
  assert.equal(done, true);
});

test('a place that has run no longer links to the places behind it (a dead place must not keep later messages alive)', () => {
  const o = new PublisherOrder(() => assert.fail('no error expected'));
  const places = [reserve(o, 'p'), reserve(o, 'p'), reserve(o, 'p')];
  ready(o, 'p', places[1]!, () => undefined);
  ready(o, 'p', places[0]!, () => undefined);
  // the first two ran; the third still waits and holds the lane
  assert.equal(places[0]!.next, undefined, 'the first place let go of the second');
  assert.equal(places[1]!.next, undefined, 'the second place let go of the third');
  assert.equal(o.busy('p'), true);
  const behind = reserve(o, 'p');
  assert.equal(places[2]!.next, behind, 'a waiting place still links to the one behind it');
  ready(o, 'p', places[2]!, () => undefined);
  ready(o, 'p', behind, () => undefined);
  assert.equal(places[2]!.next, undefined);
  assert.equal(o.busy('p'), false);
});
