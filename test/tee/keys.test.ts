/** Per-client keys and their bounded cache inside the trusted component. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KeyCache, deriveClientKeys } from '../../src/tee/keys.js';

const NONE = { publish: [], read: [] };

test('the key cache evicts the least recently used entry and counts hits and misses', () => {
  const c = new KeyCache(2);
  const a = deriveClientKeys(new Uint8Array(32).fill(1), 1, NONE);
  c.set('a', a);
  c.set('b', deriveClientKeys(new Uint8Array(32).fill(2), 1, NONE));
  assert.ok(c.get('a'));
  c.set('c', deriveClientKeys(new Uint8Array(32).fill(3), 1, NONE)); // evicts b (a was used)
  assert.equal(c.get('b'), undefined);
  assert.ok(c.get('c'));
  assert.deepEqual([c.hits, c.misses, c.size], [2, 1, 2]);
  c.delete('a');
  assert.equal(c.has('a'), false);
  const sealed = a.wrap.seal(new Uint8Array(32).fill(7), new Uint8Array(0));
  assert.deepEqual(a.wrap.open(sealed.subarray(0, 12), sealed, 12, sealed.length - 12, new Uint8Array(0)), Buffer.alloc(32, 7), 'a caller still holding the keys can finish with them');
  assert.throws(() => new KeyCache(0), RangeError);
});
