import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConnectionAdmission } from '../../src/limits/admission.js';

test('the connection rate is counted per listener', () => {
  const a = new ConnectionAdmission(2, 0);
  assert.equal(a.admit('tcp', 'x', 0), undefined);
  assert.equal(a.admit('tcp', 'y', 0), undefined);
  assert.equal(a.admit('tcp', 'z', 0), 'connection rate');
  assert.equal(a.admit('ws', 'z', 0), undefined);
  assert.equal(a.admit('tcp', 'z', 500), undefined);
});

test('connections per address are counted while open and released when closed', () => {
  const a = new ConnectionAdmission(0, 2);
  assert.equal(a.admit('tcp', '192.0.2.1'), undefined);
  assert.equal(a.admit('tls', '192.0.2.1'), undefined);
  assert.equal(a.admit('tcp', '192.0.2.1'), 'connections per address');
  assert.equal(a.admit('tcp', '192.0.2.2'), undefined);
  a.release('192.0.2.1');
  assert.equal(a.admit('tcp', '192.0.2.1'), undefined);
});

test('with both limits off every connection is admitted', () => {
  const a = new ConnectionAdmission(0, 0);
  for (let i = 0; i < 1000; i++) assert.equal(a.admit('tcp', '192.0.2.1', 0), undefined);
});
