import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReplayWindow, SequenceCounter, sentAtMs } from '../../../src/client/crypto/replay.js';

const take = (w: ReplayWindow, sender: string, seq: number): string => {
  const verdict = w.check(sender, seq);
  if (verdict === 'fresh') w.accept(sender, seq);
  return verdict;
};

test('a window restored from a snapshot refuses what the first took and accepts what it had not seen, per sender', () => {
  const first = new ReplayWindow(64);
  for (const seq of [100, 103, 140]) take(first, 'alice', seq);
  take(first, 'bob', 7);
  const restored = new ReplayWindow(64);
  restored.restore(JSON.parse(JSON.stringify(first.snapshot())) as ReturnType<ReplayWindow['snapshot']>);
  assert.deepEqual([100, 103, 140].map((s) => take(restored, 'alice', s)), ['duplicate', 'duplicate', 'duplicate']);
  assert.equal(take(restored, 'alice', 101), 'fresh', 'a gap below the highest number stays open');
  assert.equal(take(restored, 'alice', 70), 'too-old');
  assert.equal(take(restored, 'bob', 7), 'duplicate');
  assert.equal(take(restored, 'bob', 8), 'fresh');
  assert.equal(take(restored, 'carol', 1), 'fresh');
});

test('a snapshot made with another window size counts everything up to each sender\'s highest number as seen', () => {
  const first = new ReplayWindow(64);
  take(first, 'alice', 500);
  const restored = new ReplayWindow(128);
  restored.restore(first.snapshot());
  assert.deepEqual([500, 499, 450].map((s) => restored.check('alice', s)), ['duplicate', 'duplicate', 'duplicate']);
  assert.equal(restored.check('alice', 501), 'fresh');
});

test('with a maximum age, a message whose sequence number is older than that is expired, a recent one fresh', () => {
  let now = 1_800_000_000_000;
  const seqs = new SequenceCounter(() => now);
  const w = new ReplayWindow(1024, 5000, () => now);
  const old = seqs.next();
  now += 3000;
  const recent = seqs.next();
  assert.equal(sentAtMs(recent), now);
  now += 2500;
  assert.equal(w.check('alice', old), 'expired');
  assert.equal(w.check('alice', recent), 'fresh');
  assert.throws(() => new ReplayWindow(1024, 0), /maximum age must be a positive/);
});
