/** The `persistence` config key: on by default, false turns it off, a bad value names the key. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, defaultConfig, parseConfig } from '../src/config.js';

test('persistence is on with sync "normal" by default; false turns it off; {"sync": "full"} asks for power-loss safety', () => {
  assert.deepEqual(defaultConfig().persistence, { sync: 'normal' });
  assert.equal(parseConfig({ persistence: false }).persistence, null);
  assert.deepEqual(parseConfig({ persistence: { sync: 'full' } }).persistence, { sync: 'full' });
  assert.deepEqual(parseConfig({ persistence: {} }).persistence, { sync: 'normal' });
});

test('a bad persistence value is refused with the key named', () => {
  assert.throws(() => parseConfig({ persistence: { sync: 'off' } }), (e: unknown) => e instanceof ConfigError && e.message.includes('persistence.sync'));
  assert.throws(() => parseConfig({ persistence: { path: 'x' } }), (e: unknown) => e instanceof ConfigError && e.message.includes('persistence.path'));
  assert.throws(() => parseConfig({ persistence: 'yes' }), (e: unknown) => e instanceof ConfigError && e.message.startsWith('config: persistence:'));
});
