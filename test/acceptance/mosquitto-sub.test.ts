// Acceptance (issue 4): alice and bob enrol, bob's `mqt-tz sub --key-file` prints alice's
// plaintext, and a plain mosquitto_sub (Debian's mosquitto-clients) connected as another enrolled
// identity on the same protected topic sees only an envelope that does not contain it.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { importClientKey, openEnvelope, readKeyFile, splitEnvelope } from '../../src/client/index.js';
import { KIND_GROUP, parseHeader } from '../../src/envelope/envelope-layout.js';
import { waitUntil, withTimeout, WAIT_MS } from '../helpers/broker.js';
import { startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';
import { MAIN } from '../helpers/cli-broker.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `command args`; `done` resolves when it exits (bounded: killed after 3 × WAIT_MS). */
function start(command: string, args: string[]): { done: Promise<Run> } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Run>((resolve) => {
    child.once('error', (err) => resolve({ code: -1, stdout, stderr: stderr + err.message }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { done: withTimeout(exited, 3 * WAIT_MS, `${command} ${args.join(' ')} to exit`).finally(() => child.kill()) };
}

let b: ProtectedBroker;
before(async () => {
  b = await startProtectedBroker('process');
});
after(() => b.close());

test('bob\'s mqt-tz sub prints alice\'s plaintext, while mosquitto_sub as enrolled carol sees only ciphertext without it', async () => {
  const probe = spawnSync('mosquitto_sub', ['--help'], { stdio: 'ignore' });
  if (probe.error) assert.fail('mosquitto_sub not found on PATH: install mosquitto-clients (Debian/Ubuntu: apt-get install -y mosquitto-clients)');

  const alice = await b.enrolled('alice');
  for (const id of ['bob', 'carol']) await (await b.enrolled(id)).endAsync();
  const topic = 'secure/lab/fridge';
  const plaintext = 'fridge 3 is at 4.2 C, door closed';
  const conn = ['-h', '127.0.0.1', '-p', String(b.port)];
  const bob = start(process.execPath, [MAIN, 'sub', ...conn, '--key-file', b.keyFile('bob'), '-t', topic, '-q', '1', '-C', '1']);
  const carol = start('mosquitto_sub', [...conn, '-V', 'mqttv311', '-i', 'carol', '-t', topic, '-q', '1', '-C', '1', '-W', '15', '-F', '%x']);
  for (const [id, sub] of [['bob', bob], ['carol', carol]] as const) {
    let exited: Run | undefined;
    void sub.done.then((r) => (exited = r));
    await waitUntil(() => exited !== undefined || b.broker.sessions.get(id)?.subscriptions.has(topic) === true, `${id}'s subscriber to subscribe`, 3 * WAIT_MS);
    assert.equal(exited, undefined, `${id}'s subscriber exited early`);
  }

  await alice.publishAsync(topic, plaintext, { qos: 1 });
  const [bobRun, carolRun] = await Promise.all([bob.done, carol.done]);
  assert.equal(carolRun.code, 0, carolRun.stderr);
  const seen = Buffer.from(carolRun.stdout.trim(), 'hex');
  assert.ok(seen.length > plaintext.length, `mosquitto_sub printed ${seen.length} bytes`);
  assert.equal(seen.includes(plaintext), false, 'mosquitto_sub sees no plaintext');
  assert.equal(seen.includes(Buffer.from(plaintext.slice(0, 8))), false, 'not even part of it');

  // What mosquitto_sub saw is the real message: an envelope re-wrapped for carol that only her key opens.
  const header = parseHeader(splitEnvelope(seen).header);
  assert.deepEqual([header.kind, header.sender, header.recipient], [KIND_GROUP, 'alice', 'carol']);
  const opened = await openEnvelope({ key: await importClientKey(readKeyFile(b.keyFile('carol'))!.key), identity: 'carol', topic, envelope: seen });
  assert.equal(Buffer.from(opened.payload).toString(), plaintext);
  assert.equal(bobRun.code, 0, bobRun.stderr);
  assert.equal(bobRun.stdout, `${plaintext}\n`, 'bob\'s sub prints the plaintext');
});
