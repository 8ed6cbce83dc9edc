/** System users and groups for the tests that start processes as root and drop them (they need root). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

export const RUNNING_AS_ROOT = process.getuid?.() === 0;
export const BROKER_USER = 'mqttz-broker-ci';
export const TEE_USER = 'mqttz-tee-ci';

export interface Ids {
  uid: number;
  gid: number;
}

function getent(database: 'passwd' | 'group', name: string): string[] | undefined {
  const r = spawnSync('getent', [database, name], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim().split(':') : undefined;
}

/** A system user with a group of its own, created once and reused by later runs (useradd exit 9: created meanwhile). */
export function ensureSystemUser(name: string): Ids {
  if (getent('passwd', name) === undefined) {
    const r = spawnSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', name], { encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 9) throw new Error(`useradd ${name} failed: ${r.stderr}`);
  }
  const entry = getent('passwd', name)!;
  return { uid: Number(entry[2]), gid: Number(entry[3]) };
}

/** A system group with (at least) these members; returns its gid. */
export function ensureSystemGroup(name: string, members: readonly string[]): number {
  if (getent('group', name) === undefined) {
    const r = spawnSync('groupadd', ['--system', name], { encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 9) throw new Error(`groupadd ${name} failed: ${r.stderr}`);
  }
  for (const m of members) {
    const r = spawnSync('usermod', ['-aG', name, m], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`usermod -aG ${name} ${m} failed: ${r.stderr}`);
  }
  return Number(getent('group', name)![2]);
}

/** Opens each path for reading as `who` (no supplementary groups), in a process of its own: 'ok' or the error code. */
export function openAs(who: Ids, paths: readonly string[]): Record<string, string> {
  const script = `const fs = require('node:fs'); const out = {};
for (const p of process.argv.slice(1)) { try { fs.closeSync(fs.openSync(p, 'r')); out[p] = 'ok'; } catch (e) { out[p] = e.code; } }
process.stdout.write(JSON.stringify(out));`;
  const r = spawnSync(process.execPath, ['-e', script, ...paths], { uid: who.uid, gid: who.gid, encoding: 'utf8', env: {} });
  assert.equal(r.status, 0, `probe as uid ${who.uid}: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, string>;
}

/** Connects to a Unix socket as `who`: 'ok' or the error code. */
export function connectAs(who: Ids, path: string): string {
  const script = `const c = require('node:net').connect(process.argv[1]);
c.on('connect', () => { process.stdout.write('ok'); c.destroy(); });
c.on('error', (e) => process.stdout.write(e.code));`;
  const r = spawnSync(process.execPath, ['-e', script, path], { uid: who.uid, gid: who.gid, encoding: 'utf8', env: {} });
  return r.stdout;
}

export function uidOf(pid: number): number {
  return Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}
