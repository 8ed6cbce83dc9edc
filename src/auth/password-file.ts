/**
 * mosquitto 2.0 password files (`mosquitto_passwd`): one `user:hash` line per user, where hash is
 * `$6$salt$sha512(password || salt)` or `$7$iterations$salt$pbkdf2-sha512(password, salt)`, salt
 * and hash in base64. Read unchanged, so a mosquitto deployment's file works as is; written as `$7$`
 * with PASSWD_ITERATIONS, which mosquitto itself still reads (the count is in the line).
 */
import { createHash, pbkdf2, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';

const pbkdf2Async = promisify(pbkdf2);

/** OWASP's 2023 figure for PBKDF2-HMAC-SHA512; mosquitto_passwd writes 101. */
export const PASSWD_ITERATIONS = 210_000;
const SALT_BYTES = 12;
const HASH_BYTES = 64;
/** Bounds an attacker-supplied file entry could otherwise use to stall the thread pool. */
const MAX_ITERATIONS = 10_000_000;

export type PasswordHash =
  | { kind: 'sha512'; salt: Buffer; hash: Buffer }
  | { kind: 'pbkdf2-sha512'; iterations: number; salt: Buffer; hash: Buffer };

export class PasswordFileError extends Error {
  constructor(readonly file: string, readonly line: number, problem: string) {
    super(`${file}:${line}: ${problem}`);
    this.name = 'PasswordFileError';
  }
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Parses the hash part of a line; a string says what is wrong with it. */
export function parseHash(text: string): PasswordHash | string {
  const parts = text.split('$');
  // '', id, ..., salt, hash
  if (parts[0] !== '' || parts.length < 4) return 'not a mosquitto hash ($6$ or $7$); plain-text files need `mqt-tz passwd -U` first';
  const [, id] = parts;
  const b64 = (s: string | undefined, what: string): Buffer | string => (s !== undefined && BASE64.test(s) ? Buffer.from(s, 'base64') : `${what} is not base64`);
  if (id === '6' && parts.length === 4) {
    const salt = b64(parts[2], 'salt');
    const hash = b64(parts[3], 'hash');
    if (typeof salt === 'string') return salt;
    if (typeof hash === 'string') return hash;
    if (hash.length !== HASH_BYTES) return `hash is ${hash.length} bytes, not ${HASH_BYTES}`;
    return { kind: 'sha512', salt, hash };
  }
  if (id === '7' && parts.length === 5) {
    const iterations = Number(parts[2]);
    if (!Number.isInteger(iterations) || iterations < 1 || iterations > MAX_ITERATIONS) return `iteration count ${JSON.stringify(parts[2])} is not from 1 to ${MAX_ITERATIONS}`;
    const salt = b64(parts[3], 'salt');
    const hash = b64(parts[4], 'hash');
    if (typeof salt === 'string') return salt;
    if (typeof hash === 'string') return hash;
    if (hash.length !== HASH_BYTES) return `hash is ${hash.length} bytes, not ${HASH_BYTES}`;
    return { kind: 'pbkdf2-sha512', iterations, salt, hash };
  }
  return `unknown hash type $${id}$ (mosquitto 2.0 writes $6$ and $7$)`;
}

export function formatHash(h: PasswordHash): string {
  return h.kind === 'sha512'
    ? `$6$${h.salt.toString('base64')}$${h.hash.toString('base64')}`
    : `$7$${h.iterations}$${h.salt.toString('base64')}$${h.hash.toString('base64')}`;
}

/** The derivation off the event loop ($7$ runs in libuv's thread pool; $6$ is one SHA-512). */
async function derive(h: PasswordHash, password: Buffer): Promise<Buffer> {
  if (h.kind === 'sha512') return createHash('sha512').update(password).update(h.salt).digest();
  return pbkdf2Async(password, h.salt, h.iterations, HASH_BYTES, 'sha512');
}

export async function hashPassword(password: string, iterations = PASSWD_ITERATIONS): Promise<PasswordHash> {
  const salt = randomBytes(SALT_BYTES);
  const hash = await pbkdf2Async(Buffer.from(password, 'utf8'), salt, iterations, HASH_BYTES, 'sha512');
  return { kind: 'pbkdf2-sha512', iterations, salt, hash };
}

export async function verifyPassword(h: PasswordHash, password: Buffer): Promise<boolean> {
  const derived = await derive(h, password);
  return derived.length === h.hash.length && timingSafeEqual(derived, h.hash);
}

/** The lines of a password file, in order, comments and blank lines kept (for `mqt-tz passwd`). */
export type PasswdLine = { user: string; secret: string } | { text: string };

export function splitLines(text: string): PasswdLine[] {
  const lines = text.split(/\r?\n/);
  if (lines.at(-1) === '') lines.pop();
  return lines.map((line) => {
    const colon = line.indexOf(':');
    if (line.startsWith('#') || line.trim() === '' || colon <= 0) return { text: line };
    return { user: line.slice(0, colon), secret: line.slice(colon + 1) };
  });
}

export function joinLines(lines: readonly PasswdLine[]): string {
  return lines.map((l) => ('text' in l ? l.text : `${l.user}:${l.secret}`)).join('\n') + (lines.length > 0 ? '\n' : '');
}

/** A loaded password file: username → hash. Loading checks every line, so a bad file changes nothing. */
export class PasswordFile {
  private constructor(
    readonly path: string,
    private readonly users: ReadonlyMap<string, PasswordHash>,
    /** Spent on unknown users, so their answer takes as long as a wrong password's. */
    private readonly decoy: PasswordHash,
  ) {}

  static load(path: string): PasswordFile {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new PasswordFileError(path, 0, `cannot read: ${(err as Error).message}`);
    }
    const users = new Map<string, PasswordHash>();
    splitLines(text).forEach((line, i) => {
      if ('text' in line) {
        if (line.text.trim() !== '' && !line.text.startsWith('#')) throw new PasswordFileError(path, i + 1, 'expected user:hash');
        return;
      }
      const h = parseHash(line.secret);
      if (typeof h === 'string') throw new PasswordFileError(path, i + 1, `user ${JSON.stringify(line.user)}: ${h}`);
      users.set(line.user, h);
    });
    let strongest: PasswordHash | undefined;
    for (const h of users.values()) if (h.kind === 'pbkdf2-sha512' && (strongest === undefined || strongest.kind !== 'pbkdf2-sha512' || h.iterations > strongest.iterations)) strongest = h;
    const decoy: PasswordHash = { ...(strongest ?? { kind: 'sha512', salt: Buffer.alloc(SALT_BYTES), hash: Buffer.alloc(HASH_BYTES) }), salt: randomBytes(SALT_BYTES) };
    return new PasswordFile(path, users, decoy);
  }

  get size(): number {
    return this.users.size;
  }

  has(user: string): boolean {
    return this.users.has(user);
  }

  async verify(user: string, password: Buffer): Promise<boolean> {
    const h = this.users.get(user);
    const ok = await verifyPassword(h ?? this.decoy, password);
    return h !== undefined && ok;
  }
}
