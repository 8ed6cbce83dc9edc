import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplayWindow } from '../../src/client/crypto/replay.js';
import { memoryKeyStore, KeyFileError } from '../../src/client/key-store.js';
import { decodeReplayState, encodeReplayState, openReplayWindow, ReplayJournal } from '../../src/client/replay-journal.js';
import { elapse, waitUntil } from '../helpers/broker.js';

test('the journal writes at most once per interval however many messages it takes, and flush() writes at once', async () => {
  const window = new ReplayWindow();
  const writes: string[] = [];
  const journal = new ReplayJournal(window, (text) => {
    writes.push(text);
    return Promise.resolve();
  }, 200, (err) => assert.fail(err));
  for (let seq = 1; seq <= 50; seq++) {
    window.accept('alice', seq);
    journal.changed();
  }
  assert.equal(writes.length, 0, 'nothing written before the interval');
  await waitUntil(() => writes.length === 1, 'the coalesced write');
  assert.equal(decodeReplayState(writes[0]!, 'w').senders[0]!.max, 50);
  await elapse(300); // the behaviour under test is that nothing more is written without a change
  assert.equal(writes.length, 1);
  window.accept('alice', 51);
  journal.changed();
  await journal.flush();
  assert.equal(writes.length, 2);
  assert.equal(decodeReplayState(writes[1]!, 'w').senders[0]!.max, 51);
  await journal.flush();
  assert.equal(writes.length, 2, 'a flush without a change writes nothing');
});

test('a failed write is reported, and the next flush writes the state again', async () => {
  const window = new ReplayWindow();
  let fail = true;
  const written: string[] = [];
  const journal = new ReplayJournal(window, (text) => (fail ? Promise.reject(new Error('disk full')) : Promise.resolve(void written.push(text))), 10_000, () => undefined);
  window.accept('alice', 9);
  journal.changed();
  await assert.rejects(journal.flush(), /disk full/);
  fail = false;
  await journal.flush();
  assert.equal(written.length, 1);
});

test('a key store\'s replay state restores the window; a damaged one is refused with a clear error, not ignored', async () => {
  const store = memoryKeyStore();
  const first = new ReplayWindow();
  const seq = Date.now() * 1024;
  first.accept('alice', seq);
  store.replayState = encodeReplayState(first.snapshot());
  const { window, keep } = await openReplayWindow(store, { maxAgeSeconds: 30 });
  assert.equal(window.check('alice', seq), 'duplicate');
  assert.equal(window.maxAgeMs, 30_000);
  assert.equal(keep?.intervalMs, 1000);

  const entry = (e: string): string => `{"format":"mqt-tz replay state","version":1,"size":1024,"senders":[${e}]}`;
  for (const text of ['{', entry('{"sender":"a","max":-1,"seen":""}'), entry('{"sender":"a","max":1,"seen":"AAAAA"}'), entry('7')]) {
    store.replayState = text;
    await assert.rejects(openReplayWindow(store, {}), (err: unknown) => err instanceof KeyFileError && /not a valid mqt-tz replay state .* delete it/.test(err.message));
  }
  await assert.rejects(openReplayWindow(store, { maxAgeSeconds: -1 }), /maxAgeSeconds must be a positive number/);
  await assert.rejects(openReplayWindow(store, { saveIntervalMs: 1.5 }), /replayStateIntervalMs must be/);
});
