/** MemoryRetainedStore: one message per topic, expired ones left out when read, `$` topics counted apart. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeMessage } from '../../src/broker/message.js';
import { MemoryRetainedStore } from '../../src/store/retained.js';

const message = (topic: string, text: string, expiresAt = 0): ReturnType<typeof makeMessage> => ({ ...makeMessage(topic, Buffer.from(text), 1, true, undefined, ''), expiresAt });

test('size and systemSize follow sets, replacements, clears and expiry; only `$SYS` topics count as system', () => {
  const s = new MemoryRetainedStore();
  s.set('$SYS/broker/uptime', message('$SYS/broker/uptime', '1'));
  s.set('$SYS/broker/uptime', message('$SYS/broker/uptime', '2'));
  s.set('a/b', message('a/b', 'x'));
  s.set('a/c', message('a/c', 'old', 1));
  s.set('$other/x', message('$other/x', 'a client may retain here'));
  s.set('$SYSTEM/x', message('$SYSTEM/x', 'not $SYS'));
  assert.deepEqual([s.size, s.systemSize], [5, 1]);
  s.set('$other/x', null);
  s.set('$SYSTEM/x', null);
  assert.equal(s.has('a/c'), true);
  // an expired message counts until read, then goes
  assert.deepEqual(s.match('a/+', 2).map((m) => m.topic), ['a/b']);
  assert.deepEqual([s.size, s.has('a/c')], [2, false]);
  s.set('$SYS/broker/uptime', null);
  s.set('$SYS/broker/uptime', null);
  s.set('never/set', null);
  assert.deepEqual([s.size, s.systemSize], [1, 0]);
});
