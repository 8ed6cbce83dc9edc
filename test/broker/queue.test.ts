import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Fifo } from '../../src/broker/queue.js';
import { seededRandom } from '../helpers/random.js';

test('the session queue keeps first-in first-out order with an array as model, through bursts of thousands and drains to empty', () => {
  const random = seededRandom(0x1234567);
  const q = new Fifo<number>();
  const model: number[] = [];
  let next = 0;
  for (let step = 0; step < 50_000; step++) {
    // phases: bursts that grow the queue to thousands, then drains that shrink it to nothing
    const filling = Math.floor(step / 5_000) % 2 === 0;
    if (random(10) < (filling ? 7 : 3)) {
      q.push(next);
      model.push(next++);
    } else {
      assert.equal(q.shift(), model.shift(), `shift at step ${step}`);
    }
    assert.equal(q.length, model.length);
  }
  assert.deepEqual([...q], model);
  q.clear();
  assert.equal(q.length, 0);
  assert.equal(q.shift(), undefined);
  q.push(7);
  assert.deepEqual([...q], [7]);
});
