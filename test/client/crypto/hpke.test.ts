import { test } from 'node:test';
import assert from 'node:assert/strict';
import { importX25519Private, setupBaseS } from '../../../src/client/crypto/index.js';
import { setupBaseR, x25519PrivateKey } from '../../../src/tee/hpke.js';
import { RFC9180_VECTORS } from '../../helpers/rfc9180-vectors.js';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const a11 = RFC9180_VECTORS.find((v) => v.aeadId === 1)!;

test('WebCrypto HPKE sender reproduces RFC 9180 A.1.1 (X25519, HKDF-SHA256, AES-128-GCM) byte for byte', async () => {
  const ctx = await setupBaseS(hex(a11.pkRm), hex(a11.info), 1, await importX25519Private(hex(a11.skEm)));
  assert.equal(toHex(ctx.enc), a11.enc);
  assert.equal(toHex(ctx.sharedSecret), a11.sharedSecret);
  assert.equal(toHex(ctx.key), a11.key);
  assert.equal(toHex(ctx.baseNonce), a11.baseNonce);
  for (const e of a11.encryptions) {
    ctx.setSequence(e.seq);
    assert.equal(toHex(await ctx.seal(hex(e.aad), hex(e.pt))), e.ct, `sequence ${e.seq}`);
  }
});

test('a WebCrypto AES-256-GCM sender is opened by the trusted component recipient', async () => {
  const skR = hex(a11.skRm);
  const ctx = await setupBaseS(hex(a11.pkRm), new TextEncoder().encode('info'), 2);
  const ct = await ctx.seal(new Uint8Array([1, 2]), new TextEncoder().encode('a client key'));
  const r = setupBaseR(ctx.enc, x25519PrivateKey(skR), new TextEncoder().encode('info'), 2);
  assert.equal(r.ctx.open(new Uint8Array([1, 2]), ct).toString(), 'a client key');
});
