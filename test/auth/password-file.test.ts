// Password files: mosquitto_passwd's own files read unchanged, ours read by mosquitto itself,
// logins over real sockets (right, wrong, unknown, rate-limited), the ACL's `user` on the
// authenticated username, and `mqt-tz passwd` as a child process.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { PasswordFile, PasswordFileError, formatHash, hashPassword } from '../../src/auth/password-file.js';
import { LoginLimiter } from '../../src/auth/login-limiter.js';
import { connectMqtt, startTestBroker, WAIT_MS, withTimeout } from '../helpers/broker.js';

const run = promisify(execFile);
const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-passwd-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The CONNACK return code MQTT.js (v3.1.1) gets for these credentials; 0 = accepted. */
async function connackCode(url: string, username?: string, password?: string): Promise<number> {
  try {
    const c = await connectMqtt(url, { username, password, protocolVersion: 4 });
    await c.endAsync();
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    return typeof code === 'number' ? code : -1;
  }
}

describe('mosquitto password files', () => {
  test('a file written by Debian\'s mosquitto_passwd ($7$ PBKDF2 and $6$ SHA-512) is read unchanged and checks the passwords', async () => {
    const file = join(dir, 'mosquitto.passwd');
    await run('mosquitto_passwd', ['-c', '-b', file, 'alice', 'wonder land']);
    await run('mosquitto_passwd', ['-H', 'sha512', '-b', file, 'bob', 'builder']);
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^alice:\$7\$101\$/m);
    assert.match(text, /^bob:\$6\$/m);
    const pw = PasswordFile.load(file);
    assert.equal(pw.size, 2);
    assert.equal(await pw.verify('alice', Buffer.from('wonder land')), true);
    assert.equal(await pw.verify('alice', Buffer.from('wonder lane')), false);
    assert.equal(await pw.verify('bob', Buffer.from('builder')), true);
    assert.equal(await pw.verify('bob', Buffer.from('builde')), false);
    assert.equal(await pw.verify('carol', Buffer.from('builder')), false);
  });

  test('a line that is not user:hash, a plain-text password or an unknown hash type names the file, line and problem', () => {
    const cases: [string, RegExp][] = [
      ['alice:secret\n', /bad\.passwd:1: user "alice": not a mosquitto hash/],
      ['# comment\n\nalice:$5$abc$def\n', /bad\.passwd:3: user "alice": unknown hash type \$5\$/],
      ['no colon here\n', /bad\.passwd:1: expected user:hash/],
      ['a:$7$0$sIgJ2Mh/lui1y/2p$AAAA\n', /iteration count "0"/],
    ];
    for (const [content, problem] of cases) {
      const file = join(dir, 'bad.passwd');
      writeFileSync(file, content);
      assert.throws(() => PasswordFile.load(file), (err: unknown) => err instanceof PasswordFileError && problem.test(err.message));
    }
    assert.throws(() => PasswordFile.load(join(dir, 'missing')), /cannot read/);
  });

  test('checking a 210 000-iteration hash does not hold the event loop: timers run while it is computed', async () => {
    const file = join(dir, 'slow.passwd');
    writeFileSync(file, `alice:${formatHash(await hashPassword('pw'))}\n`);
    const pw = PasswordFile.load(file);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      assert.equal(await pw.verify('alice', Buffer.from('pw')), true);
    } finally {
      clearInterval(timer);
    }
    assert.ok(ticks >= 3, `the event loop ran ${ticks} timer callbacks during the check`);
  });

  test('mosquitto itself accepts the $7$ 210 000-iteration hash that mqt-tz passwd writes, and refuses a wrong password', async () => {
    const file = join(dir, 'ours.passwd');
    await run(process.execPath, [MAIN, 'passwd', '-c', '-b', file, 'dana', 's3cret pass']);
    assert.match(readFileSync(file, 'utf8'), /^dana:\$7\$210000\$[A-Za-z0-9+/]{16}\$[A-Za-z0-9+/]{86}==\n$/);
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    // as root mosquitto would switch to its own user, who cannot read a temp folder of ours
    const user = process.getuid?.() === 0 ? 'user root\n' : '';
    writeFileSync(conf, `${user}listener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${file}\n`);
    const mosquitto = spawn('mosquitto', ['-c', conf], { stdio: 'ignore' });
    try {
      const url = `mqtt://127.0.0.1:${port}`;
      const deadline = Date.now() + WAIT_MS;
      // refused connections (-1) until mosquitto listens
      while ((await connackCode(url, 'dana', 'nope')) === -1) assert.ok(Date.now() < deadline, 'mosquitto listens');
      assert.equal(await connackCode(url, 'dana', 's3cret pass'), 0);
      assert.notEqual(await connackCode(url, 'dana', 'wrong'), 0);
    } finally {
      mosquitto.kill();
    }
  });
});

describe('logins against the password file', () => {
  test('right password connects, wrong or unknown user or no password is refused with "bad user name or password", no username is anonymous', async () => {
    const file = join(dir, 'broker.passwd');
    await run('mosquitto_passwd', ['-c', '-b', file, 'alice', 'pw-a']);
    const b = await startTestBroker((c) => {
      c.passwordFile = file;
      c.allowAnonymous = false;
    });
    try {
      assert.equal(await connackCode(b.url, 'alice', 'pw-a'), 0);
      assert.equal(await connackCode(b.url, 'alice', 'pw-b'), 4);
      assert.equal(await connackCode(b.url, 'mallory', 'pw-a'), 4);
      assert.equal(await connackCode(b.url, 'alice'), 4);
      assert.equal(await connackCode(b.url), 5);
    } finally {
      await b.close();
    }
  });

  test('after five failed logins from one address even the right password is refused (not authorized) until the window passes', async () => {
    const file = join(dir, 'limit.passwd');
    await run('mosquitto_passwd', ['-c', '-b', file, 'alice', 'pw-a']);
    const b = await startTestBroker((c) => (c.passwordFile = file));
    try {
      for (let i = 0; i < 5; i++) assert.equal(await connackCode(b.url, 'alice', `guess-${i}`), 4);
      assert.equal(await connackCode(b.url, 'alice', 'pw-a'), 5);
    } finally {
      await b.close();
    }
  });

  test('the limiter forgets an address a window after its last failure, and a success clears it', () => {
    let now = 0;
    const limiter = new LoginLimiter({ maxFailures: 2, windowMs: 1000, maxAddresses: 2 }, () => now);
    limiter.failed('a');
    limiter.failed('a');
    assert.equal(limiter.allows('a'), false);
    now = 999;
    assert.equal(limiter.allows('a'), false);
    now = 2000;
    assert.equal(limiter.allows('a'), true);
    limiter.failed('b');
    limiter.succeeded('b');
    limiter.failed('b');
    assert.equal(limiter.allows('b'), true);
    // bounded: a third address pushes out the oldest
    limiter.failed('c');
    limiter.failed('c');
    limiter.failed('d');
    limiter.failed('d');
    assert.equal(limiter.allows('d'), false);
    assert.equal(limiter.refused, 3);
  });

  test('an ACL rule\'s user matches the username the password file authenticated', async () => {
    const file = join(dir, 'acl.passwd');
    await run('mosquitto_passwd', ['-c', '-b', file, 'alice', 'pw-a']);
    await run('mosquitto_passwd', ['-b', file, 'bob', 'pw-b']);
    const b = await startTestBroker((c) => {
      c.passwordFile = file;
      c.acl = [
        { permission: 'allow', action: 'publish', topic: 'alice/#', user: 'alice' },
        { permission: 'deny', action: 'publish', topic: '#' },
      ];
    });
    try {
      const alice = await b.mqtt({ username: 'alice', password: 'pw-a', protocolVersion: 5 });
      const bob = await b.mqtt({ username: 'bob', password: 'pw-b', protocolVersion: 5 });
      const reason = (p: unknown): number => (p as { reasonCode?: number } | undefined)?.reasonCode ?? 0;
      assert.equal(reason(await alice.publishAsync('alice/x', 'hi', { qos: 1 })), 0);
      await assert.rejects(bob.publishAsync('alice/x', 'hi', { qos: 1 }), /Not authorized/);
    } finally {
      await b.close();
    }
  });
});

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
