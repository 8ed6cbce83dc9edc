/** The frames between host and trusted process. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FRAME_COMMAND, FrameDecoder, encodeFrame, type Frame } from '../../src/envelope/wire.js';

test('frames decode across arbitrary chunk boundaries and pipelined ids are kept', () => {
  const frames = [encodeFrame(FRAME_COMMAND, 1, 8, Buffer.from('abc')), encodeFrame(FRAME_COMMAND, 0xfffffffe, 2), encodeFrame(FRAME_COMMAND, 3, 9, Buffer.alloc(1000, 7))];
  const all = Buffer.concat(frames);
  for (const step of [1, 3, 7, 1000, all.length]) {
    const got: Frame[] = [];
    const d = new FrameDecoder((fr) => got.push({ ...fr, payload: Buffer.from(fr.payload) }));
    for (let i = 0; i < all.length; i += step) d.push(all.subarray(i, i + step));
    assert.deepEqual(got.map((g) => [g.id, g.code, g.payload.length]), [[1, 8, 3], [0xfffffffe, 2, 0], [3, 9, 1000]]);
  }
  const bad = Buffer.from(frames[0]!);
  bad[4] = 9;
  assert.throws(() => new FrameDecoder(() => undefined).push(bad), /wire version 9/);
});
