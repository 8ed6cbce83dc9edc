/** Sealing: what the trusted component persists, bound to the object's name and version. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Sealer } from '../../src/tee/seal.js';
import { TeeError } from '../../src/envelope/errors.js';

const sealedInvalid = (e: unknown): boolean => e instanceof TeeError && e.code === 'sealed-invalid';

test('sealing binds the object name and version and the device secret', () => {
  const secret = randomBytes(32);
  const s = new Sealer(secret);
  const blob = s.seal('key/alice', 3, Buffer.from('k'));
  assert.equal(s.unseal('key/alice', 3, blob).toString(), 'k');
  assert.equal(new Sealer(Buffer.from(secret)).unseal('key/alice', 3, blob).toString(), 'k', 'the same secret opens it after a restart');
  for (const [name, version] of [['key/bob', 3], ['key/alice', 2], ['key/alice', 4]] as const) {
    assert.throws(() => s.unseal(name, version, blob), sealedInvalid, `${name}#${version}`);
  }
  assert.throws(() => new Sealer(Buffer.alloc(32, 1)).unseal('key/alice', 3, blob), sealedInvalid);
});

test('a sealed blob is u8 version 1 | nonce(12) | ciphertext as long as the plaintext | tag(16); a fresh nonce each time; any altered byte is refused', () => {
  const s = new Sealer(randomBytes(32));
  for (const n of [0, 1, 52, 1000]) {
    const plain = randomBytes(n);
    const blob = s.seal('tee/manifest', 1, plain);
    assert.equal(blob.length, 1 + 12 + n + 16);
    assert.equal(blob[0], 1);
    // a byte or two of plaintext turns up in 30 random bytes by chance (1 byte: ~11 %); 52 never do
    if (n >= 16) assert.equal(blob.indexOf(plain), -1, 'the plaintext does not appear in the blob');
    assert.deepEqual(s.unseal('tee/manifest', 1, blob), plain);
  }
  const a = s.seal('x', 1, Buffer.from('same'));
  const b = s.seal('x', 1, Buffer.from('same'));
  assert.notDeepEqual(a.subarray(1, 13), b.subarray(1, 13), 'each seal draws its own nonce');
  for (let i = 0; i < a.length; i++) {
    const altered = Buffer.from(a);
    altered[i]! ^= 0x01;
    assert.throws(() => s.unseal('x', 1, altered), sealedInvalid, `byte ${i}`);
  }
  assert.throws(() => s.unseal('x', 1, a.subarray(0, 28)), (e: unknown) => sealedInvalid(e) && /malformed/.test((e as TeeError).detail), 'shorter than version, nonce and tag');
});
