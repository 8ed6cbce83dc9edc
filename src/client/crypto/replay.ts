// Per-sender sliding replay window over sequence numbers (as IPsec's anti-replay window):
// accepts each (sender, seq) once, and refuses anything older than `size` below the highest seen
// or, with a maximum age, sent longer ago than that (sequence numbers carry their send time).
import { fromBase64Url, toBase64Url } from '../../envelope/bytes.js';

interface SenderWindow {
  max: number;
  bits: Uint32Array;
}

export type ReplayVerdict = 'fresh' | 'duplicate' | 'too-old' | 'expired';

/** What a window needs to go on after a restart: per sender, the highest number and the bitmap below it. */
export interface ReplaySnapshot {
  size: number;
  senders: Array<{ sender: string; max: number; seen: string }>;
}

/** Sequence numbers are milliseconds since 1970 times 1024 (SequenceCounter): the send time, or later. */
export const sentAtMs = (seq: number): number => Math.floor(seq / 1024);

export class ReplayWindow {
  private readonly senders = new Map<string, SenderWindow>();

  /** `maxAgeMs`: refuse messages whose sequence number says they were sent longer ago than this. */
  constructor(readonly size = 1024, readonly maxAgeMs?: number, private readonly clock: () => number = Date.now) {
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0) throw new RangeError('window size must be a positive multiple of 32');
    if (maxAgeMs !== undefined && !(maxAgeMs > 0)) throw new RangeError('maximum age must be a positive number of milliseconds');
  }

  private bit(w: SenderWindow, seq: number): boolean {
    const i = seq % this.size;
    return (w.bits[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  check(sender: string, seq: number): ReplayVerdict {
    if (this.maxAgeMs !== undefined && sentAtMs(seq) < this.clock() - this.maxAgeMs) return 'expired';
    const w = this.senders.get(sender);
    if (w === undefined || seq > w.max) return 'fresh';
    if (seq <= w.max - this.size) return 'too-old';
    return this.bit(w, seq) ? 'duplicate' : 'fresh';
  }

  /** Records an authenticated message; call only after check() said 'fresh'. */
  accept(sender: string, seq: number): void {
    let w = this.senders.get(sender);
    if (w === undefined) {
      w = { max: seq, bits: new Uint32Array(this.size / 32) };
      this.senders.set(sender, w);
    } else if (seq > w.max) {
      if (seq - w.max >= this.size) w.bits.fill(0);
      else for (let s = w.max + 1; s <= seq; s++) w.bits[(s % this.size) >>> 5]! &= ~(1 << ((s % this.size) & 31));
      w.max = seq;
    }
    const i = seq % this.size;
    w.bits[i >>> 5]! |= 1 << (i & 31);
  }

  snapshot(): ReplaySnapshot {
    const senders = [...this.senders].map(([sender, w]) => {
      const seen = new DataView(new ArrayBuffer(w.bits.byteLength)); // little-endian words, whatever the machine
      w.bits.forEach((word, i) => seen.setUint32(i * 4, word, true));
      return { sender, max: w.max, seen: toBase64Url(new Uint8Array(seen.buffer)) };
    });
    return { size: this.size, senders };
  }

  /**
   * Takes over a snapshot's senders. Made with another window size, its bitmaps do not fit: then
   * everything up to each sender's highest number counts as seen (refusing a few late messages
   * rather than accepting a replay).
   */
  restore(s: ReplaySnapshot): void {
    for (const { sender, max, seen } of s.senders) {
      const bits = new Uint32Array(this.size / 32);
      const saved = fromBase64Url(seen);
      if (s.size === this.size && saved.length === bits.byteLength) {
        const view = new DataView(saved.buffer, saved.byteOffset, saved.byteLength);
        for (let i = 0; i < bits.length; i++) bits[i] = view.getUint32(i * 4, true);
      } else bits.fill(0xffffffff);
      this.senders.set(sender, { max, bits });
    }
  }
}

/**
 * Publisher sequence numbers that keep rising across restarts without stored state:
 * milliseconds since 1970 times 1024, then +1 per message (fine below 1024 messages per ms).
 */
export class SequenceCounter {
  private last: number;
  constructor(private readonly clock: () => number = Date.now) {
    this.last = clock() * 1024;
  }
  next(): number {
    this.last = Math.max(this.last + 1, this.clock() * 1024);
    return this.last;
  }
}
