// Acceptance (issue 24, item 6): no replay across restarts. bob's subscriber is `mqt-tz sub
// --key-file` in its own process, connected through a hostile broker (the man-in-the-middle
// proxy). The proxy records an envelope bob took; after bob's process exits (cleanly, or killed
// with SIGKILL) and starts again, the proxy delivers the recording once more. It must be refused
// as replayed and never printed.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { IPublishPacket } from 'mqtt-packet';
import { splitEnvelope, type ProtectedClient } from '../../src/client/index.js';
import { parseHeader } from '../../src/envelope/envelope-layout.js';
import { elapse, waitUntil, withTimeout, WAIT_MS } from '../helpers/broker.js';
import type { ProtectedBroker } from '../helpers/protected-broker.js';
import { MAIN } from '../helpers/cli-broker.js';
import { startBrokerBehindProxy, type MitmProxy } from '../helpers/mitm-proxy.js';

let b: ProtectedBroker, proxy: MitmProxy, alice: ProtectedClient, close: (() => Promise<void>) | undefined;
before(async () => {
  ({ b, proxy, alice, close } = await startBrokerBehindProxy('alice'));
  await (await b.enrolled('bob')).endAsync();
});
after(() => close?.());

interface SubProcess {
  child: ChildProcess;
  stdout(): string;
  /** Resolves with the exit code and stderr once the process is gone. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** `mqt-tz sub` as bob, through the proxy; resolves once bob's session has subscribed. */
async function startSub(topic: string, ...extra: string[]): Promise<SubProcess> {
  const previous = b.broker.sessions.get('bob'); // a killed predecessor's, until the broker notices
  const args = [MAIN, 'sub', '-h', '127.0.0.1', '-p', String(proxy.port), '--key-file', b.keyFile('bob'), '-t', topic, '-q', '1', ...extra];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = withTimeout(new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  }), 3 * WAIT_MS, `mqt-tz sub -t ${topic}`);
  exited.catch(() => child.kill('SIGKILL'));
  const subscribed = (): boolean => {
    const session = b.broker.sessions.get('bob');
    return session !== undefined && session !== previous && session.subscriptions.has(topic);
  };
  await waitUntil(() => subscribed() || child.exitCode !== null, 'the sub process subscribed', 3 * WAIT_MS);
  return { child, stdout: () => stdout, exited };
}

const seqOf = (p: IPublishPacket): number => parseHeader(splitEnvelope(Buffer.from(p.payload)).header).seq;

/** The highest sequence number of alice's that bob's replay state file records (0 if none). */
function recordedMax(): number {
  const path = `${b.keyFile('bob')}.replay`;
  if (!existsSync(path)) return 0;
  const state = JSON.parse(readFileSync(path, 'utf8')) as { senders: Array<{ sender: string; max: number }> };
  return state.senders.find((s) => s.sender === 'alice')?.max ?? 0;
}

/** alice publishes `text` to `topic`; resolves with the packet the proxy relayed to bob. */
async function recordedDelivery(topic: string, text: string): Promise<IPublishPacket> {
  let recorded: IPublishPacket | undefined;
  proxy.once((p) => [(recorded = p)]);
  await alice.publishAsync(topic, text, { qos: 1 });
  await waitUntil(() => recorded !== undefined, 'the proxy relayed alice\'s message to bob');
  return recorded!;
}

/** A restarted bob gets `recording` (before the next message alice sends): refused as replayed, nothing printed. */
async function replayRefused(topic: string, recording: IPublishPacket, reason: RegExp, ...extra: string[]): Promise<void> {
  const sub = await startSub(topic, '-C', '1', ...extra);
  proxy.once((p) => [recording, p]);
  await alice.publishAsync(topic, 'a fresh message', { qos: 1 });
  const run = await sub.exited;
  assert.equal(sub.stdout(), '', 'the replayed message was not printed');
  assert.equal(run.code, 1, run.stderr);
  assert.match(run.stderr, new RegExp(`^mqt-tz: rejected a message on ${topic}: replayed: message ${seqOf(recording)} from "alice" is ${reason.source}\\n$`));
}

describe('a subscriber restarted after taking a message refuses that message when a hostile broker replays it', () => {
  it('after a clean exit (-C 1): refused as a duplicate; control: with the replay state deleted the same replay is printed', async () => {
    const topic = 'secure/replay/clean';
    const sub = await startSub(topic, '-C', '1');
    const recording = await recordedDelivery(topic, 'taken once');
    const run = await sub.exited;
    assert.equal(run.code, 0, run.stderr);
    assert.equal(sub.stdout(), 'taken once\n');
    assert.equal(recordedMax(), seqOf(recording), 'the exit wrote the replay state');

    await replayRefused(topic, recording, /a duplicate/);

    rmSync(`${b.keyFile('bob')}.replay`);
    const control = await startSub(topic, '-C', '1');
    proxy.once((p) => [recording, p]);
    await alice.publishAsync(topic, 'a fresh message', { qos: 1 });
    assert.equal((await control.exited).code, 0);
    assert.equal(control.stdout(), 'taken once\n', 'without the replay state the harness does get the replay through');
  });

  it('after SIGKILL once the periodic write recorded the message: refused as a duplicate', async () => {
    const topic = 'secure/replay/killed';
    const sub = await startSub(topic);
    const recording = await recordedDelivery(topic, 'taken before the crash');
    await waitUntil(() => sub.stdout() === 'taken before the crash\n', 'bob printed the message');
    await waitUntil(() => recordedMax() >= seqOf(recording), 'the replay state recorded it (written within 1 s)', 3 * WAIT_MS);
    sub.child.kill('SIGKILL');
    assert.equal((await sub.exited).signal, 'SIGKILL');

    await replayRefused(topic, recording, /a duplicate/);
  });

  it('with the replay state lost (a crash before its write), --max-age refuses a recording older than the limit, and takes fresh messages', async () => {
    const topic = 'secure/replay/aged';
    const sub = await startSub(topic, '-C', '1');
    const recording = await recordedDelivery(topic, 'taken, then forgotten');
    assert.equal((await sub.exited).code, 0);
    rmSync(`${b.keyFile('bob')}.replay`); // as if the process died before the write
    await elapse(1100); // the behaviour under test is the message's age

    const aged = await startSub(topic, '-C', '2', '--max-age', '1');
    proxy.once((p) => [p, recording]);
    await alice.publishAsync(topic, 'a fresh message', { qos: 1 });
    const run = await aged.exited;
    assert.equal(aged.stdout(), 'a fresh message\n');
    assert.equal(run.code, 1);
    assert.match(run.stderr, new RegExp(`replayed: message ${seqOf(recording)} from "alice" is older than the maximum age`));
  });
});

describe('mqt-tz sub --max-age', () => {
  const run = (args: string[]): Promise<{ code: number | null; stderr: string }> => {
    const child = spawn(process.execPath, [MAIN, 'sub', '-h', '127.0.0.1', '-p', String(b.port), '-t', 'secure/x', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    return withTimeout(new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr }))), 3 * WAIT_MS, 'mqt-tz sub');
  };

  it('refuses a value that is not a positive number, and a use without --key-file, with one line', async () => {
    for (const [args, line] of [
      [['--key-file', b.keyFile('bob'), '--max-age', '0'], 'mqt-tz: --max-age must be a positive number, got "0"\n'],
      [['--key-file', b.keyFile('bob'), '--max-age', 'soon'], 'mqt-tz: --max-age must be a positive number, got "soon"\n'],
      [['--max-age', '5'], 'mqt-tz: --max-age needs --key-file: only protected messages carry their send time\n'],
    ] as const) {
      assert.deepEqual(await run([...args]), { code: 1, stderr: line });
    }
  });
});
