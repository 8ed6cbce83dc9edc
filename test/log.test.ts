// Log format: readable lines when stderr is a terminal (a real pseudo-terminal from `script`),
// JSON lines when it is a pipe, and MQT_TZ_LOG_FORMAT overriding either.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { logFormat } from '../src/log.js';
import { withTimeout, WAIT_MS } from './helpers/broker.js';

const MAIN = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-log-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs `command` (argv) until its output shows a 'listening' line; returns that output. */
async function outputUntilListening(command: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  try {
    return await withTimeout(
      new Promise<string>((resolve) => {
        const read = (d: Buffer): void => {
          out += d.toString();
          if (/listening/.test(out) && out.endsWith('\n')) resolve(out);
        };
        child.stdout.on('data', read);
        child.stderr.on('data', read);
      }),
      3 * WAIT_MS,
      `a listening line in: ${out}`,
    );
  } finally {
    child.kill('SIGTERM');
  }
}

const broker = ['broker', '--port', '0', '--host', '127.0.0.1', '--data', join(dir, 'data')];

test('on a terminal the broker logs readable lines, level and message first, no JSON', async () => {
  const quoted = [process.execPath, MAIN, ...broker].map((a) => `'${a}'`).join(' ');
  const out = await outputUntilListening(['script', '-qfec', quoted, '/dev/null'], { MQT_TZ_LOG_FORMAT: '' });
  const line = out.split(/\r?\n/).find((l) => l.includes('listening'))!;
  // eslint-disable-next-line no-control-regex
  const plain = line.replace(/\x1b\[[0-9;]*m/g, '');
  assert.match(plain, /^\[\d\d:\d\d:\d\d\.\d{3}\] INFO \(mqt-tz\): listening \{"transport":"tcp","host":"127\.0\.0\.1","port":\d+\}/);
});

test('to a pipe the broker logs one JSON object per line; MQT_TZ_LOG_FORMAT=pretty overrides', async () => {
  const json = await outputUntilListening([process.execPath, MAIN, ...broker], { MQT_TZ_LOG_FORMAT: '' });
  const listening = json.trim().split('\n').map((l) => JSON.parse(l) as { msg: string; level: number }).find((l) => l.msg === 'listening');
  assert.equal(listening?.level, 30);
  const pretty = await outputUntilListening([process.execPath, MAIN, ...broker], { MQT_TZ_LOG_FORMAT: 'pretty' });
  assert.match(pretty, /INFO \(mqt-tz\): listening/);
  assert.equal(logFormat({ MQT_TZ_LOG_FORMAT: 'json' }, true), 'json');
  assert.equal(logFormat({}, true), 'pretty');
  assert.equal(logFormat({}, false), 'json');
});
