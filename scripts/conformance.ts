/**
 * `npm run conformance`: starts the broker with the conformance config, runs the Eclipse Paho
 * MQTT 3.1.1 and 5.0 interoperability suites against it, prints their summary lines, stops the
 * broker, and exits non-zero unless both suites pass in full.
 *
 * The suites live outside the repository: `CONFORMANCE_DIR` (default `../shared/conformance`).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const suiteDir = resolve(root, process.env.CONFORMANCE_DIR ?? join('..', 'shared', 'conformance'));
const runner = join(suiteDir, 'run.sh');

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => ok(port));
    });
  });
}

function waitForListening(broker: ChildProcess): Promise<void> {
  return new Promise((ok, fail) => {
    let log = '';
    const timer = setTimeout(() => fail(new Error(`broker did not start within 20 s:\n${log}`)), 20_000);
    broker.stderr!.on('data', (chunk: Buffer) => {
      log += chunk.toString();
      process.stderr.write(chunk);
      if (log.includes('"listening"') || log.includes('listening')) {
        clearTimeout(timer);
        ok();
      }
    });
    broker.once('exit', (code) => {
      clearTimeout(timer);
      fail(new Error(`broker exited with ${code}:\n${log}`));
    });
  });
}

function runSuite(port: number, suite: 'v311' | 'v5'): Promise<{ passed: number; failed: number; line: string }> {
  return new Promise((ok) => {
    const child = spawn('bash', [runner, '127.0.0.1', String(port), suite], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      process.stdout.write(chunk);
    });
    child.on('close', () => {
      const m = /conformance \S+: (\d+) passed, (\d+) failed/.exec(out);
      const line = m ? m[0] : `conformance ${suite}: did not complete`;
      ok({ passed: m ? Number(m[1]) : 0, failed: m ? Number(m[2]) : 1, line });
    });
  });
}

const EXPECTED = { v311: 10, v5: 27 } as const;

async function main(): Promise<number> {
  if (!existsSync(runner)) {
    process.stderr.write(`conformance: ${runner} not found (set CONFORMANCE_DIR)\n`);
    return 2;
  }
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'mqt-tz-conformance-'));
  const broker = spawn(
    process.execPath,
    [join(root, 'dist', 'src', 'cli', 'main.js'), 'broker', '--host', '127.0.0.1', '--port', String(port), '--data', data, '--config', join(root, 'scripts', 'conformance.json'), '--log-level', 'info'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let quiet = false;
  try {
    await waitForListening(broker);
    // Only warnings and errors from here on: the suites connect hundreds of times.
    broker.stderr!.removeAllListeners('data');
    broker.stderr!.on('data', (chunk: Buffer) => {
      const text = chunk.toString();
      if (!quiet && /"level":(40|50|60)/.test(text)) process.stderr.write(text);
    });
    const results = [];
    for (const suite of ['v311', 'v5'] as const) results.push({ suite, ...(await runSuite(port, suite)) });
    quiet = true;
    console.log('');
    for (const r of results) console.log(r.line);
    const short = results.filter((r) => r.passed !== EXPECTED[r.suite] || r.failed !== 0);
    for (const r of short) console.log(`conformance ${r.suite}: expected ${EXPECTED[r.suite]} passed, 0 failed`);
    return short.length === 0 ? 0 : 1;
  } finally {
    quiet = true;
    broker.kill('SIGTERM');
    await new Promise((ok) => {
      const t = setTimeout(() => {
        broker.kill('SIGKILL');
        ok(undefined);
      }, 5000);
      broker.once('exit', () => {
        clearTimeout(t);
        ok(undefined);
      });
    });
    rmSync(data, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`conformance: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
