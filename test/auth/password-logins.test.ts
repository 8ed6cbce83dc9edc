// Logins against a password file: per-address limiting, the bound on checks running at once, and
// replacing the file live.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { PasswordFile, formatHash, hashPassword } from '../../src/auth/password-file.js';
import { PasswordLogins } from '../../src/auth/password-logins.js';

const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-logins-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function fileWith(name: string, user: string, password: string): Promise<PasswordFile> {
  const path = join(dir, name);
  writeFileSync(path, `${user}:${formatHash(await hashPassword(password, 1000))}\n`);
  return PasswordFile.load(path);
}

test('checks beyond the bound of those running at once are refused unchecked, whatever their address; the next one after is checked', async () => {
  const logins = new PasswordLogins(await fileWith('busy.passwd', 'alice', 'pw'), undefined, 2);
  const verdicts = await Promise.all(['10.0.0.1', '10.0.0.2', '10.0.0.3'].map((a) => logins.check(a, 'alice', Buffer.from('pw'))));
  assert.deepEqual(verdicts, ['ok', 'ok', 'rate-limited']);
  assert.equal(logins.refusedBusy, 1);
  assert.equal(await logins.check('10.0.0.3', 'alice', Buffer.from('pw')), 'ok');
});

test('no password is a bad login; a replaced file applies to the next check; no file means nothing checks out', async () => {
  const logins = new PasswordLogins(await fileWith('one.passwd', 'alice', 'pw'));
  assert.equal(await logins.check('a', 'alice', undefined), 'bad-credentials');
  logins.replace(await fileWith('two.passwd', 'bob', 'pw2'));
  assert.deepEqual([await logins.check('a', 'alice', Buffer.from('pw')), await logins.check('a', 'bob', Buffer.from('pw2'))], ['bad-credentials', 'ok']);
  logins.replace(undefined);
  assert.equal(logins.configured, false);
  assert.equal(await logins.check('a', 'bob', Buffer.from('pw2')), 'bad-credentials');
});
