// The Node entry's node:crypto backend for the per-message primitives: the same bytes as WebCrypto
// both ways, tampering refused, and envelopes sealed by one open under the other.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { nodeCrypto } from '../../src/client/node-crypto.js';
import { aesKey, aesOpen, aesSeal, sha256, useFastCrypto } from '../../src/client/crypto/webcrypto.js';
import { generateClientKeyBytes, importClientKey, openEnvelope, sealEnvelope } from '../../src/client/crypto/index.js';
import { KIND_RECIPIENT, encodeHeader, joinEnvelope, parseHeader, splitEnvelope, streamAd, wrapAd } from '../../src/envelope/envelope-layout.js';

/** Runs `f` with WebCrypto alone (the browser's path), whatever backend the importing entry installed. */
async function withWebCrypto<T>(f: () => Promise<T>): Promise<T> {
  useFastCrypto(undefined);
  try {
    return await f();
  } finally {
    useFastCrypto(nodeCrypto);
  }
}

test('node:crypto AES-256-GCM and SHA-256 give WebCrypto\'s bytes, and each opens what the other sealed', async () => {
  useFastCrypto(nodeCrypto);
  for (const length of [0, 1, 15, 16, 17, 32, 333, 4096]) {
    const raw = randomBytes(32);
    const key = await aesKey(raw);
    const nonce = randomBytes(12);
    const plaintext = randomBytes(length);
    const ad = randomBytes(length % 90);
    const byNode = nodeCrypto.seal(key, nonce, plaintext, ad);
    const byWeb = await withWebCrypto(() => aesSeal(key, nonce, plaintext, ad));
    assert.deepEqual(Buffer.from(byNode), Buffer.from(byWeb), `seal of ${length} bytes`);
    assert.deepEqual(Buffer.from(nodeCrypto.seal(raw, nonce, plaintext, ad)), Buffer.from(byWeb), 'raw key bytes and the imported key agree');
    assert.deepEqual(Buffer.from(nodeCrypto.open(key, nonce, byWeb, ad)!), plaintext);
    assert.deepEqual(Buffer.from((await withWebCrypto(() => aesOpen(key, nonce, byNode, ad)))!), plaintext);
    assert.deepEqual(Buffer.from(nodeCrypto.sha256(plaintext)), Buffer.from(await withWebCrypto(() => sha256(plaintext))));
  }
});

test('node:crypto refuses a flipped bit anywhere, a wrong associated data, a wrong key and a short input', async () => {
  const raw = randomBytes(32);
  const nonce = randomBytes(12);
  const ad = Buffer.from('topic and sender');
  const sealed = nodeCrypto.seal(raw, nonce, Buffer.from('a reading of 21.5 °C'), ad);
  for (let i = 0; i < sealed.length; i++) {
    const bad = Uint8Array.from(sealed);
    bad[i]! ^= 0x01;
    assert.equal(nodeCrypto.open(raw, nonce, bad, ad), undefined, `byte ${i} flipped`);
  }
  assert.equal(nodeCrypto.open(raw, nonce, sealed, Buffer.from('another topic')), undefined);
  assert.equal(nodeCrypto.open(randomBytes(32), nonce, sealed, ad), undefined);
  assert.equal(nodeCrypto.open(raw, nonce, sealed.subarray(0, 15), ad), undefined);
});

test('an envelope sealed with node:crypto opens with WebCrypto alone and the other way round', async () => {
  useFastCrypto(nodeCrypto);
  const raw = generateClientKeyBytes();
  const key = await importClientKey(raw);
  const topic = 'ward/3/ecg/p7';
  // what the trusted component would send a recipient: the data key the sender's stream yields,
  // wrapped for `bob` with the same key (the test stands in for the component, with node:crypto's
  // keystream: the other side's must be the same bytes; the layout and associated data are the protocol's)
  const asRecipient = async (env: Uint8Array): Promise<Uint8Array> => {
    const { header, payload } = splitEnvelope(env);
    const h = parseHeader(header);
    const streamKey = (await aesOpen(key.wrap, h.wrapNonce, h.wrappedKey, streamAd(topic, h.sender)))!;
    const counter = Buffer.alloc(16);
    counter.writeBigUInt64BE(BigInt(h.seq));
    const keystream = nodeCrypto.keystream(streamKey, counter, 64);
    assert.deepEqual([Buffer.from(keystream.subarray(0, 16)), Buffer.from(keystream.subarray(48, 60))], [Buffer.from(h.seqTag!), Buffer.from(h.payloadNonce)]);
    const dek = keystream.subarray(16, 48);
    const wrapNonce = randomBytes(12);
    const wrappedKey = await aesSeal(key.wrap, wrapNonce, dek, wrapAd(KIND_RECIPIENT, h.seq, topic, h.sender, 'bob', h.payloadNonce));
    return joinEnvelope(encodeHeader({ ...h, kind: KIND_RECIPIENT, recipient: 'bob', wrapNonce, wrappedKey }), payload);
  };
  const sealedByNode = await sealEnvelope({ key, sender: 'alice', topic, seq: 7, payload: Buffer.from('node → web') });
  const openedByWeb = await withWebCrypto(async () => openEnvelope({ key, identity: 'bob', topic, envelope: await asRecipient(sealedByNode) }));
  assert.equal(Buffer.from(openedByWeb.payload).toString(), 'node → web');
  const sealedByWeb = await withWebCrypto(() => sealEnvelope({ key, sender: 'alice', topic, seq: 8, payload: Buffer.from('web → node') }));
  const openedByNode = await openEnvelope({ key, identity: 'bob', topic, envelope: await asRecipient(sealedByWeb) });
  assert.deepEqual([openedByNode.sender, openedByNode.seq, Buffer.from(openedByNode.payload).toString()], ['alice', 8, 'web → node']);
});

test('random bytes come fresh on every draw, across refills of the pool and beyond its size', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 2000; i++) {
    const r = nodeCrypto.random(i % 7 === 0 ? 32 : 12); // 2000 draws: several 4 KiB refills
    assert.equal(r.length, i % 7 === 0 ? 32 : 12);
    const hex = Buffer.from(r).toString('hex');
    assert.ok(!seen.has(hex), `draw ${i} repeated an earlier one`);
    seen.add(hex);
  }
  const big = nodeCrypto.random(10_000);
  assert.equal(big.length, 10_000);
  assert.ok(big.some((b) => b !== 0));
});
