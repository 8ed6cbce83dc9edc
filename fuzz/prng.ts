// Seeded pseudo-random numbers for the fuzzer: every choice a case makes comes from here, so a
// seed and a case index regenerate the case (Math.random is never used for generation).

/** splitmix32: spreads a 32-bit seed over the generator's state words. */
function splitmix32(state: number): () => number {
  let s = state >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** sfc32 (small fast counter): 128 bits of state, passes PractRand; plenty for choosing bytes. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** One stream per (seed, ...labels): case i of seed S is the same whatever ran before it. */
  constructor(seed: number, ...labels: readonly number[]) {
    let mixed = seed >>> 0;
    for (const l of labels) mixed = splitmix32(mixed ^ Math.imul(l >>> 0, 0x27d4eb2d))();
    const next = splitmix32(mixed);
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    for (let i = 0; i < 12; i++) this.u32();
  }

  u32(): number {
    const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
    this.d = (this.d + 1) >>> 0;
    this.a = this.b ^ (this.b >>> 9);
    this.b = (this.c + (this.c << 3)) >>> 0;
    this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
    this.c = (this.c + t) >>> 0;
    return t;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x100000000) * n);
  }

  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }

  chance(p: number): boolean {
    return this.u32() / 0x100000000 < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[this.int(items.length)]!;
  }

  bytes(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** A child stream: choices made with it do not shift the parent's later choices. */
  fork(label: number): Prng {
    return new Prng(this.u32(), label);
  }
}
