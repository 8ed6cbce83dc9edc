// Password files: mosquitto_passwd's own files read unchanged, ours read by mosquitto itself,
// logins over real sockets (right, wrong, unknown, rate-limited), the ACL's `user` on the
// authenticated username (`mqt-tz passwd`: test/cli/passwd-command.test.ts).
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
import { connectMqtt, startTestBroker, WAIT_MS } from '../helpers/broker.js';

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
