/** The fixed-bucket latency histogram behind the trusted-call and commit metrics. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LATENCY_BUCKETS_MS, LatencyHistogram } from '../src/latency-histogram.js';

test('an empty histogram reads as zeros over every bucket', () => {
  assert.deepEqual(new LatencyHistogram().snapshot(), { bucketsMs: LATENCY_BUCKETS_MS, cumulative: LATENCY_BUCKETS_MS.map(() => 0), count: 0, sumMs: 0 });
});

test('a duration counts in the first bucket whose bound it does not exceed (bounds inclusive), cumulatively; above the last bound only in count', () => {
  const h = new LatencyHistogram();
  for (const ms of [0, 0.05, 0.0501, 1, 1000, 1000.5, 60_000]) h.observe(ms);
  const s = h.snapshot();
  const at = (bound: number): number => s.cumulative[LATENCY_BUCKETS_MS.indexOf(bound as (typeof LATENCY_BUCKETS_MS)[number])]!;
  assert.equal(at(0.05), 2, '0 and 0.05');
  assert.equal(at(0.1), 3, '0.0501 is above 0.05');
  assert.equal(at(0.5), 3);
  assert.equal(at(1), 4);
  assert.equal(at(250), 4);
  assert.equal(at(1000), 5, '1000 is at the last bound');
  assert.equal(s.count, 7, 'the two above 1000 ms are counted (the implied +Inf bucket)');
  assert.equal(s.sumMs, 0 + 0.05 + 0.0501 + 1 + 1000 + 1000.5 + 60_000);
  for (let i = 1; i < s.cumulative.length; i++) assert.ok(s.cumulative[i]! >= s.cumulative[i - 1]!, 'cumulative never decreases');
});
