/**
 * The fuzzer's failure detectors against real processes: a stopped broker is a hang, a killed one
 * a crash; a trusted process that sends a known secret, or ends other than the protocol says, fails.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startBrokerChild, type BrokerChild } from '../../fuzz/broker-child.js';
import { Watch } from '../../fuzz/broker-target.js';
import { HANG_MS, Probe } from '../../fuzz/probe.js';
import { RssMonitor } from '../../fuzz/rss.js';
import { FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REQUEST, FRAMING_ATTACKS, FRAMING_EXIT_CODE, frameBytes, type RecordedFrame } from '../../fuzz/tee-frames.js';
import { recordedAnswers, recordSession, type Recording } from '../../fuzz/tee-record.js';
import { needles, TeeSession } from '../../fuzz/tee-session.js';
import { waitUntil } from '../helpers/wait.js';

describe('fuzz failure detectors: broker', () => {
  let dataDir: string;
  let broker: BrokerChild;
  let probe: Probe;
  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'mqt-tz-fuzz-test-'));
    broker = await startBrokerChild(dataDir);
    probe = await Probe.start(broker.port);
  });
  after(async () => {
    await probe?.stop();
    await broker?.stop();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('reports a hang when the broker stops answering the liveness probe, then a crash when it dies', async () => {
    const rss = new RssMonitor({ broker: broker.pid }, 0, undefined);
    const hang = new Watch(broker, probe, rss);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.equal(hang.failure, undefined, 'a running broker is neither hung nor dead');
      process.kill(broker.pid, 'SIGSTOP');
      await waitUntil(() => hang.failure !== undefined, 'the hang to be seen', HANG_MS + 3000);
      assert.match(hang.failure!, /^hang: a liveness round trip has been outstanding/);
    } finally {
      process.kill(broker.pid, 'SIGCONT');
      hang.stop();
    }
    const crash = new Watch(broker, probe, rss);
    try {
      process.kill(broker.pid, 'SIGSEGV');
      await waitUntil(() => crash.failure !== undefined, 'the crash to be seen');
      assert.match(crash.failure!, /^crash: the broker process ended \(signal SIGSEGV\)/);
    } finally {
      crash.stop();
    }
  });
});

describe('fuzz failure detectors: memory', () => {
  it('reports RSS that grows past the bound after the warm-up and stays there', async () => {
    // a process that holds 200 MiB more once the warm-up is over
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => { globalThis.held = Buffer.alloc(200 * 1024 * 1024, 1); }, 1500); setInterval(() => {}, 1000);']);
    try {
      const rss = new RssMonitor({ grower: child.pid }, 1000, undefined);
      let failure: string | undefined;
      const deadline = Date.now() + 8000;
      while (failure === undefined && Date.now() < deadline) {
        failure = rss.sample();
        if (Date.now() < 1400) assert.equal(failure, undefined);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      assert.match(failure ?? '', /^RSS .* passed the bound .* for 3 samples in a row$/);
      const s = rss.summary();
      assert.ok(s.max! > s.baseline! + 150 * 1024 * 1024, 'the summary shows the growth');
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('fuzz failure detectors: trusted component', () => {
  let rec: Recording;
  before(async () => {
    rec = await recordSession();
  });
  after(() => rmSync(rec.dir, { recursive: true, force: true }));

  /** Sends the recorded init and every recorded command; returns the session and the answers. */
  async function session(secrets: Buffer[]): Promise<{ s: TeeSession; answers: RecordedFrame[] }> {
    const answers: RecordedFrame[] = [];
    const s: TeeSession = new TeeSession(rec.dir, secrets, (f) => {
      if (f.type === FRAME_RESULT) answers.push(f);
      const stored = f.type === FRAME_STORE_REQUEST ? recordedAnswers(rec, f).at(-1) : undefined;
      if (stored !== undefined) s.write(frameBytes({ ...stored, id: f.id }));
    });
    const initialised = s.result(1, 5000);
    s.write(frameBytes({ ...rec.init, id: 1 }));
    assert.equal((await initialised)?.code, 0, 'init answered');
    s.write(frameBytes({ ...rec.commands[0]!, type: FRAME_COMMAND, id: 2 }));
    await s.probe(rec.probe);
    return { s, answers };
  }

  it('passes a session as recorded and its orderly end', async () => {
    const { s, answers } = await session(needles(rec.secrets));
    await s.end(undefined, 0);
    assert.equal(s.failure, undefined);
    const info = answers.find((a) => a.id === 2);
    assert.equal(info?.code, 0, `the command was answered: ${info?.payload.toString()}`);
  });

  it('reports a known secret in a frame from the trusted process', async () => {
    const first = await session([]);
    await first.s.end(undefined, 0);
    const answer = first.answers.find((a) => a.id === 2)!;
    // Stand-in secret: bytes the trusted side does send (its public key, first in the info answer).
    const { s } = await session(needles([answer.payload.subarray(0, 32)]));
    await s.end(undefined, 0);
    assert.match(s.failure ?? '', /^secret material in a frame from the trusted process/);
  });

  it('accepts the exit status 2 after a framing error and reports any other as a crash', async () => {
    for (const attack of FRAMING_ATTACKS) {
      const ok = await session([]);
      await ok.s.end(attack(rec.probe), FRAMING_EXIT_CODE);
      assert.equal(ok.s.failure, undefined);
      const wrong = await session([]);
      await wrong.s.end(attack(rec.probe), 0);
      assert.match(wrong.s.failure ?? '', /^crash: the trusted process ended with exit code 2, expected exit code 0/);
    }
  });
});
