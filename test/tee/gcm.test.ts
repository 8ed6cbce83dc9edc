import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, randomBytes, randomInt } from 'node:crypto';
import { GcmKey } from '../../src/tee/gcm.js';

function referenceSeal(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(ad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

function referenceOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(ad);
  d.setAuthTag(sealed.subarray(sealed.length - 16));
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - 16)), d.final()]);
}

/** A random nonce, plaintext of up to `maxData` bytes and associated data of up to `maxAd` bytes. */
function randomCase(maxData: number, maxAd: number): { nonce: Buffer; plaintext: Buffer; ad: Buffer } {
  return { nonce: randomBytes(12), plaintext: randomBytes(randomInt(0, maxData)), ad: randomBytes(randomInt(0, maxAd)) };
}

test('GcmKey seals byte for byte as node:crypto AES-256-GCM, for every length of data and associated data up to several blocks', () => {
  for (let round = 0; round < 40; round++) {
    const key = randomBytes(32);
    const gcm = new GcmKey(key);
    for (let i = 0; i < 25; i++) {
      const { nonce, plaintext, ad } = randomCase(80, 150);
      assert.deepEqual(gcm.seal(nonce, plaintext, ad), referenceSeal(key, nonce, plaintext, ad));
    }
  }
});

test('a key of a busy stream (its wide GHASH table made by a batch of 8 or more) still seals and opens byte for byte as node:crypto', () => {
  for (let round = 0; round < 10; round++) {
    const key = randomBytes(32);
    const gcm = new GcmKey(key);
    gcm.prepare(randomBytes(12 * 8), 8, 32);
    gcm.dropPrepared();
    for (let i = 0; i < 25; i++) {
      const { nonce, plaintext, ad } = randomCase(80, 150);
      const sealed = gcm.seal(nonce, plaintext, ad);
      assert.deepEqual(sealed, referenceSeal(key, nonce, plaintext, ad));
      assert.deepEqual(gcm.open(nonce, sealed, ad), plaintext);
      sealed[randomInt(0, sealed.length)]! ^= 0x01;
      assert.equal(gcm.open(nonce, sealed, ad), undefined);
    }
  }
});

test('GcmKey.sealInto writes at any offset exactly what seal returns, and touches nothing else', () => {
  const key = randomBytes(32);
  const gcm = new GcmKey(key);
  for (let i = 0; i < 100; i++) {
    const { nonce, plaintext, ad } = randomCase(70, 120);
    const at = randomInt(0, 40);
    const out = Buffer.alloc(at + plaintext.length + 16 + 5, 0xa5);
    gcm.sealInto(out, at, nonce, plaintext, ad);
    assert.deepEqual(out.subarray(at, at + plaintext.length + 16), referenceSeal(key, nonce, plaintext, ad));
    assert.ok(out.subarray(0, at).every((b) => b === 0xa5) && out.subarray(at + plaintext.length + 16).every((b) => b === 0xa5));
  }
  assert.throws(() => gcm.sealInto(Buffer.alloc(20), 0, randomBytes(12), randomBytes(8), new Uint8Array(0)), RangeError);
});

test('GcmKey opens what node:crypto sealed and node:crypto opens what GcmKey sealed', () => {
  for (let i = 0; i < 200; i++) {
    const key = randomBytes(32);
    const gcm = new GcmKey(key);
    const { nonce, plaintext, ad } = randomCase(70, 120);
    assert.deepEqual(gcm.open(nonce, referenceSeal(key, nonce, plaintext, ad), ad), plaintext);
    assert.deepEqual(referenceOpen(key, nonce, gcm.seal(nonce, plaintext, ad), ad), plaintext);
  }
});

test('GcmKey refuses a bit flip anywhere in ciphertext, tag or associated data, a wrong nonce, a wrong key and a truncated input', () => {
  const key = randomBytes(32);
  const gcm = new GcmKey(key);
  const nonce = randomBytes(12);
  const plaintext = randomBytes(32);
  const ad = randomBytes(90);
  const sealed = gcm.seal(nonce, plaintext, ad);
  for (let byte = 0; byte < sealed.length; byte++) {
    const t = Buffer.from(sealed);
    t[byte]! ^= 1 << byte % 8;
    assert.equal(gcm.open(nonce, t, ad), undefined, `flip in byte ${byte}`);
  }
  for (let byte = 0; byte < ad.length; byte++) {
    const a = Buffer.from(ad);
    a[byte]! ^= 0x80;
    assert.equal(gcm.open(nonce, sealed, a), undefined, `flip in associated data byte ${byte}`);
  }
  const otherNonce = Buffer.from(nonce);
  otherNonce[11]! ^= 1;
  assert.equal(gcm.open(otherNonce, sealed, ad), undefined);
  assert.equal(new GcmKey(randomBytes(32)).open(nonce, sealed, ad), undefined);
  assert.equal(gcm.open(nonce, sealed.subarray(0, 15), ad), undefined);
  assert.deepEqual(gcm.open(nonce, sealed, ad), plaintext); // the key is still usable after refusals
});

test('GcmKey takes only 32-byte keys and 12-byte nonces', () => {
  assert.throws(() => new GcmKey(randomBytes(16)), /32-byte key/);
  assert.throws(() => new GcmKey(randomBytes(32)).seal(randomBytes(16), randomBytes(32), randomBytes(8)), /12-byte nonces/);
});

test('keystreams made ahead for a batch give node:crypto\'s bytes, in or out of order, and a nonce not prepared still works', () => {
  const key = randomBytes(32);
  const gcm = new GcmKey(key);
  for (let round = 0; round < 20; round++) {
    const count = randomInt(2, 12);
    const nonces = randomBytes(12 * count);
    const cases = Array.from({ length: count }, (_, k) => ({ nonce: nonces.subarray(12 * k, 12 * k + 12), plaintext: randomBytes(32), ad: randomBytes(randomInt(0, 120)) }));
    const sealed = cases.map((c) => referenceSeal(key, c.nonce, c.plaintext, c.ad));
    gcm.prepare(nonces, count, 32);
    // opened in an order that skips some and goes back to others: skipped ones compute their own
    const order = round % 2 === 0 ? cases.map((_, k) => k) : cases.map((_, k) => count - 1 - k);
    for (const k of order) assert.deepEqual(gcm.open(cases[k]!.nonce, sealed[k]!, cases[k]!.ad), cases[k]!.plaintext);
    const other = randomCase(40, 40);
    assert.deepEqual(gcm.seal(other.nonce, other.plaintext, other.ad), referenceSeal(key, other.nonce, other.plaintext, other.ad));
    // a tampered message under a prepared nonce is still refused
    gcm.prepare(nonces, count, 32);
    const bad = Buffer.from(sealed[0]!);
    bad[randomInt(0, bad.length)]! ^= 0x40;
    assert.equal(gcm.open(cases[0]!.nonce, bad, cases[0]!.ad), undefined);
    gcm.dropPrepared();
  }
});

test('sealFreshAt hands out each nonce made ahead once, writes it before the ciphertext, and goes on with new ones after', () => {
  const key = randomBytes(32);
  const gcm = new GcmKey(key);
  const seen = new Set<string>();
  gcm.prepareFresh(5, 32);
  for (let i = 0; i < 12; i++) {
    // 32-byte plaintexts use the keystreams made ahead; a 48-byte one does not fit them (its nonce is still used up)
    const plaintext = randomBytes(i === 2 ? 48 : 32);
    const ad = randomBytes(randomInt(0, 60));
    const at = randomInt(0, 9);
    const out = Buffer.alloc(at + 12 + plaintext.length + 16, 0xee);
    gcm.sealFreshAt(out, at, plaintext, 0, plaintext.length, ad);
    const nonce = out.subarray(at, at + 12);
    assert.ok(!seen.has(nonce.toString('hex')), `seal ${i} reused a nonce`);
    seen.add(nonce.toString('hex'));
    assert.deepEqual(out.subarray(at + 12), referenceSeal(key, nonce, plaintext, ad));
    assert.deepEqual(referenceOpen(key, nonce, out.subarray(at + 12), ad), plaintext);
    assert.ok(out.subarray(0, at).every((b) => b === 0xee), 'nothing before the nonce is touched');
  }
});

test('openInto and sealFreshAt work on offsets into larger buffers and leave the bytes around them alone', () => {
  const key = randomBytes(32);
  const gcm = new GcmKey(key);
  for (let round = 0; round < 20; round++) {
    const c = randomCase(70, 50);
    const sealed = referenceSeal(key, c.nonce, c.plaintext, c.ad);
    // nonce and sealed bytes somewhere inside one frame, as a batch carries them
    const nonceAt = randomInt(0, 20);
    const sealedAt = nonceAt + 12 + randomInt(0, 20);
    const frame = Buffer.concat([randomBytes(sealedAt), sealed, randomBytes(randomInt(0, 9))]);
    c.nonce.copy(frame, nonceAt);
    const outAt = randomInt(0, 9);
    const out = Buffer.alloc(outAt + c.plaintext.length + 5, 0xee);
    if (round % 2 === 1) gcm.prepare(c.nonce, 1, c.plaintext.length);
    assert.equal(gcm.openInto(frame, nonceAt, frame, sealedAt, sealed.length, c.ad, out, outAt), true);
    assert.deepEqual(out.subarray(outAt, outAt + c.plaintext.length), c.plaintext);
    assert.ok(out.subarray(0, outAt).every((b) => b === 0xee) && out.subarray(outAt + c.plaintext.length).every((b) => b === 0xee));
    frame[sealedAt + randomInt(0, sealed.length)]! ^= 0x08;
    const untouched = Buffer.alloc(out.length, 0xee);
    assert.equal(gcm.openInto(frame, nonceAt, frame, sealedAt, sealed.length, c.ad, untouched, outAt), false);
    assert.ok(untouched.every((b) => b === 0xee), 'nothing is written when authentication fails');
    gcm.dropPrepared();

    const src = Buffer.concat([randomBytes(3), c.plaintext, randomBytes(4)]);
    const dst = Buffer.alloc(7 + 12 + c.plaintext.length + 16 + 2, 0xee);
    gcm.sealFreshAt(dst, 7, src, 3, c.plaintext.length, c.ad);
    const nonce = dst.subarray(7, 19);
    assert.deepEqual(dst.subarray(19, 19 + c.plaintext.length + 16), referenceSeal(key, nonce, c.plaintext, c.ad));
    assert.ok(dst.subarray(0, 7).every((b) => b === 0xee) && dst.subarray(dst.length - 2).every((b) => b === 0xee));
  }
});
