import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FlapDetector } from '../../src/limits/flapping.js';

const WINDOW = 1000;
const BAN = 5000;

test('more than N connects of one client id within the window ban that id from every address, for the ban period', () => {
  const f = new FlapDetector(3, WINDOW, BAN, 0);
  for (let i = 0; i < 3; i++) assert.equal(f.connect('flappy', `10.0.0.${i}`, i), undefined);
  assert.deepEqual(f.connect('flappy', '10.0.0.9', 10), { by: 'client id', started: true });
  assert.deepEqual(f.connect('flappy', '10.0.0.77', 20), { by: 'client id', started: false });
  // other ids from the same addresses are not affected
  assert.equal(f.connect('calm', '10.0.0.9', 30), undefined);
  assert.equal(f.connect('flappy', '10.0.0.77', 10 + BAN), undefined);
});

test('more than N connects from one address within the window ban that address for every client id', () => {
  const f = new FlapDetector(3, WINDOW, BAN, 0);
  for (let i = 0; i < 3; i++) assert.equal(f.connect(`id-${i}`, '192.0.2.1', i), undefined);
  assert.deepEqual(f.connect('id-new', '192.0.2.1', 5), { by: 'address', started: true });
  assert.deepEqual(f.connect('another', '192.0.2.1', 6), { by: 'address', started: false });
  assert.deepEqual(f.connect(undefined, '192.0.2.1', 7), { by: 'address', started: false });
  assert.equal(f.connect('another', '192.0.2.2', 8), undefined);
});

test('connects spread over more than the window are not flapping', () => {
  const f = new FlapDetector(2, WINDOW, BAN, 0);
  for (let t = 0; t < 10 * WINDOW; t += WINDOW / 2) assert.equal(f.connect('steady', '192.0.2.3', t), undefined, `at ${t} ms`);
});
