/** The trusted component's AES: a stream key's per-message keystream, as the publisher's SDK computes it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { StreamKey } from '../../src/tee/aead.js';
import { SEQ_FIELD_AT, STREAM_DERIVED_BYTES, writeStreamCounterBlocks } from '../../src/envelope/envelope-layout.js';
import { aesKeystream, useFastCrypto } from '../../src/client/crypto/webcrypto.js';
import { nodeCrypto } from '../../src/client/node-crypto.js';

const seqBytes = (seq: bigint): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(seq);
  return b;
};

test('a stream key yields, message after message, the AES-256-CTR keystream at the message\'s counter block, as node:crypto and WebCrypto compute it', async () => {
  const raw = randomBytes(32);
  const key = new StreamKey(raw);
  for (const seq of [0n, 1n, 255n, 2n ** 32n - 1n, 2n ** 32n, BigInt(Date.now()) * 1024n, 2n ** 53n - 1n]) {
    // the sequence number read in place, inside a header-like buffer
    const header = Buffer.concat([Buffer.from([1, 4]), seqBytes(seq), randomBytes(30)]);
    const derived = key.derive(header, [SEQ_FIELD_AT]);
    const counter = Buffer.concat([seqBytes(seq), Buffer.alloc(8)]);
    const ctr = createCipheriv('aes-256-ctr', raw, counter).update(Buffer.alloc(STREAM_DERIVED_BYTES));
    assert.equal(derived.length, STREAM_DERIVED_BYTES);
    assert.deepEqual(derived, ctr, `seq ${seq}`);
    useFastCrypto(undefined);
    try {
      assert.deepEqual(Buffer.from(await aesKeystream(raw, counter, STREAM_DERIVED_BYTES)), ctr, `WebCrypto, seq ${seq}`);
    } finally {
      useFastCrypto(nodeCrypto);
    }
    assert.deepEqual(Buffer.from(nodeCrypto.keystream(raw, counter, STREAM_DERIVED_BYTES)), ctr, `the SDK's node:crypto, seq ${seq}`);
    // the counter blocks the SDK starts its keystream from
    const blocks = Buffer.alloc(STREAM_DERIVED_BYTES);
    writeStreamCounterBlocks(blocks, 0, seqBytes(seq), 0);
    assert.deepEqual(blocks.subarray(0, 16), counter);
  }
  // another key, another keystream; the same key, the same one
  assert.notDeepEqual(new StreamKey(randomBytes(32)).derive(seqBytes(7n), [0]), key.derive(seqBytes(7n), [0]));
  assert.deepEqual(key.derive(seqBytes(7n), [0]), key.derive(seqBytes(7n), [0]));
  // a run of messages in one call: each keystream as if derived alone
  const seqs = Buffer.concat([7n, 9n, 2n ** 40n, 8n].map(seqBytes));
  const run = key.derive(seqs, [0, 8, 16, 24]);
  for (let m = 0; m < 4; m++) assert.deepEqual(run.subarray(m * STREAM_DERIVED_BYTES, (m + 1) * STREAM_DERIVED_BYTES), key.derive(seqs, [8 * m]), `message ${m} of the run`);
  assert.throws(() => new StreamKey(randomBytes(16)), RangeError);
});
