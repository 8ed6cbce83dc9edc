// The per-address limiter of failed logins, on a clock of its own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoginLimiter } from '../../src/auth/login-limiter.js';

test('the limiter forgets an address a window after its last failure, and a success clears it', () => {
  let now = 0;
  const limiter = new LoginLimiter({ maxFailures: 2, windowMs: 1000, maxAddresses: 2 }, () => now);
  limiter.failed('a');
  limiter.failed('a');
  assert.equal(limiter.allows('a'), false);
  now = 999;
  assert.equal(limiter.allows('a'), false);
  now = 2000;
  assert.equal(limiter.allows('a'), true);
  limiter.failed('b');
  limiter.succeeded('b');
  limiter.failed('b');
  assert.equal(limiter.allows('b'), true);
  // bounded: a third address pushes out the oldest
  limiter.failed('c');
  limiter.failed('c');
  limiter.failed('d');
  limiter.failed('d');
  assert.equal(limiter.allows('d'), false);
  assert.equal(limiter.refused, 3);
});
