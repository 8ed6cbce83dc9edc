import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BurstLog } from '../../src/limits/burst-log.js';
import { waitUntil } from '../helpers/wait.js';

test('a burst of events is logged once at its start and summed up once it is quiet', async () => {
  const lines: [string, Record<string, unknown>, string][] = [];
  const log = {
    warn: (fields: Record<string, unknown>, msg: string) => lines.push(['warn', fields, msg]),
    info: (fields: Record<string, unknown>, msg: string) => lines.push(['info', fields, msg]),
  };
  const b = new BurstLog(log as never, 50);
  for (let i = 0; i < 100; i++) b.note('connectionRate', { remote: 'x' }, 'refused');
  b.note('maxConnections', {}, 'full');
  assert.deepEqual(lines.map(([level, f]) => [level, f.limit]), [['warn', 'connectionRate'], ['warn', 'maxConnections']]);
  await waitUntil(() => lines.length === 3, 'the end of the burst to be logged');
  assert.equal(lines[2]![0], 'info');
  assert.equal(lines[2]![1].more, 99);
  // a new burst is logged again
  b.note('connectionRate', {}, 'refused');
  assert.equal(lines.length, 4);
  b.close();
});
