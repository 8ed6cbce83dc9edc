/** Which new connections are let in at all: per-listener connection rate and connections per source address. */
import { TokenBucket } from './token-bucket.js';

export type RefusedBy = 'connection rate' | 'connections per address';

export class ConnectionAdmission {
  private readonly rates = new Map<string, TokenBucket>();
  /** Open connections per source address; kept only while that limit is on. */
  private readonly perAddress = new Map<string, number>();

  constructor(
    /** New connections per second per listener; 0 = no limit. */
    private readonly connectionRate: number,
    /** Open connections per source address; 0 = no limit. */
    private readonly maxPerAddress: number,
  ) {}

  /** A new connection on `listener` from `address`: undefined = admitted (release it when it closes), else why not. */
  admit(listener: string, address: string, now = Date.now()): RefusedBy | undefined {
    if (this.connectionRate > 0) {
      let bucket = this.rates.get(listener);
      if (bucket === undefined) this.rates.set(listener, (bucket = new TokenBucket(this.connectionRate, this.connectionRate, now)));
      if (!bucket.tryTake(now)) return 'connection rate';
    }
    if (this.maxPerAddress > 0) {
      const open = this.perAddress.get(address) ?? 0;
      if (open >= this.maxPerAddress) return 'connections per address';
      this.perAddress.set(address, open + 1);
    }
    return undefined;
  }

  /** An admitted connection from `address` closed. */
  release(address: string): void {
    if (this.maxPerAddress === 0) return;
    const open = this.perAddress.get(address) ?? 0;
    if (open <= 1) this.perAddress.delete(address);
    else this.perAddress.set(address, open - 1);
  }
}
