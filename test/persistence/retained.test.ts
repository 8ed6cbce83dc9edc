/** JournaledRetainedStore: clients' retained messages reach the store; the broker's own `$SYS` ones stay in memory. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { makeMessage } from '../../src/broker/message.js';
import { GroupCommitJournal } from '../../src/persistence/journal.js';
import { JournaledRetainedStore } from '../../src/persistence/retained.js';
import { openSqliteStore } from '../../src/persistence/sqlite-store.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

test('retained messages are stored except on $SYS topics, which the broker makes anew every interval', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-retained-test-'));
  dirs.push(dir);
  const store = openSqliteStore(dir, 'normal');
  const journal = new GroupCommitJournal(store, 0, (err) => assert.fail(String(err)));
  const retained = new JournaledRetainedStore(journal);
  for (const topic of ['a/b', '$SYS/broker/uptime', '$other/x', '$SYSTEM/y']) retained.set(topic, makeMessage(topic, Buffer.from('v'), 0, true, undefined, ''));
  await journal.flush();
  assert.equal(retained.size, 4, 'all four are served from memory');
  const loaded = await store.load(Date.now());
  assert.deepEqual(loaded.retained.map((m) => m.topic).sort(), ['$SYSTEM/y', '$other/x', 'a/b']);
  await store.close();
});
