// `mqt-tz passwd` as a child process: mosquitto_passwd's flags, prompts from a pipe and from a
// real pseudo-terminal, and one-line errors.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, test } from 'node:test';
import { PasswordFile } from '../../src/auth/password-file.js';
import { withTimeout, WAIT_MS } from '../helpers/broker.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-passwd-cli-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('mqt-tz passwd', () => {
  const passwd = async (args: string[], input?: string): Promise<{ code: number; stderr: string }> => {
    const child = spawn(process.execPath, [MAIN, 'passwd', ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin.end(input ?? '');
    const code = await withTimeout(new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1))), WAIT_MS * 3, 'mqt-tz passwd');
    return { code, stderr };
  };

  test('-c creates, a password read twice from standard input adds a user, -b updates, -D deletes, -U hashes a plain-text file', async () => {
    const file = join(dir, 'cli.passwd');
    assert.equal((await passwd(['-c', '-b', file, 'alice', 'one'])).code, 0);
    assert.equal((await passwd([file, 'bob'], 'two\ntwo\n')).code, 0);
    let pw = PasswordFile.load(file);
    assert.equal(await pw.verify('bob', Buffer.from('two')), true);
    assert.equal((await passwd(['-b', file, 'alice', 'uno'])).code, 0);
    pw = PasswordFile.load(file);
    assert.equal(await pw.verify('alice', Buffer.from('uno')), true);
    assert.equal((await passwd(['-D', file, 'bob'])).code, 0);
    assert.equal(PasswordFile.load(file).has('bob'), false);

    const plain = join(dir, 'plain.passwd');
    writeFileSync(plain, '# team\ncarol:pass word\n');
    assert.equal((await passwd(['-U', plain])).code, 0);
    assert.match(readFileSync(plain, 'utf8'), /^# team\ncarol:\$7\$210000\$/);
    assert.equal(await PasswordFile.load(plain).verify('carol', Buffer.from('pass word')), true);
  });

  test('on a terminal the password is asked twice and not echoed', async () => {
    const file = join(dir, 'tty.passwd');
    // a real pseudo-terminal: `script` runs the command on one and relays our pipe to it
    const child = spawn('script', ['-qfec', `'${process.execPath}' '${MAIN}' passwd -c '${file}' erin`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let answered = 0;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const prompts = (out.match(/password: /gi) ?? []).length;
      for (; answered < prompts; answered++) child.stdin.write('typed-secret\r');
    });
    const code = await withTimeout(new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1))), WAIT_MS * 3, 'mqt-tz passwd on a terminal');
    assert.equal(code, 0, out);
    assert.match(out, /Password: [\s\S]*Reenter password: [\s\S]*added erin/);
    assert.doesNotMatch(out, /typed-secret/);
    assert.equal(await PasswordFile.load(file).verify('erin', Buffer.from('typed-secret')), true);
  });

  test('mistakes are one line and exit code 2: passwords that differ, a missing file without -c, an unknown user to delete, -c with -D', async () => {
    const file = join(dir, 'cli2.passwd');
    const cases: [string[], string | undefined, RegExp][] = [
      [['-c', file, 'a'], 'x\ny\n', /passwords do not match/],
      [[join(dir, 'nope'), 'a', 'pw'], undefined, /needs -b/],
      [['-b', join(dir, 'nope'), 'a', 'pw'], undefined, /does not exist \(use -c/],
      [['-c', '-D', file, 'a'], undefined, /-c and -D/],
      [['-b', file, 'a:b', 'pw'], undefined, /may not be empty or contain ':'/],
    ];
    for (const [args, input, problem] of cases) {
      const r = await passwd(args, input);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /^mqt-tz passwd: [^\n]+\n$/);
      assert.match(r.stderr, problem);
    }
    await passwd(['-c', '-b', file, 'a', 'pw']);
    const r = await passwd(['-D', file, 'zed']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /user "zed" not found/);
  });
});
