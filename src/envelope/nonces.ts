// Random nonces from a pooled buffer. One randomFillSync costs about as much as the AES-GCM it
// feeds (~4 µs here, mostly call overhead), so the re-wrap hot path draws 12-byte nonces from a
// 4 KiB block filled at once. Each refill is a new buffer: nonces already handed out (views of
// the old block) never change under their holder.
import { randomFillSync } from 'node:crypto';

const POOL_BYTES = 4096;

let pool = Buffer.allocUnsafeSlow(0);
let at = 0;

/** `n` fresh random bytes (a view of the pool; do not write to it). */
export function randomNonce(n: number): Buffer {
  if (n > POOL_BYTES) return randomFillSync(Buffer.allocUnsafeSlow(n));
  if (at + n > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafeSlow(POOL_BYTES));
    at = 0;
  }
  const out = pool.subarray(at, at + n);
  at += n;
  return out;
}
