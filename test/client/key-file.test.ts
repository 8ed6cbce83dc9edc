import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { checkKeyFileWritable, fileKeyStore, KeyFileError, readKeyFile, writeKeyFile } from '../../src/client/index.js';
import { memoryKeyStore, type StoredKey } from '../../src/client/key-store.js';
import { toBase64Url } from '../../src/envelope/bytes.js';

const FP = 'ab'.repeat(32);

function withDir(work: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-keyfile-'));
    try {
      await work(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

const sample = (fill: number): StoredKey => ({ identity: 'alice', key: new Uint8Array(32).fill(fill), teeFingerprint: FP });

test('a key file is written 0600 without temp files left behind, read back, and never silently replaced', withDir(async (dir) => {
  const path = join(dir, 'alice.key');
  assert.equal(readKeyFile(path), undefined);
  checkKeyFileWritable(path);
  writeKeyFile(path, sample(1));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['alice.key']);
  assert.deepEqual(readKeyFile(path), sample(1));
  assert.throws(() => writeKeyFile(path, sample(2)), /already exists/);
  assert.throws(() => checkKeyFileWritable(path), /already exists/);
  assert.deepEqual(readKeyFile(path), sample(1), 'the enrolled key survives');

  const store = fileKeyStore(path);
  await store.save(sample(3), { replace: true });
  assert.deepEqual(await store.load(), sample(3));
  assert.equal(statSync(path).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['alice.key']);
}));

test('a key file readable by others is refused, and no read error quotes the key', withDir((dir) => {
  const path = join(dir, 'k.key');
  writeKeyFile(path, sample(9));
  chmodSync(path, 0o644);
  assert.throws(() => readKeyFile(path), /readable by others.*chmod 600/);

  const secret = toBase64Url(new Uint8Array(32).fill(0x5a));
  for (const text of [`{"key":"${secret}" oops`, JSON.stringify({ format: 'mqt-tz client key', version: 1, identity: 'a', teeFingerprint: FP, key: `${secret}xx` })]) {
    writeFileSync(path, text, { mode: 0o600 });
    chmodSync(path, 0o600);
    assert.throws(() => readKeyFile(path), (err: unknown) => err instanceof KeyFileError && !err.message.includes(secret.slice(0, 12)));
  }
}));

test('the memory key store returns what was saved', async () => {
  const store = memoryKeyStore();
  assert.equal(await store.load(), undefined);
  await store.save(sample(4));
  assert.deepEqual(await store.load(), sample(4));
});

test('the replay state is kept next to the key file (0600, no temp files left), and a damaged one is refused naming its path', withDir(async (dir) => {
  const path = join(dir, 'bob.key');
  const store = fileKeyStore(path);
  assert.equal(await store.loadReplayState!(), undefined);
  const text = '{"format":"mqt-tz replay state","version":1,"size":1024,"senders":[{"sender":"alice","max":5,"seen":""}]}';
  await store.saveReplayState!(text);
  await store.saveReplayState!(text);
  assert.equal(await store.loadReplayState!(), text);
  assert.equal(statSync(`${path}.replay`).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['bob.key.replay']);
  writeFileSync(`${path}.replay`, '{"format":"something else"}');
  await assert.rejects(store.loadReplayState!(), (err: unknown) => err instanceof KeyFileError && err.message.startsWith(`${path}.replay is not a valid mqt-tz replay state`));

  rmSync(`${path}.replay`);
  mkdirSync(`${path}.replay`); // a write that cannot succeed (root ignores permissions)
  await assert.rejects(store.saveReplayState!(text), (err: unknown) => err instanceof KeyFileError && err.message === `cannot write replay state ${path}.replay: EISDIR`);
  assert.deepEqual(readdirSync(dir), ['bob.key.replay'], 'no temp file left behind');
}));

test('a pending key change is kept next to the key file (0600), removed when done, and a damaged one is refused without quoting the key', withDir(async (dir) => {
  const path = join(dir, 'alice.key');
  const store = fileKeyStore(path);
  assert.equal(await store.loadPending(), undefined);
  const change = { type: 'rotate' as const, ...sample(7), request: new Uint8Array(80).fill(3) };
  await store.savePending(change);
  assert.equal(statSync(`${path}.pending`).mode & 0o777, 0o600);
  assert.deepEqual(readdirSync(dir), ['alice.key.pending']);
  assert.deepEqual(await store.loadPending(), change);
  await store.savePending(undefined);
  await store.savePending(undefined);
  assert.deepEqual(readdirSync(dir), []);

  const secret = toBase64Url(new Uint8Array(32).fill(0x5a));
  writeFileSync(`${path}.pending`, JSON.stringify({ format: 'mqt-tz pending key change', version: 1, type: 'enrol', identity: 'a', teeFingerprint: FP, key: secret, request: '' }), { mode: 0o600 });
  await assert.rejects(store.loadPending(), (err: unknown) => err instanceof KeyFileError && err.message === `${path}.pending holds no request`);
  chmodSync(`${path}.pending`, 0o644);
  await assert.rejects(store.loadPending(), /readable by others/);
}));
