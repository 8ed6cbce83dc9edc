// Enrolment and rotation cannot lock a client out (issue 24, item 7): the trusted component's
// answer is lost (a hostile broker drops it) or the client dies after sending; the restarted
// client sends the saved request again, gets the answer, and only then stores the key.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connectProtected, EnrolmentError, fileKeyStore, readKeyFile, TeeRequestError, type ProtectedClient } from '../../src/client/index.js';
import { unique, waitUntil, withTimeout, WAIT_MS } from '../helpers/broker.js';
import { MAIN } from '../helpers/cli-broker.js';
import { loadOperatorKey, OPERATOR_KEY_FILE, signRevocation } from '../../src/protect/operator.js';
import { startBrokerBehindProxy, type MitmProxy } from '../helpers/mitm-proxy.js';
import { Events, type ProtectedBroker } from '../helpers/protected-broker.js';

let b: ProtectedBroker, proxy: MitmProxy, alice: ProtectedClient, close: (() => Promise<void>) | undefined;
before(async () => ({ b, proxy, alice, close } = await startBrokerBehindProxy(unique('alice'))));
after(() => close?.());

/** The next two answers through the proxy: the trusted component's info passes, the key answer is dropped. */
function dropKeyAnswer(onDropped: () => void = () => undefined): void {
  proxy.once((p) => [p]);
  proxy.once(() => {
    onDropped();
    return [];
  });
}

const pendingOf = (identity: string) => fileKeyStore(b.keyFile(identity)).loadPending();

/** alice and `client` exchange protected messages both ways, each arriving with its sender. */
async function exchanges(client: ProtectedClient): Promise<void> {
  const [toClient, toAlice] = [`secure/key-change/${client.identity}/in`, `secure/key-change/${client.identity}/out`];
  const [clientEvents, aliceEvents] = [new Events(client), new Events(alice)];
  await client.subscribeAsync(toClient, { qos: 1 });
  await alice.subscribeAsync(toAlice, { qos: 1 });
  await alice.publishAsync(toClient, 'to the client', { qos: 1 });
  await client.publishAsync(toAlice, 'from the client', { qos: 1 });
  const expected = (topic: string, text: string, sender: string) => ({ kind: 'message', topic, text, sender, protected: true, retain: false });
  assert.deepEqual(await clientEvents.next('the message to the client'), expected(toClient, 'to the client', alice.identity));
  assert.deepEqual(await aliceEvents.next('the message from the client'), expected(toAlice, 'from the client', client.identity));
}

describe('a key change whose answer is lost completes on the next start with the same key', () => {
  it('enrolment: no key file but a 0600 pending file after the lost answer; the restart enrols that key without a token, once', async () => {
    const id = unique('dora');
    const enrolments = (await b.tee.stats()).enrolments;
    dropKeyAnswer();
    await assert.rejects(
      connectProtected(proxy.url, { identity: id, teeFingerprint: b.fingerprint, keyFile: b.keyFile(id), token: b.token(id), teeTimeoutMs: 1000, reconnectPeriod: 0 }),
      (err: unknown) => err instanceof TeeRequestError && /no answer to the enrol request/.test(err.message),
    );
    assert.equal(existsSync(b.keyFile(id)), false, 'no key stored without a confirmation');
    const pending = await pendingOf(id);
    assert.equal(pending?.type, 'enrol');
    assert.equal(statSync(`${b.keyFile(id)}.pending`).mode & 0o777, 0o600);
    assert.equal((await b.tee.stats()).enrolments, enrolments + 1, 'the trusted component did enrol it');

    const client = await b.client(id); // no token: the saved request carries the first one
    assert.deepEqual(readKeyFile(b.keyFile(id))!.key, pending!.key);
    assert.equal(await pendingOf(id), undefined);
    assert.equal((await b.tee.stats()).enrolments, enrolments + 1);
    await exchanges(client);

    const other = b.client(id, { token: b.token(id), keyFile: b.keyFile(`${id}-other`) });
    await assert.rejects(other, (err: unknown) => err instanceof EnrolmentError && err.refusal === 'already-enrolled', 'a different request for the identity is still refused');
  });

  it('rotation: the key file keeps the old key until the restart has the new one confirmed; then messages flow under it', async () => {
    const id = unique('rita');
    await (await b.enrolled(id)).endAsync();
    const oldKey = readKeyFile(b.keyFile(id))!.key;
    const client = await connectProtected(proxy.url, { identity: id, teeFingerprint: b.fingerprint, keyFile: b.keyFile(id), teeTimeoutMs: 1000, reconnectPeriod: 0 });
    dropKeyAnswer();
    await assert.rejects(client.rotateKey(), /no answer to the rotate request/);
    await client.endAsync();
    assert.deepEqual(readKeyFile(b.keyFile(id))!.key, oldKey);
    const pending = await pendingOf(id);
    assert.equal(pending?.type, 'rotate');

    const restarted = await b.client(id);
    assert.deepEqual(readKeyFile(b.keyFile(id))!.key, pending!.key);
    assert.equal(await pendingOf(id), undefined);
    await exchanges(restarted);
  });

  it('a pending enrolment the trusted component now refuses (the identity was revoked meanwhile) is dropped, with the signed refusal as the error', async () => {
    const id = unique('vera');
    dropKeyAnswer();
    await assert.rejects(connectProtected(proxy.url, { identity: id, teeFingerprint: b.fingerprint, keyFile: b.keyFile(id), token: b.token(id), teeTimeoutMs: 1000, reconnectPeriod: 0 }), TeeRequestError);
    await b.tee.revoke(signRevocation(loadOperatorKey(join(b.dataDir, OPERATOR_KEY_FILE)), id));
    await assert.rejects(b.client(id), (err: unknown) => err instanceof EnrolmentError && err.refusal === 'token-replayed');
    assert.equal(await pendingOf(id), undefined);
    assert.equal(existsSync(b.keyFile(id)), false);
    await assert.rejects(b.client(id), /no enrolment token/, 'the next start needs a new token, as after any refusal');
  });

  it('mqt-tz enroll killed after sending: the same command again completes the enrolment, and sub and pub work with the key', async () => {
    const id = unique('kim');
    const args = [MAIN, 'enroll', '-h', '127.0.0.1', '-p', String(proxy.port), '-i', id, '--token', b.token(id), '--tee-fingerprint', b.fingerprint, '--key-file', b.keyFile(id)];
    const first = spawn(process.execPath, args, { stdio: 'ignore' });
    const killed = new Promise<NodeJS.Signals | null>((resolve) => first.on('close', (_code, signal) => resolve(signal)));
    dropKeyAnswer(() => first.kill('SIGKILL')); // the answer exists, the client is gone before it arrives
    assert.equal(await withTimeout(killed, 3 * WAIT_MS, 'the first enroll to be killed'), 'SIGKILL');
    assert.equal(existsSync(b.keyFile(id)), false);
    assert.equal((await pendingOf(id))?.type, 'enrol');

    const again = spawn(process.execPath, args.map((a) => (a === String(proxy.port) ? String(b.port) : a)), { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    again.stdout!.on('data', (d: Buffer) => (output += d.toString()));
    again.stderr!.on('data', (d: Buffer) => (output += d.toString()));
    const code = await withTimeout(new Promise<number | null>((resolve) => again.on('close', resolve)), 3 * WAIT_MS, 'the second enroll');
    assert.equal(code, 0, output);
    assert.match(output, new RegExp(`enrolled "${id}"`));
    assert.equal(await pendingOf(id), undefined);

    const topic = `secure/key-change/${id}`;
    const sub = spawn(process.execPath, [MAIN, 'sub', '-h', '127.0.0.1', '-p', String(b.port), '--key-file', b.keyFile(id), '-t', topic, '-C', '1', '-q', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let printed = '';
    sub.stdout!.on('data', (d: Buffer) => (printed += d.toString()));
    const subDone = withTimeout(new Promise<number | null>((resolve) => sub.on('close', resolve)), 3 * WAIT_MS, 'sub');
    await waitUntil(() => b.broker.sessions.get(id)?.subscriptions.has(topic) === true, 'the sub process subscribed', 3 * WAIT_MS);
    await alice.publishAsync(topic, 'after the interrupted enrolment', { qos: 1 });
    assert.equal(await subDone, 0);
    assert.equal(printed, 'after the interrupted enrolment\n');
  });
});
