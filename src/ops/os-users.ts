// OS accounts for dropping root (as mosquitto's `user` option does): names resolved through the
// system's user database (getent, so NSS sources count), and ownership handed over before the drop.
import { execFileSync } from 'node:child_process';
import { chownSync, lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export interface OsUser {
  name: string;
  uid: number;
  gid: number;
}

function getent(database: 'passwd' | 'group', name: string): string[] | undefined {
  try {
    return execFileSync('getent', [database, name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim().split(':');
  } catch {
    return undefined; // exit code 2: no such entry
  }
}

/** The account `name` (or a numeric uid). */
export function lookupUser(name: string): OsUser {
  const entry = getent('passwd', name);
  if (entry === undefined || entry.length < 4) throw new RangeError(`no such user ${JSON.stringify(name)} (create it, e.g. \`useradd --system ${name}\`)`);
  return { name: entry[0]!, uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** The group id of `name` (or a numeric gid). */
export function lookupGroup(name: string, what: string): number {
  const entry = getent('group', name);
  if (entry === undefined || entry.length < 3) throw new RangeError(`${what}: no such group ${JSON.stringify(name)}`);
  return Number(entry[2]);
}

export function runningAsRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Gives `path` and everything under it to `user`, except the paths in `skip`; symbolic links are not followed. */
export function chownTree(path: string, user: OsUser, skip: ReadonlySet<string> = new Set()): void {
  if (skip.has(path)) return;
  const st = lstatSync(path);
  if (st.isSymbolicLink()) return;
  chownSync(path, user.uid, user.gid);
  if (st.isDirectory()) for (const entry of readdirSync(path)) chownTree(join(path, entry), user, skip);
}

/** Node has process.initgroups on POSIX; @types/node does not declare it. */
type PosixProcess = NodeJS.Process & { initgroups(user: string, extraGroup: number): void };

/**
 * Drops this process from root to `user` for good: the user's groups (a group that may open the
 * trusted component's socket among them), then its group, then the user.
 */
export function dropRootTo(user: OsUser): void {
  (process as PosixProcess).initgroups(user.name, user.gid);
  process.setgid!(user.gid);
  process.setuid!(user.uid);
}
