/**
 * Failed logins per source address: after `maxFailures` failures within `windowMs`, that address's
 * logins are refused without checking a password until the window has passed since its last
 * failure. Guessing is slowed to a few tries a minute, and a flood of wrong passwords cannot keep
 * the hash thread pool busy. Bounded in memory: the oldest addresses go first.
 */
export interface LoginLimits {
  maxFailures: number;
  windowMs: number;
  /** Addresses remembered at most. */
  maxAddresses: number;
}

export const defaultLoginLimits: LoginLimits = { maxFailures: 5, windowMs: 60_000, maxAddresses: 10_000 };

interface Record {
  failures: number;
  last: number;
}

export class LoginLimiter {
  private readonly failures = new Map<string, Record>();
  /** Logins refused because their address was over its limit. */
  refused = 0;

  constructor(
    private readonly limits: LoginLimits = defaultLoginLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether a login from `address` may be checked now (false: refuse it unchecked). */
  allows(address: string): boolean {
    const r = this.failures.get(address);
    if (r === undefined) return true;
    if (this.now() - r.last >= this.limits.windowMs) {
      this.failures.delete(address);
      return true;
    }
    if (r.failures < this.limits.maxFailures) return true;
    this.refused++;
    return false;
  }

  failed(address: string): void {
    const now = this.now();
    const r = this.failures.get(address);
    if (r !== undefined && now - r.last < this.limits.windowMs) {
      r.failures++;
      r.last = now;
      // re-inserted: the map's order is the order of last failure, oldest first
      this.failures.delete(address);
      this.failures.set(address, r);
      return;
    }
    this.failures.delete(address);
    if (this.failures.size >= this.limits.maxAddresses) this.failures.delete(this.failures.keys().next().value!);
    this.failures.set(address, { failures: 1, last: now });
  }

  succeeded(address: string): void {
    this.failures.delete(address);
  }
}

/** What checking a login came to. */
export type LoginVerdict = 'ok' | 'bad-credentials' | 'rate-limited';

/** What checks a username and password (the password file, behind the per-address limiter). */
export interface PasswordChecker {
  /** Whether a password store is configured at all. */
  readonly configured: boolean;
  check(address: string, user: string, password: Buffer | undefined): Promise<LoginVerdict>;
}
