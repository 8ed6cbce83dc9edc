import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow, SequenceCounter, importClientKey, openEnvelope, sealEnvelope, MalformedEnvelopeError, NotForMeError } from '../../../src/client/crypto/index.js';
import { parseHeader, splitEnvelope } from '../../../src/envelope/envelope-layout.js';

test('a sealed envelope carries a sender header (kind 4) that names sender and sequence, and a payload hiding the plaintext', async () => {
  const key = await importClientKey(new Uint8Array(32).fill(7));
  const payload = new TextEncoder().encode('the plaintext payload');
  const env = await sealEnvelope({ key, sender: 'alice', topic: 'a/b', seq: 99, payload });
  const { header, payload: ct } = splitEnvelope(env);
  const h = parseHeader(header);
  assert.deepEqual([h.kind, h.sender, h.recipient, h.seq], [4, 'alice', '', 99]);
  // one stream per (key, sender, topic): the stream part repeats, tag and payload nonce do not
  const next = parseHeader(splitEnvelope(await sealEnvelope({ key, sender: 'alice', topic: 'a/b', seq: 100, payload })).header);
  assert.deepEqual([Buffer.from(next.wrapNonce), Buffer.from(next.wrappedKey)], [Buffer.from(h.wrapNonce), Buffer.from(h.wrappedKey)]);
  assert.notDeepEqual([Buffer.from(next.seqTag!), Buffer.from(next.payloadNonce)], [Buffer.from(h.seqTag!), Buffer.from(h.payloadNonce)]);
  const other = parseHeader(splitEnvelope(await sealEnvelope({ key, sender: 'alice', topic: 'a/c', seq: 101, payload })).header);
  assert.notDeepEqual(Buffer.from(other.wrappedKey), Buffer.from(h.wrappedKey));
  // a sequence number that does not rise in the stream (a second counter on the same key) never
  // gets the keystream of one sealed before: a new stream, so another data key and payload nonce
  const again = parseHeader(splitEnvelope(await sealEnvelope({ key, sender: 'alice', topic: 'a/b', seq: 99, payload })).header);
  assert.notDeepEqual(Buffer.from(again.wrappedKey), Buffer.from(h.wrappedKey));
  assert.notDeepEqual(Buffer.from(again.payloadNonce), Buffer.from(h.payloadNonce));
  assert.equal(ct.length, payload.length + 16);
  assert.equal(Buffer.from(env).indexOf(Buffer.from(payload)), -1);
  await assert.rejects(openEnvelope({ key, identity: 'alice', topic: 'a/b', envelope: env }), NotForMeError);
  await assert.rejects(openEnvelope({ key, identity: 'alice', topic: 'a/b', envelope: new Uint8Array([0, 200, 1]) }), MalformedEnvelopeError);
  await assert.rejects(importClientKey(new Uint8Array(16)), RangeError);
});

test('the replay window accepts each sequence number once, out of order within the window, and refuses older ones', () => {
  const w = new ReplayWindow(64);
  for (const seq of [10, 12, 11, 60]) {
    assert.equal(w.check('a', seq), 'fresh');
    w.accept('a', seq);
  }
  assert.equal(w.check('a', 12), 'duplicate');
  assert.equal(w.check('a', 59), 'fresh');
  w.accept('a', 100);
  assert.equal(w.check('a', 36), 'too-old');
  assert.equal(w.check('b', 12), 'fresh', 'windows are per sender');
  w.accept('a', 100 + 1000);
  assert.equal(w.check('a', 1100), 'duplicate');
  assert.equal(w.check('a', 1099), 'fresh', 'a large jump clears the window');
  assert.throws(() => new ReplayWindow(10), RangeError);
});

test('publisher sequence numbers rise strictly, also across a restart', () => {
  let now = 1_700_000_000_000;
  const a = new SequenceCounter(() => now);
  let last = 0;
  for (let i = 0; i < 1000; i++) {
    const s = a.next();
    assert.ok(s > last);
    last = s;
  }
  now += 1; // restarted one millisecond later, with no stored state
  const restarted = new SequenceCounter(() => now);
  assert.ok(restarted.next() > last);
  assert.ok(Number.isSafeInteger(restarted.next()));
});
