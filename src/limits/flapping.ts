/**
 * Flapping detection: more than `maxConnects` CONNECTs within a window from one client id, or from
 * one source address, ban that id (from every address) or that address (for every id) for a while.
 * Keyed both ways so that changing the client id does not get around it (EMQX keys by id only).
 */

/** What a refused CONNECT was banned by. */
export type BannedBy = 'client id' | 'address';

export interface Refusal {
  by: BannedBy;
  /** This CONNECT went over the limit and started the ban. */
  started: boolean;
}

interface Window {
  since: number;
  count: number;
}

/** Keys tracked per kind at most; beyond it new keys are not counted until old windows end. */
const MAX_TRACKED = 200_000;

export class FlapDetector {
  private readonly windows = new Map<string, Window>();
  private readonly bans = new Map<string, number>();
  private lastPrune: number;

  constructor(
    private readonly maxConnects: number,
    private readonly windowMs: number,
    private readonly banMs: number,
    now = Date.now(),
  ) {
    this.lastPrune = now;
  }

  /**
   * Counts one CONNECT (clientId undefined: the client asked the broker to assign one); returns
   * why it is refused (a ban that this CONNECT started included), or undefined if it may go on.
   */
  connect(clientId: string | undefined, address: string, now = Date.now()): Refusal | undefined {
    if (now - this.lastPrune >= this.windowMs) this.prune(now);
    const idKey = clientId === undefined ? undefined : `id ${clientId}`;
    const addressKey = `address ${address}`;
    if (idKey !== undefined && this.banned(idKey, now)) return { by: 'client id', started: false };
    if (this.banned(addressKey, now)) return { by: 'address', started: false };
    const idOver = idKey !== undefined && this.count(idKey, now);
    const addressOver = this.count(addressKey, now);
    if (idOver) this.ban(idKey, now);
    if (addressOver) this.ban(addressKey, now);
    return idOver ? { by: 'client id', started: true } : addressOver ? { by: 'address', started: true } : undefined;
  }

  private banned(key: string, now: number): boolean {
    const until = this.bans.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.bans.delete(key);
    return false;
  }

  private ban(key: string, now: number): void {
    this.bans.set(key, now + this.banMs);
    this.windows.delete(key);
  }

  /** true once the key has more than maxConnects CONNECTs in its current window. */
  private count(key: string, now: number): boolean {
    const w = this.windows.get(key);
    if (w === undefined || now - w.since >= this.windowMs) {
      if (w === undefined && this.windows.size >= MAX_TRACKED) return false;
      this.windows.set(key, { since: now, count: 1 });
      return 1 > this.maxConnects;
    }
    return ++w.count > this.maxConnects;
  }

  private prune(now: number): void {
    this.lastPrune = now;
    for (const [key, w] of this.windows) if (now - w.since >= this.windowMs) this.windows.delete(key);
    for (const [key, until] of this.bans) if (until <= now) this.bans.delete(key);
  }
}
