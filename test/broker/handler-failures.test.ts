/**
 * Work that runs outside a packet handler (a closed stream's will, an asynchronous CONNECT) and
 * fails on a bug: counted, logged, that connection alone is affected, and the process goes on.
 * The failures are provoked through the broker's extension points (a delivery stage, an auth hook),
 * each in a broker of its own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codes, startTestBroker, unique, waitUntil, type TestBroker } from '../helpers/broker.js';
import type { AuthHooks } from '../../src/auth/hooks.js';
import { AclAuth } from '../../src/auth/acl.js';
import type { DeliveryStage } from '../../src/broker/broker.js';

/** A round trip through the broker still works. */
async function stillServes(tb: TestBroker): Promise<void> {
  const topic = unique('alive');
  const sub = await tb.raw(5);
  await sub.connect({ clientId: unique('alive-sub') });
  await sub.subscribe(topic, 0);
  const pub = await tb.raw(5);
  await pub.connect({ clientId: unique('alive-pub') });
  pub.send({ cmd: 'publish', topic, payload: Buffer.from('ok'), qos: 0, dup: false, retain: false });
  assert.equal((await sub.expect('publish')).payload.toString(), 'ok');
}

test('a will whose routing fails when its connection drops is counted and logged; the session is ended all the same and the broker serves on', async () => {
  const topic = unique('will/failing');
  const failing: DeliveryStage = {
    applies: (t) => t === topic,
    transform: () => {
      throw new Error('stage bug');
    },
  };
  const tb = await startTestBroker(undefined, { extension: { stage: failing } });
  try {
    const watcher = await tb.raw(5);
    await watcher.connect({ clientId: unique('will-watch') });
    await watcher.subscribe(topic, 0);
    const dying = await tb.raw(5);
    const clientId = unique('will-owner');
    await dying.connect({ clientId, will: { topic, payload: Buffer.from('gone'), qos: 0, retain: false } });
    const before = tb.broker.counters.handlerFailures;
    dying.destroy(); // the will is routed from the stream's 'close' event
    await waitUntil(() => tb.broker.counters.handlerFailures === before + 1, 'the failure to be counted');
    assert.equal(tb.broker.sessions.has(clientId), false, 'the session ended before the will was routed');
    assert.equal(tb.broker.clients.has(clientId), false);
    await stillServes(tb);
  } finally {
    await tb.close();
  }
});

test('a CONNECT whose asynchronous completion fails closes that connection (v5: CONNACK 0x83) and nothing else', async () => {
  const allowAll = new AclAuth(true, []);
  let failing = true;
  const auth: AuthHooks = {
    // a result that breaks the broker's code after the hook has answered (the first CONNECT only)
    authenticate: async (credentials) => {
      if (!failing) return allowAll.authenticate(credentials);
      failing = false;
      return {
        ok: true,
        get identity(): string {
          throw new Error('bug after authentication');
        },
      } as never;
    },
    authorizePublish: () => true,
    authorizeSubscribe: () => true,
  };
  const tb = await startTestBroker(undefined, { auth });
  try {
    const before = tb.broker.counters.handlerFailures;
    const raw = await tb.raw(5);
    raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: unique('async-fail'), clean: true, keepalive: 0 });
    assert.deepEqual(codes(await raw.closedByBroker()), [['connack', 0x83]]);
    assert.equal(tb.broker.counters.handlerFailures, before + 1);
    await stillServes(tb);
  } finally {
    await tb.close();
  }
});
