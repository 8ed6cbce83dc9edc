import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqttPacket from 'mqtt-packet';
import { encodeVarint, mutate, mutations, readVarint } from '../../fuzz/mutate.js';
import { Prng } from '../../fuzz/prng.js';

const publish = mqttPacket.generate({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('hello'), qos: 1, messageId: 7, retain: false, dup: false });

describe('fuzz mutations', () => {
  it('encodes and reads MQTT Remaining Length at its 1- to 4-byte boundaries', () => {
    for (const n of [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 268_435_455]) {
      const bytes = encodeVarint(n);
      assert.deepEqual(readVarint(Buffer.concat([Buffer.from([0x30]), bytes])), { value: n, bytes: bytes.length });
    }
    assert.equal(readVarint(Buffer.from([0x30, 0xff, 0xff])), undefined, 'cut short');
  });

  it('makes the Remaining Length lie about the bytes that follow', () => {
    const p = new Prng(1);
    let lies = 0;
    for (let i = 0; i < 50; i++) {
      const out = mutations.lengthLie!(p, publish, publish);
      const field = readVarint(out);
      if (field === undefined || field.value !== out.length - 1 - field.bytes) lies++;
      assert.deepEqual(out.subarray(-publish.length + 2), publish.subarray(2), 'the body is kept');
    }
    assert.ok(lies >= 45, `${lies} of 50 lie`);
  });

  it('is reproducible from the seed and changes the packet', () => {
    const run = (seed: number): Buffer[] => {
      const p = new Prng(seed);
      return Array.from({ length: 30 }, () => mutate(p, publish, Buffer.from('other')));
    };
    assert.deepEqual(run(3), run(3));
    assert.ok(run(3).filter((b) => b.equals(publish)).length < 5);
  });
});
