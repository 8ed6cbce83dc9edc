/** Config validation: every error names the offending key; valid input overlays the defaults. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, defaultConfig, parseConfig } from '../src/config.js';
import { configFromFlags } from '../src/cli/broker-command.js';

const invalid: [string, unknown, string][] = [
  ['an unknown top-level key', { prot: 1883 }, 'prot'],
  ['a port that is not a number', { port: '1883' }, 'port'],
  ['a port out of range', { port: 70000 }, 'port'],
  ['a limit below its minimum', { limits: { maxPacketSize: 10 } }, 'limits.maxPacketSize'],
  ['an unknown limit', { limits: { maxPackets: 1 } }, 'limits.maxPackets'],
  ['a fractional limit', { limits: { maxConnections: 1.5 } }, 'limits.maxConnections'],
  ['a negative queue byte limit', { limits: { maxQueuedBytes: -1 } }, 'limits.maxQueuedBytes'],
  ['a queue byte limit given as text', { limits: { maxQueuedBytes: '16MiB' } }, 'limits.maxQueuedBytes'],
  ['a negative queue message limit', { limits: { maxQueuedMessages: -5 } }, 'limits.maxQueuedMessages'],
  ['an unknown clientCerts mode', { tls: { port: 8883, clientCerts: 'sometimes' } }, 'tls.clientCerts'],
  ['a TLS cert without its key', { tls: { port: 8883, cert: 'server.crt' } }, 'tls.cert'],
  ['an invalid ACL topic filter', { acl: [{ permission: 'allow', topic: 'a/#/b' }] }, 'acl[0].topic'],
  ['an unknown ACL permission', { acl: [{ permission: 'allow', topic: 'a' }, { permission: 'maybe', topic: 'b' }] }, 'acl[1].permission'],
  ['a subscribeDeniedReason other than 0x80/0x87', { subscribeDeniedReason: 0x8f }, 'subscribeDeniedReason'],
  ['an unknown log level', { logLevel: 'loud' }, 'logLevel'],
  ['a WebSocket path that is empty', { websocket: { port: 0, path: '' } }, 'websocket.path'],
  ['an unknown trusted-component scheduling policy', { tee: { scheduling: 'fifo' } }, 'tee.scheduling'],
  ['a connect timeout of 0', { limits: { connectTimeout: 0 } }, 'limits.connectTimeout'],
  ['a negative connection rate', { limits: { connectionRate: -1 } }, 'limits.connectionRate'],
  ['a publish rate given as text', { limits: { publishRate: '10/s' } }, 'limits.publishRate'],
  ['a fractional publish byte rate', { limits: { publishByteRate: 0.5 } }, 'limits.publishByteRate'],
  ['a flapping window of 0 seconds', { limits: { flapConnects: 5, flapWindow: 0 } }, 'limits.flapWindow'],
];

for (const [what, raw, key] of invalid) {
  test(`parseConfig rejects ${what}, naming ${key}`, () => {
    assert.throws(
      () => parseConfig(raw),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.equal(err.key, key);
        assert.ok(err.message.includes(key), err.message);
        return true;
      },
    );
  });
}

test('the abuse limits are off by default, the connect timeout is 10 s, and each is taken from limits', () => {
  const d = defaultConfig().limits;
  assert.deepEqual(
    [d.connectTimeout, d.connectionRate, d.maxConnectionsPerAddress, d.publishRate, d.publishByteRate, d.flapConnects],
    [10, 0, 0, 0, 0, 0],
  );
  const raw = { connectTimeout: 3, connectionRate: 50, maxConnectionsPerAddress: 4, publishRate: 100, publishByteRate: 65536, flapConnects: 5, flapWindow: 30, flapBan: 600 };
  const cfg = parseConfig({ limits: raw });
  for (const [k, v] of Object.entries(raw)) assert.equal(cfg.limits[k as keyof typeof raw], v, k);
});

test('parseConfig rejects a document that is not an object', () => {
  assert.throws(() => parseConfig([1, 2]), ConfigError);
});

test('parseConfig overlays the given keys on the defaults and keeps the rest', () => {
  const cfg = parseConfig({ port: 0, limits: { maxConnections: 5 }, tls: { port: 8884, clientCerts: 'required' }, websocket: { port: 0 } });
  const defaults = defaultConfig();
  assert.equal(cfg.port, 0);
  assert.equal(cfg.limits.maxConnections, 5);
  assert.equal(cfg.limits.maxPacketSize, defaults.limits.maxPacketSize);
  assert.deepEqual(cfg.tls, { port: 8884, clientCerts: 'required', identityFrom: 'cn' });
  assert.deepEqual(cfg.websocket, { port: 0, path: '/mqtt' });
  assert.equal(cfg.allowAnonymous, defaults.allowAnonymous);
  // the defaults object itself is not modified
  assert.equal(defaultConfig().limits.maxConnections, defaults.limits.maxConnections);
});

test('parseConfig takes maxQueuedMessages and maxQueuedBytes, 0 meaning no limit, and the defaults bound both', () => {
  const cfg = parseConfig({ limits: { maxQueuedMessages: 0, maxQueuedBytes: 1024 } });
  assert.equal(cfg.limits.maxQueuedMessages, 0);
  assert.equal(cfg.limits.maxQueuedBytes, 1024);
  const defaults = defaultConfig().limits;
  assert.ok(defaults.maxQueuedMessages > 0 && defaults.maxQueuedBytes > 0, 'by default a stuck client cannot queue without bound');
});

test('the trusted process keeps the default scheduling unless the config or --tee-scheduling asks for batch', () => {
  assert.equal(defaultConfig().tee?.scheduling, 'default');
  assert.equal(parseConfig({ tee: { scheduling: 'batch' } }).tee?.scheduling, 'batch');
  assert.equal(parseConfig({ tee: { cacheSize: 10 } }).tee?.scheduling, 'default');
  assert.equal(configFromFlags({ protect: [], teeScheduling: 'batch' }).tee?.scheduling, 'batch');
  assert.throws(() => configFromFlags({ protect: [], teeScheduling: 'idle' }), (err: unknown) => err instanceof ConfigError && err.key === '--tee-scheduling' && /batch or default/.test(err.message));
});

test('the operator public key comes from tee.operatorPublicKey or --operator-public-key as 64 hex digits; a bad one names the key', () => {
  const hex = 'AB'.repeat(32);
  assert.equal(defaultConfig().tee?.operatorPublicKey, null, 'none configured: the quick start creates a development key');
  assert.equal(parseConfig({ tee: { operatorPublicKey: hex } }).tee?.operatorPublicKey, hex.toLowerCase());
  assert.equal(configFromFlags({ protect: [], operatorPublicKey: hex }).tee?.operatorPublicKey, hex.toLowerCase());
  for (const bad of ['ab', 'zz'.repeat(32), 42]) {
    assert.throws(() => parseConfig({ tee: { operatorPublicKey: bad } }), (err: unknown) => err instanceof ConfigError && err.key === 'tee.operatorPublicKey' && /64 hex digits/.test(err.message), String(bad));
  }
  assert.throws(() => configFromFlags({ protect: [], operatorPublicKey: 'ab' }), (err: unknown) => err instanceof ConfigError && err.key === '--operator-public-key');
});

test('user, tee.user and tee.socket default to null and come from the config or --user, --tee-user, --tee-socket', () => {
  const d = defaultConfig();
  assert.deepEqual([d.user, d.tee?.user, d.tee?.socket], [null, null, null]);
  const c = parseConfig({ user: 'mqtt', tee: { user: 'mqtt-tee' } });
  assert.deepEqual([c.user, c.tee?.user, c.tee?.socket], ['mqtt', 'mqtt-tee', null]);
  assert.equal(parseConfig({ tee: { socket: '/run/mqt-tz-tee/tee.sock' } }).tee?.socket, '/run/mqt-tz-tee/tee.sock');
  const f = configFromFlags({ protect: [], user: 'mqtt', teeUser: 'mqtt-tee' });
  assert.deepEqual([f.user, f.tee?.user], ['mqtt', 'mqtt-tee']);
  assert.equal(configFromFlags({ protect: [], teeSocket: '/run/t.sock' }).tee?.socket, '/run/t.sock');
});

test('isolation settings that contradict each other, or bad values, name their key', () => {
  const cases: [unknown, string][] = [
    [{ user: '' }, 'user'],
    [{ user: 7 }, 'user'],
    [{ tee: { user: 5 } }, 'tee.user'],
    [{ tee: { socket: '' } }, 'tee.socket'],
    [{ user: 'mqtt', tee: { user: 'mqtt' } }, 'tee.user'],
    [{ tee: { user: 'mqtt-tee', backend: 'inline' } }, 'tee.user'],
    [{ tee: { socket: '/run/t.sock', backend: 'inline' } }, 'tee.socket'],
    [{ tee: { socket: '/run/t.sock', user: 'mqtt-tee' } }, 'tee.user'],
  ];
  for (const [raw, key] of cases) assert.throws(() => parseConfig(raw), (err: unknown) => err instanceof ConfigError && err.key === key, JSON.stringify(raw));
  assert.throws(() => configFromFlags({ protect: [], user: 'mqtt', teeUser: 'mqtt' }), (err: unknown) => err instanceof ConfigError && err.key === 'tee.user');
});
