/** Byte helpers shared across the trust boundary. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromBase64Url, toBase64Url } from '../../src/envelope/bytes.js';

test('base64url round-trips every length', () => {
  for (let n = 0; n < 40; n++) {
    const b = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 0xff);
    assert.equal(toBase64Url(b), Buffer.from(b).toString('base64url'));
    assert.deepEqual(fromBase64Url(toBase64Url(b)), b);
  }
  assert.throws(() => fromBase64Url('a+b/'), RangeError);
});
