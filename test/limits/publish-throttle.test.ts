import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PublishThrottle, type Pausable } from '../../src/limits/publish-throttle.js';
import { waitUntil } from '../helpers/wait.js';

class Reader implements Pausable {
  events: string[] = [];
  pauseReading(): void {
    this.events.push('pause');
  }
  resumeReading(): void {
    this.events.push('resume');
  }
}

test('within its publish rate every PUBLISH is admitted; past it the next one waits for the budget to refill', () => {
  const t = new PublishThrottle(10, 0, 0);
  for (let i = 0; i < 10; i++) assert.equal(t.admit(100, 0), 0, `publish ${i}`);
  assert.equal(t.admit(100, 0), 0, 'the one that empties the budget may overdraw it');
  assert.equal(t.admit(100, 0), 100);
  assert.equal(t.admit(100, 50), 50, 'a refused PUBLISH is not counted');
  assert.equal(t.admit(100, 100), 0);
});

test('past its byte rate a client waits in proportion to the bytes it overdrew', () => {
  const t = new PublishThrottle(0, 1000, 0);
  assert.equal(t.admit(3000, 0), 0);
  assert.equal(t.admit(10, 0), 2000);
  assert.equal(t.admit(10, 2000), 0);
});

test('a paused reader is resumed after the pause, and a stopped throttle never resumes it', async () => {
  const t = new PublishThrottle(1, 0);
  const r = new Reader();
  t.pause(r, 30);
  assert.deepEqual(r.events, ['pause']);
  await waitUntil(() => r.events.length === 2, 'the reader to be resumed');
  assert.deepEqual(r.events, ['pause', 'resume']);
  const stopped = new Reader();
  t.pause(stopped, 30);
  t.stop();
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(stopped.events, ['pause']);
});
