import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { BROKER_NODE_FLAGS } from '../../src/cli/node-flags.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
const PACKAGE = fileURLToPath(new URL('../../../package.json', import.meta.url));

test('the mqt-tz command, npm start and the benchmark start the broker with the same V8 flags', () => {
  const shebang = readFileSync(MAIN, 'utf8').split('\n', 1)[0];
  assert.equal(shebang, `#!/usr/bin/env -S node ${BROKER_NODE_FLAGS.join(' ')}`);
  const start = (JSON.parse(readFileSync(PACKAGE, 'utf8')) as { scripts: Record<string, string> }).scripts.start;
  assert.equal(start, `node ${BROKER_NODE_FLAGS.join(' ')} dist/src/cli/main.js broker`);
});

test('the command runs through its shebang line, flags and all', () => {
  const [env, ...args] = readFileSync(MAIN, 'utf8').split('\n', 1)[0]!.slice(2).split(' ');
  // `env -S` splits the rest of the line as the kernel would hand it over: one argument
  const r = spawnSync(env!, [args[0]!, args.slice(1).join(' '), MAIN, '--help'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^Usage: mqt-tz /);
});
