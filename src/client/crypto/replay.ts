// Per-sender sliding replay window over sequence numbers (as IPsec's anti-replay window):
// accepts each (sender, seq) once, and refuses anything older than `size` below the highest seen.

interface SenderWindow {
  max: number;
  bits: Uint32Array;
}

export type ReplayVerdict = 'fresh' | 'duplicate' | 'too-old';

export class ReplayWindow {
  private readonly senders = new Map<string, SenderWindow>();

  constructor(readonly size = 1024) {
    if (!Number.isInteger(size) || size < 32 || size % 32 !== 0) throw new RangeError('window size must be a positive multiple of 32');
  }

  private bit(w: SenderWindow, seq: number): boolean {
    const i = seq % this.size;
    return (w.bits[i >>> 5]! & (1 << (i & 31))) !== 0;
  }

  check(sender: string, seq: number): ReplayVerdict {
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
