// The fuzz harness's flatness judgement: the envelope of RSS (the top of each garbage-collection
// cycle) against the first whole cycle's top.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cycleEnds, cyclePeaks, flatness, flatnessFailure, type RssSummary } from '../../fuzz/rss.js';

const MIB = 1024 * 1024;

/** One sample a second from 60 s for `seconds`, RSS given in MiB by `at(second)`. */
function samples(seconds: number, at: (s: number) => number): { at: number; rss: number }[] {
  return Array.from({ length: seconds }, (_, s) => ({ at: 1000 * (60 + s), rss: at(s) * MIB }));
}

function summary(peaks: number[], whole: number): RssSummary {
  return { baseline: undefined, end: undefined, max: undefined, firstFloor: undefined, lastFloor: undefined, collectedAt: 0, cyclePeaks: peaks, wholeCycles: whole, flatness: flatness(peaks, whole) };
}

/** A saw as the fuzz traffic makes it: 100 MiB climbing by `rise` MiB a second for 140 s, then a collection gives it back. */
const saw = (rise: number, drift = 0) => (t: number): number => 100 + drift * t + rise * (t % 140);

test('collections less than 30 s apart end one cycle, at the last of them', () => {
  assert.deepEqual(cycleEnds([7_500, 8_300, 9_400, 16_500, 137_000, 145_000, 145_600, 290_000]), [16_500, 145_600, 290_000]);
  assert.deepEqual(cycleEnds([]), []);
});

test('a saw longer than any 30 s window is flat when its tops are level, whatever phase the run starts in', () => {
  // collections at 60 + 140k s; the run starts low in a cycle and ends part-way up one
  const s = samples(500, saw(0.35));
  const ends = [60_000, 200_000, 340_000, 480_000];
  const { peaks, whole } = cyclePeaks(s, ends);
  assert.equal(whole, 3);
  assert.deepEqual(peaks.map((p) => Math.round(p / MIB)), [149, 149, 149, 128], 'three whole cycles, then most of a fourth');
  assert.equal(flatness(peaks, whole), 1);
  assert.equal(flatnessFailure(summary(peaks, whole)), undefined);
});

test('tops that climb (a leak under the saw) fail past 10 %, and fewer than two whole cycles are not judged', () => {
  const s = samples(500, saw(0.35, 0.1)); // +14 MiB per cycle
  const ends = [60_000, 200_000, 340_000, 480_000];
  const { peaks, whole } = cyclePeaks(s, ends);
  assert.ok(flatness(peaks, whole)! > 1.1);
  assert.match(flatnessFailure(summary(peaks, whole)) ?? '', /RSS not flat: the top of collection cycle 3 \(190.6 MiB\) is 17.2 % above the first cycle's/);
  const short = cyclePeaks(s, ends.slice(0, 2));
  assert.equal(short.whole, 1);
  assert.equal(flatness(short.peaks, short.whole), undefined);
  assert.equal(flatnessFailure(summary(short.peaks, short.whole)), undefined);
});
