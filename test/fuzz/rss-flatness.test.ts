// The fuzz harness's flatness judgement: the envelope of RSS (each 30 s window's highest sample)
// from the first full collection on, against the first window's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { flatness, flatnessFailure, windowPeaks, type RssSummary } from '../../fuzz/rss.js';

const MIB = 1024 * 1024;

/** One sample a second for `seconds`, RSS given in MiB by `at(second)`. */
function samples(seconds: number, at: (s: number) => number): { at: number; rss: number }[] {
  return Array.from({ length: seconds }, (_, s) => ({ at: 1000 * (60 + s), rss: at(s) * MIB }));
}

function summary(peaks: number[]): RssSummary {
  return { baseline: undefined, end: undefined, max: undefined, firstFloor: undefined, lastFloor: undefined, collectedAt: 0, windowPeaks: peaks, flatness: flatness(peaks) };
}

test('a saw inside every window is flat; the partial last window is left out', () => {
  // 100 to 140 MiB and back every 10 s, then a spike in the unfinished last window
  const s = samples(125, (t) => (t >= 120 ? 300 : 100 + 4 * (t % 10)));
  const peaks = windowPeaks(s, 30_000);
  assert.deepEqual(peaks.map((p) => p / MIB), [136, 136, 136, 136]);
  assert.equal(flatness(peaks), 1);
  assert.equal(flatnessFailure(summary(peaks)), undefined);
});

test('an envelope that climbs (a leak under the saw) fails past 10 %, and is not judged with fewer than three windows', () => {
  const s = samples(181, (t) => 100 + t / 6 + 4 * (t % 10)); // +5 MiB per window
  const peaks = windowPeaks(s, 30_000);
  assert.equal(peaks.length, 6);
  assert.ok(flatness(peaks)! > 1.1);
  assert.match(flatnessFailure(summary(peaks)) ?? '', /RSS not flat: the highest sample of 30 s window 6/);
  assert.equal(flatness(peaks.slice(0, 2)), undefined);
  assert.equal(flatnessFailure(summary(peaks.slice(0, 2))), undefined);
});
