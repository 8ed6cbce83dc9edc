import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TokenBucket } from '../../src/limits/token-bucket.js';

test('a token bucket allows a burst of its capacity, then one token per 1/rate seconds', () => {
  const b = new TokenBucket(10, 10, 0);
  for (let i = 0; i < 10; i++) assert.ok(b.tryTake(0), `token ${i}`);
  assert.equal(b.tryTake(0), false);
  assert.equal(b.tryTake(99), false);
  assert.ok(b.tryTake(100));
  assert.equal(b.tryTake(100), false);
});

test('a token bucket never holds more than its capacity however long it waits', () => {
  const b = new TokenBucket(10, 2, 0);
  assert.ok(b.tryTake(60_000));
  assert.ok(b.tryTake(60_000));
  assert.equal(b.tryTake(60_000), false);
});

test('take goes into debt and says how long until it is paid', () => {
  const b = new TokenBucket(1000, 1000, 0);
  assert.equal(b.take(600, 0), 0);
  assert.equal(b.take(900, 0), 500); // balance -500 at 1000/s
  assert.equal(b.take(0, 250), 250);
  assert.equal(b.take(0, 500), 0);
});

test('a token bucket refuses a rate or capacity that is not positive', () => {
  assert.throws(() => new TokenBucket(0), RangeError);
  assert.throws(() => new TokenBucket(5, -1), RangeError);
});
