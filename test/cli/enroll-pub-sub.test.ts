// `mqt-tz enroll`, `pub --key-file` and `sub --key-file` as real child processes against a broker
// with protected topics and its trusted component in its own process (the default backend).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { importClientKey, joinEnvelope, readKeyFile, sealEnvelope, splitEnvelope } from '../../src/client/index.js';
import { unique, waitUntil, withTimeout, WAIT_MS } from '../helpers/broker.js';
import { startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';

const MAIN = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `mqt-tz ARGS`; `done` resolves when it exits. */
function start(args: string[]): { done: Promise<Run> } {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Run>((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  return { done: withTimeout(exited, 3 * WAIT_MS, `mqt-tz ${args.join(' ')}`).finally(() => child.kill()) };
}

const run = (args: string[]): Promise<Run> => start(args).done;

let b: ProtectedBroker;
let conn: string[];
before(async () => {
  b = await startProtectedBroker('process');
  conn = ['-h', '127.0.0.1', '-p', String(b.port)];
});
after(() => b.close());

/** Exactly one line on stderr, matching `pattern`, and exit code 1. */
function assertFailed(r: Run, pattern: RegExp): void {
  assert.equal(r.code, 1, `exit code; stderr: ${r.stderr}`);
  assert.match(r.stderr, /^mqt-tz: [^\n]+\n$/);
  assert.match(r.stderr, pattern);
}

// The tests use their own identities, so they run side by side (each CLI process costs a Node start).
describe('mqt-tz enroll, pub and sub with --key-file', { concurrency: true }, () => {
  test('enroll, sub --key-file and pub --key-file carry protected messages end to end, sequence numbers staying fresh across publisher processes', async () => {
    const [alice, bob] = [unique('alice'), unique('bob')];
    const tokenFile = join(b.dataDir, `${alice}.token`);
    writeFileSync(tokenFile, `enrolment token for "${alice}":\n${b.token(alice)}\n`);
    const [enrolledAlice, enrolledBob] = await Promise.all([
      run(['enroll', ...conn, '-i', alice, '--token', `@${tokenFile}`, '--tee-fingerprint', b.fingerprint, '--key-file', b.keyFile(alice)]),
      run(['enroll', ...conn, '-V', '311', '-i', bob, '--token', b.token(bob), '--tee-fingerprint', b.fingerprint, '--key-file', b.keyFile(bob)]),
    ]);
    assert.equal(enrolledAlice.code, 0, enrolledAlice.stderr);
    assert.match(enrolledAlice.stdout, new RegExp(`enrolled "${alice}"`));
    assert.equal(enrolledBob.code, 0, enrolledBob.stderr);
    assert.equal(statSync(b.keyFile(bob)).mode & 0o777, 0o600);

    const topic = `secure/cli/${bob}`;
    const sub = start(['sub', ...conn, '--key-file', b.keyFile(bob), '-t', topic, '-C', '2', '-v', '-q', '1']); // identity from the key file
    await waitUntil(() => b.broker.sessions.get(bob)?.subscriptions.has(topic) === true, 'the sub process subscribed', 3 * WAIT_MS);
    // two pub processes: the second one's sequence numbers must still be fresh to bob
    for (const message of ['hello bob', 'from a restarted publisher']) {
      const pub = await run(['pub', ...conn, '--key-file', b.keyFile(alice), '-t', topic, '-m', message, '-q', '1']);
      assert.equal(pub.code, 0, pub.stderr);
    }
    const received = await sub.done;
    assert.equal(received.code, 0, received.stderr);
    assert.equal(received.stdout, `${topic} hello bob\n${topic} from a restarted publisher\n`);

  });

  test('enroll and pub fail with one line on stderr: wrong fingerprint, refused token, existing or missing key file', async () => {
    const [carol, dave, erin] = [unique('carol'), unique('dave'), unique('erin')];
    const enroll = (id: string, token: string, fingerprint: string) => run(['enroll', ...conn, '-i', id, '--token', token, '--tee-fingerprint', fingerprint, '--key-file', b.keyFile(id)]);
    await (await b.enrolled(erin)).endAsync();
    const [wrongFingerprint, refused, exists, missing] = await Promise.all([
      enroll(carol, b.token(carol), 'ab'.repeat(32)),
      enroll(dave, b.token(carol), b.fingerprint),
      enroll(erin, b.token(erin), b.fingerprint),
      run(['pub', ...conn, '--key-file', b.keyFile(dave), '-t', 'secure/x', '-m', 'x']),
    ]);
    assertFailed(wrongFingerprint, /do not match the pinned fingerprint/);
    assertFailed(refused, /refused the enrolment: token-identity-mismatch/);
    assertFailed(exists, /already exists/);
    assertFailed(missing, /does not exist; enrol first/);
    assert.equal(existsSync(b.keyFile(carol)) || existsSync(b.keyFile(dave)), false, 'no key file after a failed enrolment');
  });

  test('sub --key-file exits non-zero naming a tampered message', async () => {
    const [alice, gina] = [unique('alice'), unique('gina')];
    const topic = `hostile/${gina}`;
    const grants = { publish: [topic], read: [topic] };
    await (await b.enrolled(alice, { token: b.token(alice, grants) })).endAsync();
    await (await b.enrolled(gina, { token: b.token(gina, grants) })).endAsync();
    // The test plays a hostile host on a topic the broker does not protect: a genuine re-wrap, one bit flipped.
    const env = await sealEnvelope({ key: await importClientKey(readKeyFile(b.keyFile(alice))!.key), sender: alice, topic, seq: 1, payload: Buffer.from('x') });
    const { header, payload } = splitEnvelope(env);
    const [forGina] = await b.tee.rewrap(header, topic, alice, [gina]);
    const tampered = Buffer.from(joinEnvelope(forGina!.header!, payload));
    tampered[tampered.length - 1]! ^= 1;
    await (await b.mqtt()).publishAsync(topic, tampered, { qos: 1, retain: true });

    const sub = await run(['sub', ...conn, '--key-file', b.keyFile(gina), '-t', topic, '-C', '1']);
    assertFailed(sub, new RegExp(`rejected a message on ${topic}: tampered: payload fails authentication`));
    assert.equal(sub.stdout, '');
  });
});
