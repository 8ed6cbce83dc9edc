/**
 * The broker's abuse limits in one place: admission of new connections (rate per listener, count
 * per address), flapping bans at CONNECT, publish throttles per client. Every refusal and every
 * slow-down is counted and logged once per burst. Limits that are off cost nothing per message.
 */
import type { Logger } from 'pino';
import type { Limits } from '../config.js';
import { BurstLog } from './burst-log.js';
import { ConnectionAdmission } from './admission.js';
import { FlapDetector, type BannedBy } from './flapping.js';
import { PublishThrottle } from './publish-throttle.js';

export { PublishThrottle, type Pausable } from './publish-throttle.js';

export interface AbuseCounters {
  /** Connections closed before CONNECT because their listener was over `connectionRate`. */
  refusedConnectionRate: number;
  /** Connections closed before CONNECT because their address had `maxConnectionsPerAddress` open. */
  refusedPerAddress: number;
  /** CONNECTs refused because the client id or address is banned for flapping. */
  refusedBanned: number;
  /** Bans started (a client id or an address that flapped). */
  flapBans: number;
  /** Times a client's socket was paused for going over `publishRate` / `publishByteRate`. */
  publishPauses: number;
}

export class AbuseLimits {
  readonly burst: BurstLog;
  private readonly admission: ConnectionAdmission | undefined;
  private readonly flapping: FlapDetector | undefined;

  constructor(
    private readonly limits: Limits,
    private readonly counters: AbuseCounters,
    log: Pick<Logger, 'warn' | 'info'>,
  ) {
    this.burst = new BurstLog(log);
    if (limits.connectionRate > 0 || limits.maxConnectionsPerAddress > 0) {
      this.admission = new ConnectionAdmission(limits.connectionRate, limits.maxConnectionsPerAddress);
    }
    if (limits.flapConnects > 0) this.flapping = new FlapDetector(limits.flapConnects, limits.flapWindow * 1000, limits.flapBan * 1000);
  }

  /** A new connection: false = refused (close it before reading anything); else `released` when it closes. */
  admit(listener: string, address: string): boolean {
    const refused = this.admission?.admit(listener, address);
    if (refused === undefined) return true;
    if (refused === 'connection rate') {
      this.counters.refusedConnectionRate++;
      this.burst.note('connectionRate', { listener, remote: address, perSecond: this.limits.connectionRate }, 'connection refused: listener over its connection rate');
    } else {
      this.counters.refusedPerAddress++;
      this.burst.note('maxConnectionsPerAddress', { remote: address, max: this.limits.maxConnectionsPerAddress }, 'connection refused: too many connections from one address');
    }
    return false;
  }

  released(address: string): void {
    this.admission?.release(address);
  }

  /** A CONNECT (clientId undefined: to be assigned): what bans it, if anything. */
  connect(clientId: string | undefined, address: string): BannedBy | undefined {
    if (this.flapping === undefined) return undefined;
    const refusal = this.flapping.connect(clientId, address);
    if (refusal === undefined) return undefined;
    const banned = refusal.by;
    if (refusal.started) {
      this.counters.flapBans++;
      this.burst.note('flapBan', { clientId, remote: address, by: banned, seconds: this.limits.flapBan }, `banned for flapping: more than ${this.limits.flapConnects} connects within ${this.limits.flapWindow} s`);
    }
    this.counters.refusedBanned++;
    this.burst.note('banned', { clientId, remote: address, by: banned }, 'connection refused: banned for flapping');
    return banned;
  }

  /** A throttle for one client, or undefined when no publish limit is on. */
  publishThrottle(): PublishThrottle | undefined {
    const { publishRate, publishByteRate } = this.limits;
    return publishRate > 0 || publishByteRate > 0 ? new PublishThrottle(publishRate, publishByteRate) : undefined;
  }

  /** A client was paused for `ms`. */
  paused(clientId: string, ms: number): void {
    this.counters.publishPauses++;
    this.burst.note('publishRate', { clientId, ms }, 'client slowed: over its publish rate');
  }

  close(): void {
    this.burst.close();
  }
}
