/** The operations keys of the config and their flags: passwordFile, http, sysInterval. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, defaultConfig, parseConfig } from '../src/config.js';
import { configFromFlags } from '../src/cli/broker-command.js';

test('defaults: no password file, no HTTP listener, $SYS every 10 s; http binds 127.0.0.1 on 8081 unless told otherwise', () => {
  const d = defaultConfig();
  assert.deepEqual([d.passwordFile, d.http, d.sysInterval], [null, null, 10]);
  assert.deepEqual(parseConfig({ http: {} }).http, { port: 8081, host: '127.0.0.1', admins: [] });
  assert.deepEqual(parseConfig({ http: { port: 9100, host: '0.0.0.0', admins: ['ops'] }, passwordFile: 'users.passwd', sysInterval: 0 }), {
    ...d, http: { port: 9100, host: '0.0.0.0', admins: ['ops'] }, passwordFile: 'users.passwd', sysInterval: 0,
  });
});

test('bad operations values name their key', () => {
  const cases: [unknown, string][] = [
    [{ passwordFile: '' }, 'passwordFile'],
    [{ passwordFile: 3 }, 'passwordFile'],
    [{ http: { port: -1 } }, 'http.port'],
    [{ http: { admins: 'ops' } }, 'http.admins'],
    [{ http: { admins: [''] } }, 'http.admins[0]'],
    [{ http: { path: '/' } }, 'http.path'],
    [{ http: 8081 }, 'http'],
    [{ sysInterval: -1 }, 'sysInterval'],
    [{ sysInterval: 1.5 }, 'sysInterval'],
  ];
  for (const [raw, key] of cases) assert.throws(() => parseConfig(raw), (err: unknown) => err instanceof ConfigError && err.key === key, JSON.stringify(raw));
});

test('--password-file and --http-port set the config; --http-port keeps a configured host and admins', () => {
  const c = configFromFlags({ protect: [], passwordFile: 'users.passwd', httpPort: '9100' });
  assert.equal(c.passwordFile, 'users.passwd');
  assert.deepEqual(c.http, { host: '127.0.0.1', admins: [], port: 9100 });
  assert.throws(() => configFromFlags({ protect: [], httpPort: 'x' }), (err: unknown) => err instanceof ConfigError && err.key === '--http-port');
});
