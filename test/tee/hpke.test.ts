import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deriveKeyPair, setupBaseR, setupBaseS, x25519PrivateKey } from '../../src/tee/hpke.js';
import { RFC9180_VECTORS } from '../helpers/rfc9180-vectors.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');

for (const v of RFC9180_VECTORS) {
  test(`DeriveKeyPair reproduces the published key pairs of RFC 9180 ${v.name}`, () => {
    const e = deriveKeyPair(hex(v.ikmE));
    assert.equal(e.privateKey.toString('hex'), v.skEm);
    assert.equal(e.publicKey.toString('hex'), v.pkEm);
    const r = deriveKeyPair(hex(v.ikmR));
    assert.equal(r.privateKey.toString('hex'), v.skRm);
    assert.equal(r.publicKey.toString('hex'), v.pkRm);
  });

  test(`sender setup and seal match RFC 9180 ${v.name} byte for byte`, () => {
    const { enc, ctx, sharedSecret } = setupBaseS(hex(v.pkRm), hex(v.info), v.aeadId, x25519PrivateKey(hex(v.skEm)));
    assert.equal(enc.toString('hex'), v.enc);
    assert.equal(sharedSecret.toString('hex'), v.sharedSecret);
    assert.equal(ctx.key.toString('hex'), v.key);
    assert.equal(ctx.baseNonce.toString('hex'), v.baseNonce);
    assert.equal(ctx.exporterSecret.toString('hex'), v.exporterSecret);
    for (const e of v.encryptions) {
      ctx.setSequence(e.seq);
      assert.equal(ctx.seal(hex(e.aad), hex(e.pt)).toString('hex'), e.ct, `sequence ${e.seq}`);
    }
  });

  test(`recipient setup opens the published ciphertexts of RFC 9180 ${v.name} and refuses altered ones`, () => {
    const { ctx } = setupBaseR(hex(v.enc), x25519PrivateKey(hex(v.skRm)), hex(v.info), v.aeadId);
    assert.equal(ctx.key.toString('hex'), v.key);
    for (const e of v.encryptions) {
      ctx.setSequence(e.seq);
      assert.equal(ctx.open(hex(e.aad), hex(e.ct)).toString('hex'), e.pt);
      const flipped = hex(e.ct);
      flipped[3]! ^= 1;
      ctx.setSequence(e.seq);
      assert.throws(() => ctx.open(hex(e.aad), flipped));
    }
  });
}

test('the AES-256-GCM suite used by enrolment round-trips and binds its associated data', () => {
  const r = deriveKeyPair(Buffer.alloc(32, 7));
  const s = setupBaseS(r.publicKey, Buffer.from('info'), 2);
  const ct = s.ctx.seal(Buffer.from('aad'), Buffer.from('secret key material'));
  assert.equal(s.ctx.key.length, 32);
  const rc = setupBaseR(s.enc, x25519PrivateKey(r.privateKey), Buffer.from('info'), 2);
  assert.equal(rc.ctx.open(Buffer.from('aad'), ct).toString(), 'secret key material');
  const rc2 = setupBaseR(s.enc, x25519PrivateKey(r.privateKey), Buffer.from('info'), 2);
  assert.throws(() => rc2.ctx.open(Buffer.from('other'), ct));
});
