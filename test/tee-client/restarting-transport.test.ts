// A trusted process that goes away is started again and the broker goes on: protected messages are
// refused while it is gone, never delivered unprotected, and flow again once it is back; a
// component with other device keys is refused.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { TeeError } from '../../src/envelope/errors.js';
import { openTrustedComponent, spawnTrustedProcess, type BlobStore, type Transport } from '../../src/tee-client/host.js';
import { CannotRestart, RestartingTransport, type RestartEvents, type TrustedSession } from '../../src/tee-client/restarting-transport.js';
import { startProtectedBroker, Events } from '../helpers/protected-broker.js';
import { WAIT_MS, withTimeout } from '../helpers/broker.js';

/** A session whose process "exits" when `end` is called; calls answer their command number. */
function fakeSession(identity: string): TrustedSession & { end(what: string): void; closed: boolean } {
  let end!: (what: string) => void;
  const gone = new Promise<string>((resolve) => (end = resolve));
  const s = {
    identity,
    gone,
    end,
    closed: false,
    transport: {
      pid: 1000 + identity.length,
      call: async (command: number) => Uint8Array.of(command),
      close: async () => void (s.closed = true),
    } satisfies Transport,
  };
  return s;
}

function recorder(): RestartEvents & { log: string[]; next(kind: string): Promise<void> } {
  const log: string[] = [];
  const waiting: { kind: string; resolve: () => void }[] = [];
  const push = (entry: string): void => {
    log.push(entry);
    for (const w of waiting.filter((x) => entry.startsWith(x.kind))) w.resolve();
  };
  return {
    log,
    lost: (what) => push(`lost ${what}`),
    restored: (pid, attempts) => push(`restored ${pid} ${attempts}`),
    failed: (err, attempt) => push(`failed ${attempt} ${err.message}`),
    gaveUp: (reason) => push(`gaveUp ${reason}`),
    next: (kind) => withTimeout(new Promise<void>((resolve) => waiting.push({ kind, resolve })), WAIT_MS, `event ${kind}`),
  };
}

describe('RestartingTransport', () => {
  test('refuses calls while the process is gone, retries failed starts with backoff, and serves through the new process', async () => {
    const first = fakeSession('device');
    const second = fakeSession('device');
    let starts = 0;
    const events = recorder();
    const t = new RestartingTransport(first, async () => {
      starts++;
      if (starts < 3) throw new Error(`not yet (${starts})`);
      return second;
    }, events);
    assert.deepEqual(await t.call(7, new Uint8Array(0)), Uint8Array.of(7));
    const restored = events.next('restored');
    first.end('process exited (SIGKILL)');
    await events.next('lost');
    await assert.rejects(t.call(7, new Uint8Array(0)), (err: TeeError) => err instanceof TeeError && err.code === 'internal' && /SIGKILL/.test(err.message));
    assert.equal(t.pid, undefined, 'no process while it is gone');
    await restored;
    assert.deepEqual(events.log, ['lost process exited (SIGKILL)', 'failed 1 not yet (1)', 'failed 2 not yet (2)', 'restored 1006 3']);
    assert.deepEqual(await t.call(9, new Uint8Array(0)), Uint8Array.of(9));
    assert.equal(t.restarts, 1);
    assert.equal(t.pid, 1006);
    await t.close();
    assert.equal(second.closed, true);
  });

  test('a component with other device keys is closed and refused, and restarts stop', async () => {
    const first = fakeSession('device');
    const impostor = fakeSession('other device');
    const events = recorder();
    let starts = 0;
    const t = new RestartingTransport(first, async () => (starts++, impostor), events);
    first.end('service at /run/tee.sock closed the connection');
    await events.next('gaveUp');
    assert.equal(impostor.closed, true);
    assert.equal(starts, 1);
    await assert.rejects(t.call(7, new Uint8Array(0)), (err: TeeError) => err.code === 'internal' && /other device keys/.test(err.message));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(starts, 1, 'no further attempt');
    await t.close();
  });

  test('a start that cannot succeed (the broker gave up root) stops the restarts at once', async () => {
    const first = fakeSession('device');
    const events = recorder();
    let starts = 0;
    const t = new RestartingTransport(first, async () => {
      starts++;
      throw new CannotRestart('cannot start it as uid 999');
    }, events);
    first.end('process exited (1)');
    await events.next('gaveUp');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual([starts, events.log], [1, ['lost process exited (1)', 'gaveUp cannot start it as uid 999']]);
    await assert.rejects(t.call(7, new Uint8Array(0)), /uid 999/);
    await t.close();
  });
});

describe('the process backend, for real', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

  test('a broker whose trusted process is killed starts it again, with the same keys, and delivers protected messages after', async () => {
    const b = await startProtectedBroker('process');
    try {
      const [alice, bob] = await Promise.all([b.enrolled('alice'), b.enrolled('bob')]);
      const events = new Events(bob);
      await bob.subscribeAsync('secure/ward', { qos: 1 });
      await alice.publishAsync('secure/ward', 'before', { qos: 1 });
      const before = await events.next('the message before the kill');
      assert.deepEqual(before.kind === 'message' ? [before.text, before.sender] : before, ['before', 'alice']);
      const oldPid = b.tee.pid!;
      process.kill(oldPid, 'SIGKILL');
      await withTimeout((async () => {
        while (b.tee.restarts < 1) await new Promise((r) => setTimeout(r, 20));
      })(), WAIT_MS, 'the trusted process to be started again');
      assert.notEqual(b.tee.pid, undefined);
      assert.notEqual(b.tee.pid, oldPid);
      assert.equal((await b.tee.info()).fingerprint, b.fingerprint, 'the same sealed identity');
      // the topic's group died with the old process: the broker forms it again on the first message
      await alice.publishAsync('secure/ward', 'after', { qos: 1 });
      const afterKill = await events.next('the message after the restart');
      assert.deepEqual(afterKill.kind === 'message' ? [afterKill.text, afterKill.sender, afterKill.protected] : afterKill, ['after', 'alice', true]);
    } finally {
      await b.close();
    }
  });

  test('a component provisioned anew behind the broker\'s back (state and store replaced) is refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-restart-'));
    dirs.push(dir);
    let blobs = new Map<string, Uint8Array>();
    const store: BlobStore = { get: (n) => blobs.get(n), put: (n, b) => void blobs.set(n, b), delete: (n) => void blobs.delete(n) };
    let stateDir = join(dir, 'state-1');
    const operatorPublicKey = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).subarray(-32);
    const warnings: string[] = [];
    let gaveUp!: () => void;
    const stopped = new Promise<void>((resolve) => (gaveUp = resolve));
    const tee = await openTrustedComponent({
      backend: 'process', store, stateDir: join(dir, 'ignored'), operatorPublicKey,
      channel: () => spawnTrustedProcess(['--state-dir', stateDir]),
      onWarning: (m) => warnings.push(m),
      onRestart: { lost: () => undefined, restored: () => assert.fail('restored a different device'), failed: () => undefined, gaveUp: () => gaveUp() },
    });
    try {
      const first = await tee.info();
      stateDir = join(dir, `state-${randomBytes(4).toString('hex')}`);
      blobs = new Map();
      process.kill(tee.pid!, 'SIGKILL');
      await withTimeout(stopped, WAIT_MS, 'restarts to stop');
      await assert.rejects(tee.info(), (err: TeeError) => err.code === 'internal' && /other device keys/.test(err.message));
      assert.equal(tee.restarts, 0);
      assert.equal(first.x25519.length, 64);
    } finally {
      await tee.close();
    }
  });
});

