/**
 * Logins against the current password file, rate-limited per source address and bounded in how
 * many hash checks run at once (a flood from many addresses cannot queue up the thread pool); the
 * file can be replaced live (SIGHUP).
 */
import { LoginLimiter, type LoginVerdict, type PasswordChecker } from './login-limiter.js';
import type { PasswordFile } from './password-file.js';

/** Checks in progress at most; libuv runs 4 at a time by default, the rest wait their turn. */
export const MAX_PENDING_CHECKS = 64;

export class PasswordLogins implements PasswordChecker {
  private pending = 0;
  /** Logins refused unchecked because MAX_PENDING_CHECKS were already running. */
  refusedBusy = 0;

  constructor(
    private current: PasswordFile | undefined,
    readonly limiter: LoginLimiter = new LoginLimiter(),
    private readonly maxPending = MAX_PENDING_CHECKS,
  ) {}

  get configured(): boolean {
    return this.current !== undefined;
  }

  get file(): PasswordFile | undefined {
    return this.current;
  }

  /** Takes a new file (or none) for every later login; connected clients stay connected. */
  replace(file: PasswordFile | undefined): void {
    this.current = file;
  }

  async check(address: string, user: string, password: Buffer | undefined): Promise<LoginVerdict> {
    const file = this.current;
    if (file === undefined) return 'bad-credentials';
    if (!this.limiter.allows(address)) return 'rate-limited';
    if (this.pending >= this.maxPending) {
      this.refusedBusy++;
      return 'rate-limited';
    }
    this.pending++;
    let ok: boolean;
    try {
      ok = await file.verify(user, password ?? Buffer.alloc(0));
    } finally {
      this.pending--;
    }
    if (ok && password !== undefined) {
      this.limiter.succeeded(address);
      return 'ok';
    }
    this.limiter.failed(address);
    return 'bad-credentials';
  }
}
