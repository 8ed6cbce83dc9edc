/** SUBSCRIBE with an asynchronous authorization hook that fails: that connection closes, the broker lives on. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AuthHooks } from '../../src/auth/hooks.js';
import { defaultConfig } from '../../src/config.js';
import { startBroker, type RunningBroker } from '../../src/server.js';
import { codes, elapse, RawClient } from '../helpers/broker.js';

/** Subscriptions to `down/#` are checked by a service that is down: the hook's promise rejects. */
const hooks: AuthHooks = {
  authenticate: () => ({ ok: true }),
  authorizePublish: () => true,
  authorizeSubscribe: (_client, filter) => (filter === 'down/#' ? Promise.reject(new Error('authorization service down')) : true),
};

describe('SUBSCRIBE with a failing asynchronous authorization hook', () => {
  let running: RunningBroker;
  let dataDir: string;
  let port: number;
  const unhandled: unknown[] = [];
  const record = (reason: unknown): void => void unhandled.push(reason);

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-subscribe-hooks-'));
    running = await startBroker({ ...defaultConfig(), host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent', tee: null }, { auth: hooks });
    port = running.port('tcp')!;
    process.on('unhandledRejection', record);
  });
  after(async () => {
    process.off('unhandledRejection', record);
    await running.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  test('a later filter that breaks the protocol closes the connection (0x82) and leaves no rejection unhandled', async () => {
    // found by the fuzzer: the hook was asked for the first filter, the second threw, and the
    // hook's rejection, which nothing awaited any more, ended the broker process
    const c = await RawClient.open(port, 5);
    await c.connect();
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'down/#', qos: 1 }, { topic: '$share/g/a', qos: 1, nl: true }] });
    assert.deepEqual(codes(await c.closedByBroker()), [['disconnect', 0x82]]);
    await elapse(50); // a rejection is reported as unhandled after the microtask queue drains
    assert.deepEqual(unhandled, []);
  });

  test('the hook failing alone closes that connection (0x83) and the broker serves the next one', async () => {
    const c = await RawClient.open(port, 5);
    await c.connect();
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'down/#', qos: 1 }] });
    assert.deepEqual(codes(await c.closedByBroker()), [['disconnect', 0x83]]);
    const next = await RawClient.open(port, 5);
    assert.equal((await next.connect()).reasonCode, 0);
    assert.deepEqual((await next.subscribe('up/#', 1)).granted, [1]);
    next.destroy();
    assert.deepEqual(unhandled, []);
  });
});
