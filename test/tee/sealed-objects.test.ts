// A hostile host through every storage answer and every init parameter: objects missing, older,
// swapped or rolled back as a whole; the counter and the device secret; restarts asking for another
// operator, mode or build; replayed statements. Each is refused with its own error, fail closed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildEnrolmentRequest, generateClientKeyBytes } from '../../src/client/crypto/index.js';
import { createOperatorKey, signEndorsement, signModeChange, signPolicy, signRevocation } from '../../src/protect/operator.js';
import { openTrustedComponent, TeeError, type OpenOptions, type TrustedComponent } from '../../src/tee-client/host.js';
import { codeFromNumber } from '../../src/envelope/errors.js';
import { parseKeyResponse } from '../../src/envelope/messages.js';
import { makeFixture, type Fixture } from '../helpers/tee/fixture.js';
import { deliver, publish } from '../helpers/tee/publishing.js';

const T = 'home/door';

/** The fixture's component started again over the same store and state directory, as the host chooses. */
function reopen(f: Fixture, opts: Partial<OpenOptions> = {}): Promise<TrustedComponent> {
  return openTrustedComponent({ backend: 'inline', store: f.store, stateDir: join(f.dir, 'tee'), onWarning: () => undefined, ...opts });
}

function refusedWith(code: string, names?: string): (e: unknown) => boolean {
  return (e: unknown) => e instanceof TeeError && e.code === code && (names === undefined || e.detail.includes(names));
}

const counterPath = (f: Fixture): string => join(f.dir, 'tee', 'counter');
const readCounter = (f: Fixture): number => Number(readFileSync(counterPath(f)).readBigUInt64BE(0));
function writeCounter(f: Fixture, value: number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(value));
  writeFileSync(counterPath(f), b);
}

/** A component with every kind of sealed object: keys, used tokens, a lifted revocation, a policy and an endorsement. */
async function populated(): Promise<Fixture> {
  const f = await makeFixture('inline', { cacheSize: 2 });
  await f.enrol('alice');
  await f.enrol('bob');
  await f.enrol('rita');
  await f.tee.revoke(signRevocation(f.operator, 'rita', Date.now() - 1000));
  await f.enrol('rita'); // a token issued after the revocation lifts it
  await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['home/#'] }] }), 1));
  await f.tee.setEndorsement(signEndorsement(f.operator, await f.tee.info()));
  await f.tee.close();
  return f;
}

test('a restart with any named object missing from the store is refused as sealed-missing naming it, never as an empty default', async () => {
  const f = await populated();
  try {
    for (const object of ['tee/identity', 'tee/provisioning', 'tee/policy', 'tee/revoked', 'tee/lifted', 'tee/tokens', 'tee/endorsement']) {
      const name = f.storedName(object);
      const blob = f.store.get(name)!;
      f.store.delete(name);
      await assert.rejects(reopen(f), refusedWith('sealed-missing', object), object);
      f.store.put(name, blob);
    }
    const manifest = f.store.get('tee/manifest')!;
    f.store.delete('tee/manifest');
    await assert.rejects(reopen(f), refusedWith('sealed-missing', 'tee/manifest'));
    f.store.put('tee/manifest', manifest);
    const again = await reopen(f);
    assert.equal((await again.info()).fingerprint, f.info.fingerprint, 'control: the restored store starts');
    await again.close();
  } finally {
    await f.dispose();
  }
});

test('a missing key blob refuses its identity by name; the manifest, not the storage answer, says who is enrolled', async () => {
  const f = await makeFixture('inline', { cacheSize: 1 });
  try {
    const alice = await f.enrol('alice');
    const bob = await f.enrol('bob'); // evicts alice from the cache of 1
    const aliceName = f.storedName('key/alice');
    const aliceBlob = f.store.get(aliceName)!;
    f.store.delete(aliceName);
    const m = await publish(alice, T, 'x');
    await assert.rejects(f.tee.rewrap(m.header, T, 'alice', ['bob']), refusedWith('sealed-missing', 'key/alice'));
    const fromBob = await publish(bob, T, 'x');
    assert.deepEqual((await f.tee.rewrap(fromBob.header, T, 'bob', ['alice'])).map((r) => r.refusal), ['recipient-sealed-invalid']);
    const again = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'alice', key: generateClientKeyBytes(), token: f.token('alice') });
    assert.equal(codeFromNumber(parseKeyResponse(await f.tee.enrol(again.request)).status), 'sealed-missing', 'deleting the blob does not free the identity for someone else');
    f.store.put(aliceName, aliceBlob);
    assert.equal(new TextDecoder().decode((await deliver(f, m, T, 'alice', bob)).payload), 'x', 'control: restored, alice publishes again');
  } finally {
    await f.dispose();
  }
});

test('an older version of an object, or the whole store rolled back, is refused: sealed-invalid and state-rollback', async () => {
  const f = await makeFixture('inline');
  try {
    const alice = await f.enrol('alice');
    await f.enrol('bob');
    await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['#'] }] }), 1));
    const before = f.store.snapshot();
    const oldPolicy = f.store.get(f.storedName('tee/policy'))!;
    await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: 'alice', publish: ['#'], read: ['#'] }] }), 2)); // bob reads nothing now
    const m = await publish(alice, T, 'x');
    assert.deepEqual((await f.tee.rewrap(m.header, T, 'alice', ['bob'])).map((r) => r.refusal), ['read-denied'], 'control: policy 2 keeps bob out');
    await f.tee.close();
    const after = f.store.snapshot();

    // One object rolled back: the old policy's blob stored under the current version's name.
    const current = f.storedName('tee/policy');
    f.store.put(current, oldPolicy);
    await assert.rejects(reopen(f), refusedWith('sealed-invalid', 'tee/policy'));

    // The whole store rolled back, manifest included: older than the trusted counter.
    for (const e of f.store.snapshot()) f.store.delete(e.name);
    for (const e of before) f.store.put(e.name, e.blob);
    await assert.rejects(reopen(f), refusedWith('state-rollback', 'tee/manifest'));

    for (const e of f.store.snapshot()) f.store.delete(e.name);
    for (const e of after) f.store.put(e.name, e.blob);
    const restored = await reopen(f);
    assert.equal((await restored.info()).policySerial, 2, 'control: the current store starts with policy 2');
    await restored.close();
  } finally {
    await f.dispose();
  }
});

test('the counter and the device secret: a counter behind or ahead or either file missing refuses the start; a crash before the counter raise is recovered', async () => {
  const f = await makeFixture('inline');
  try {
    await f.enrol('alice');
    await f.enrol('bob');
    await f.tee.close();
    const n = readCounter(f);
    writeCounter(f, n - 2);
    await assert.rejects(reopen(f), refusedWith('state-rollback', 'counter was rolled back'));
    writeCounter(f, n + 1);
    await assert.rejects(reopen(f), refusedWith('state-rollback', 'the store was rolled back'));
    writeCounter(f, n - 1); // the last manifest landed, its counter raise did not (a crash)
    await (await reopen(f)).close();
    assert.equal(readCounter(f), n, 'raised at start');

    const counter = readFileSync(counterPath(f));
    rmSync(counterPath(f));
    await assert.rejects(reopen(f), refusedWith('state-incomplete', 'counter'));
    writeFileSync(counterPath(f), counter);
    const secretPath = join(f.dir, 'tee', 'device.secret');
    const secret = readFileSync(secretPath);
    rmSync(secretPath);
    await assert.rejects(reopen(f), refusedWith('state-incomplete', 'device.secret'));
    writeFileSync(secretPath, secret);
    const restored = await reopen(f);
    assert.equal(await restored.isEnrolled('alice'), true, 'control');
    await restored.close();

    // Both gone: a new component, which no client pinned: another fingerprint, and nobody enrolled.
    rmSync(join(f.dir, 'tee'), { recursive: true });
    await assert.rejects(reopen(f), refusedWith('not-provisioned'), 'an empty state directory needs the operator key');
    const fresh = await reopen(f, { operatorPublicKey: f.operator.publicKey });
    assert.notEqual((await fresh.info()).fingerprint, f.info.fingerprint);
    assert.equal(await fresh.isEnrolled('alice'), false);
    await fresh.close();
  } finally {
    await f.dispose();
  }
});

test('init parameters are compared with the sealed provisioning record, never adopted', async () => {
  const f = await makeFixture('inline');
  try {
    await f.tee.close();
    const other = createOperatorKey(join(f.dir, 'other.key'));
    await assert.rejects(reopen(f, { operatorPublicKey: other.publicKey }), refusedWith('operator-mismatch', Buffer.from(other.publicKey).toString('hex')));
    await assert.rejects(reopen(f, { enrolmentMode: 'open' }), refusedWith('provisioning-mismatch', 'open enrolment'));
    await assert.rejects(reopen(f, { build: 'benchmark' }), refusedWith('provisioning-mismatch', 'benchmark build'));
    const same = await reopen(f, { operatorPublicKey: f.operator.publicKey, enrolmentMode: 'token', build: 'production' });
    assert.equal((await same.info()).fingerprint, f.info.fingerprint);
    await same.close();
    const unasked = await reopen(f);
    assert.deepEqual(await unasked.info(), { ...f.info, endorsement: null }, 'without parameters: what was sealed');
    await unasked.close();
  } finally {
    await f.dispose();
  }
});

test('replayed enrolment, policy and revocation statements are refused across a restart, each with its own error', async () => {
  const f = await makeFixture('inline');
  try {
    const token = f.token('erin');
    const first = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'erin', key: generateClientKeyBytes(), token });
    assert.equal(parseKeyResponse(await f.tee.enrol(first.request)).status, 0);
    const policy3 = signPolicy(f.operator, '{"rules":[]}', 3);
    await f.tee.loadPolicy(signPolicy(f.operator, '{"rules":[]}', 5));
    const revocation = signRevocation(f.operator, 'erin', Date.now() - 1000);
    await f.tee.revoke(revocation);
    await f.enrol('erin'); // re-enrolled with a token issued after the revocation
    await f.tee.close();
    const again = await reopen(f);
    const status = async (request: Uint8Array): Promise<string> => codeFromNumber(parseKeyResponse(await again.enrol(request)).status);
    assert.equal(await status(first.request), 'token-replayed');
    await assert.rejects(again.loadPolicy(policy3), refusedWith('policy-rollback'));
    await assert.rejects(again.revoke(revocation), refusedWith('revocation-replayed'));
    assert.equal(await again.isEnrolled('erin'), true, 'the replayed revocation changed nothing');
    await again.revoke(signRevocation(f.operator, 'erin'));
    assert.equal(await again.isEnrolled('erin'), false, 'control: a new revocation applies');
    await again.close();
  } finally {
    await f.dispose();
  }
});

test('deny by default: a token without grants allows nothing; token grants allow only their filters; a loaded policy replaces them wholly', async () => {
  const f = await makeFixture('inline');
  try {
    const nobody = await f.enrol('nobody', { publish: [], read: [] });
    const alice = await f.enrol('alice', { publish: ['home/#'], read: [] });
    await f.enrol('bob', { publish: [], read: ['home/door'] });
    await assert.rejects(f.tee.rewrap((await publish(nobody, T, 'x')).header, T, 'nobody', []), refusedWith('publish-denied'));
    await assert.rejects(f.tee.rewrap((await publish(alice, 'work/x', 'x')).header, 'work/x', 'alice', []), refusedWith('publish-denied'));
    const m = await publish(alice, T, 'x');
    assert.deepEqual((await f.tee.rewrap(m.header, T, 'alice', ['bob', 'nobody', 'alice'])).map((r) => r.refusal ?? 'ok'), ['ok', 'read-denied', 'read-denied']);
    await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: 'nobody', publish: ['#'], read: ['#'] }] }), 1));
    assert.deepEqual((await f.tee.rewrap(m.header, T, 'alice', ['bob']).catch((e: TeeError) => e.code)), 'publish-denied', 'the policy names no rule for alice: her grants no longer count');
    const n = await publish(nobody, T, 'y');
    assert.deepEqual((await f.tee.rewrap(n.header, T, 'nobody', ['bob', 'nobody'])).map((r) => r.refusal ?? 'ok'), ['read-denied', 'ok']);
  } finally {
    await f.dispose();
  }
});

test('concurrent enrolments share commits and the same identity enrols once', async () => {
  const f = await makeFixture('inline');
  try {
    const ids = Array.from({ length: 40 }, (_, i) => `p-${i}`);
    const requests = await Promise.all([...ids, 'p-0'].map(async (id) => (await buildEnrolmentRequest({ tee: f.teeKeys, identity: id, key: generateClientKeyBytes(), token: f.token(id) })).request));
    const counterBefore = readCounter(f);
    const statuses = (await Promise.all(requests.map((r) => f.tee.enrol(r)))).map((r) => parseKeyResponse(r).status);
    assert.equal(statuses.filter((s) => s === 0).length, 40, 'every identity enrolled');
    assert.deepEqual(statuses.filter((s) => s !== 0).map(codeFromNumber), ['already-enrolled'], 'one of the two p-0 enrolments');
    assert.ok(readCounter(f) - counterBefore < 40, `${readCounter(f) - counterBefore} commits for 40 enrolments`);
    for (const id of ids) assert.equal(await f.tee.isEnrolled(id), true, id);
  } finally {
    await f.dispose();
  }
});

test('an operator-signed mode statement switches the enrolment mode and the fingerprint; a forged, foreign or replayed one is refused', async () => {
  const f = await makeFixture('inline');
  const other = await makeFixture('inline');
  try {
    const toOpen = signModeChange(f.operator, f.info, 'open', Date.now() - 1000);
    await assert.rejects(f.tee.changeMode(signModeChange(other.operator, f.info, 'open')), refusedWith('mode-invalid', 'signature'));
    await assert.rejects(f.tee.changeMode(signModeChange(f.operator, other.info, 'open')), refusedWith('mode-invalid', 'another trusted component'));
    await f.tee.changeMode(toOpen);
    const open = await f.tee.info();
    assert.equal(open.openEnrolment, true);
    assert.notEqual(open.fingerprint, f.info.fingerprint, 'pinned clients notice');
    const tokenless = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'dev', key: generateClientKeyBytes() });
    assert.equal(parseKeyResponse(await f.tee.enrol(tokenless.request)).status, 0, 'enrolment without a token now');
    await f.tee.changeMode(signModeChange(f.operator, f.info, 'token'));
    await f.tee.close();
    await assert.rejects(reopen(f, { enrolmentMode: 'open' }), refusedWith('provisioning-mismatch'), 'the switched mode is sealed');
    const again = await reopen(f, { enrolmentMode: 'token' });
    assert.equal((await again.info()).fingerprint, f.info.fingerprint, 'back in token mode: the first fingerprint again');
    await assert.rejects(again.changeMode(toOpen), refusedWith('mode-replayed'), 'a recorded statement does not switch it back');
    const late = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'dev2', key: generateClientKeyBytes() });
    assert.equal(codeFromNumber(parseKeyResponse(await again.enrol(late.request)).status), 'token-missing');
    await again.close();
  } finally {
    await f.dispose();
    await other.dispose();
  }
});

test('a second instance over the same state makes the other one\'s writes fail as state-conflict instead of losing its commits', async () => {
  const f = await makeFixture('inline');
  try {
    await f.enrol('alice');
    const second = await reopen(f); // e.g. an operator command given --data while the broker runs
    await second.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: 'alice', publish: ['#'], read: ['#'] }] }), 1));
    const late = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'bob', key: generateClientKeyBytes(), token: f.token('bob') });
    assert.equal(codeFromNumber(parseKeyResponse(await f.tee.enrol(late.request)).status), 'state-conflict');
    await second.close();
    await f.tee.close();
    const restarted = await reopen(f);
    assert.deepEqual([(await restarted.info()).policySerial, await restarted.isEnrolled('bob')], [1, false], 'the policy commit was kept');
    await restarted.close();
  } finally {
    await f.dispose();
  }
});
