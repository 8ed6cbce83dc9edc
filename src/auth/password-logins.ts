/** Logins against the current password file, rate-limited per source address; the file can be replaced live (SIGHUP). */
import { LoginLimiter, type LoginVerdict, type PasswordChecker } from './login-limiter.js';
import type { PasswordFile } from './password-file.js';

export class PasswordLogins implements PasswordChecker {
  constructor(
    private current: PasswordFile | undefined,
    readonly limiter: LoginLimiter = new LoginLimiter(),
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
    const ok = await file.verify(user, password ?? Buffer.alloc(0));
    if (ok && password !== undefined) {
      this.limiter.succeeded(address);
      return 'ok';
    }
    this.limiter.failed(address);
    return 'bad-credentials';
  }
}
