import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../../fuzz/prng.js';

const draw = (p: Prng, n: number): number[] => Array.from({ length: n }, () => p.u32());

describe('fuzz PRNG', () => {
  it('gives the same sequence for the same seed and labels, another for another case index', () => {
    assert.deepEqual(draw(new Prng(42, 1, 7), 50), draw(new Prng(42, 1, 7), 50));
    assert.notDeepEqual(draw(new Prng(42, 1, 7), 50), draw(new Prng(42, 1, 8), 50));
    assert.notDeepEqual(draw(new Prng(42, 1, 7), 50), draw(new Prng(43, 1, 7), 50));
  });

  it('keeps a fork from shifting the parent beyond the one draw that seeds it', () => {
    const a = new Prng(5);
    const b = new Prng(5);
    const child = a.fork(1);
    draw(child, 100);
    b.u32();
    assert.deepEqual(draw(a, 20), draw(b, 20));
  });

  it('draws integers within their bounds and reaches both ends', () => {
    const p = new Prng(9);
    const seen = new Set<number>();
    for (let i = 0; i < 2000; i++) {
      const n = p.range(3, 7);
      assert.ok(n >= 3 && n <= 7);
      seen.add(n);
    }
    assert.deepEqual([...seen].sort(), [3, 4, 5, 6, 7]);
    assert.equal(p.int(1), 0);
  });
});
