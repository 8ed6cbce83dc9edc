// Dropping root (issue 25): `mqt-tz broker --user B --tee-user T` started as root, a real broker
// process through the CLI. The broker drops to B after binding; its trusted child drops itself to T
// before reading any state. Checked as B, by processes spawned with B's uid and gid: the trusted
// process's memory and every file of the trusted state stay closed, while a protected exchange
// through the broker still works. Needs root (as in CI); skipped otherwise.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { exchange } from '../helpers/protected-broker.js';
import { startCliBroker, type CliBroker } from '../helpers/cli-broker.js';
import { BROKER_USER, ensureSystemUser, openAs, RUNNING_AS_ROOT, TEE_USER, uidOf, type Ids } from '../helpers/os-users.js';

const SKIP = RUNNING_AS_ROOT ? false : 'needs root: it creates two system users and starts the broker as root so that it drops to them';

let brokerIds: Ids;
let teeIds: Ids;
let dataDir: string;
let b: CliBroker;
let teePid: number;
before(async () => {
  if (!RUNNING_AS_ROOT) return;
  brokerIds = ensureSystemUser(BROKER_USER);
  teeIds = ensureSystemUser(TEE_USER);
  dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-privileges-'));
  b = await startCliBroker({ dataDir, args: ['--user', BROKER_USER, '--tee-user', TEE_USER] });
  const tee = b.children().filter((c) => /\btee\/main\.js\b/.test(c.command));
  assert.equal(tee.length, 1, `one trusted child: ${JSON.stringify(b.children())}`);
  teePid = tee[0]!.pid;
});
after(async () => {
  await b?.close();
  if (dataDir !== undefined) rmSync(dataDir, { recursive: true, force: true });
});

test('started as root, the broker runs as its user and the trusted child as the other one', { skip: SKIP }, () => {
  assert.equal(uidOf(b.pid), brokerIds.uid, 'the broker dropped to --user');
  assert.equal(uidOf(teePid), teeIds.uid, 'the trusted child dropped to --tee-user');
  const st = statSync(join(dataDir, 'tee'));
  assert.deepEqual([st.uid, st.mode & 0o777], [teeIds.uid, 0o700], 'the trusted state directory is the tee user\'s, mode 0700');
  assert.equal(statSync(join(dataDir, 'mqt-tz.db')).uid, brokerIds.uid, 'the broker\'s own files are its user\'s');
});

test('the broker\'s user can open neither /proc/TEEPID/mem nor any file of the trusted state, nor list it', { skip: SKIP }, () => {
  const stateDir = join(dataDir, 'tee');
  const stateFiles = readdirSync(stateDir).map((f) => join(stateDir, f));
  assert.deepEqual(readdirSync(stateDir).sort(), ['counter', 'device.secret']);
  const mem = `/proc/${teePid}/mem`;
  const asBroker = openAs(brokerIds, [mem, stateDir, ...stateFiles, join(dataDir, 'mqt-tz.db')]);
  assert.deepEqual(asBroker, { [mem]: 'EACCES', [stateDir]: 'EACCES', ...Object.fromEntries(stateFiles.map((f) => [f, 'EACCES'])), [join(dataDir, 'mqt-tz.db')]: 'ok' });
  // Controls: the probe does open what its user may: the tee user reads its state...
  const asTee = openAs(teeIds, [...stateFiles, mem]);
  assert.deepEqual(stateFiles.map((f) => asTee[f]), stateFiles.map(() => 'ok'));
  // ...but not its own trusted process's memory: it changed uid itself, so the kernel marked it
  // non-dumpable, and its /proc files belong to root.
  assert.equal(asTee[mem], 'EACCES');
  assert.equal(statSync(mem).uid, 0, 'non-dumpable: /proc/TEEPID/mem is root\'s');
});

test('a protected exchange (enrol, publish, receive) works with both users dropped', { skip: SKIP }, async () => {
  const topic = `secure/ward-${randomBytes(4).toString('hex')}`;
  const e = await exchange(b, 'alice', 'bob', topic, 'heart rate 61');
  assert.deepEqual(e.kind === 'message' ? [e.topic, e.text, e.sender] : e, [topic, 'heart rate 61', 'alice']);
  assert.equal(execFileSync('stat', ['-c', '%U', `/proc/${b.pid}`], { encoding: 'utf8' }).trim(), BROKER_USER, 'still the broker\'s user after the exchange');
});

test('started as root, an unknown user stops the broker with an error that names the setting', { skip: SKIP }, async () => {
  const { startBroker } = await import('../../src/server.js');
  const { defaultConfig } = await import('../../src/config.js');
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-privileges-'));
  try {
    for (const [tune, key] of [[{ user: 'mqttz-no-such-user' }, 'user'], [{ tee: { ...defaultConfig().tee!, user: 'mqttz-no-such-user' } }, 'tee.user']] as const) {
      const config = { ...defaultConfig(), host: '127.0.0.1', port: 0, dataDir: dir, logLevel: 'silent' as const, ...tune };
      await assert.rejects(startBroker(config), (err: Error) => err.message.startsWith(`config: ${key}: no such user "mqttz-no-such-user"`));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
