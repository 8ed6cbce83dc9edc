import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BROKER_NODE_FLAGS } from '../../src/cli/node-flags.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PACKAGE = fileURLToPath(new URL('../../../package.json', import.meta.url));

test('npm start and the benchmark start the broker with the same V8 flags, and Node accepts them', () => {
  const start = (JSON.parse(readFileSync(PACKAGE, 'utf8')) as { scripts: Record<string, string> }).scripts.start;
  assert.equal(start, `node ${BROKER_NODE_FLAGS.join(' ')} dist/src/cli/main.js broker`);
  const r = spawnSync(process.execPath, [...BROKER_NODE_FLAGS, MAIN, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Usage: mqt-tz /);
});

test('the mqt-tz command starts through a shebang any env runs (no -S)', () => {
  assert.equal(readFileSync(MAIN, 'utf8').split('\n', 1)[0], '#!/usr/bin/env node');
});
