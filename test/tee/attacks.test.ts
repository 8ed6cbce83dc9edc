// A hostile host: it calls the trusted component with any arguments and rewrites any bytes.
// Each attack must be refused with its own error and leave the sealed store unchanged.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  MalformedEnvelopeError, NotForMeError, ProtectedMessageError, ReplayWindow, ReplayedMessageError, TamperedMessageError, WrongTopicError,
  buildEnrolmentRequest, generateClientKeyBytes, openEnvelope,
} from '../../src/client/crypto/index.js';
import { signPolicy, signRevocation, signStatement, issueToken, type OperatorKey } from '../../src/protect/operator.js';
import { joinEnvelope } from '../../src/envelope/envelope-layout.js';
import { codeFromNumber, TeeError } from '../../src/envelope/errors.js';
import { encodeEndorsementBody, parseKeyResponse } from '../../src/envelope/messages.js';
import { makeFixture, type Enrolled, type Fixture } from '../helpers/tee/fixture.js';
import { deliver, publish, refusedUnchanged } from '../helpers/tee/publishing.js';

let f: Fixture;
let alice: Enrolled;
let bob: Enrolled;
let carol: Enrolled;
const T = 'home/door';

function forger(): OperatorKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return { privateKey, publicKey: new Uint8Array(32) };
}

before(async () => {
  f = await makeFixture('inline', { cacheSize: 2 });
  alice = await f.enrol('alice');
  bob = await f.enrol('bob');
  carol = await f.enrol('carol');
  await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['home/#'] }, { identity: 'carol', read: ['secret/#'] }] }), 1));
});
after(() => f.dispose());

test('a header moved to another topic is refused as wrong-topic', async () => {
  const m = await publish(alice, T, 'open');
  await refusedUnchanged(f, 'wrong-topic', () => f.tee.rewrap(m.header, 'home/window', 'alice', ['bob']));
});

test('a header claimed for another sender is refused as sender-mismatch; rewriting its sender field fails authentication', async () => {
  const m = await publish(alice, T, 'open');
  await refusedUnchanged(f, 'sender-mismatch', () => f.tee.rewrap(m.header, T, 'bob', ['carol']));
  const h = Buffer.from(m.header);
  const at = h.indexOf('alice');
  h[at - 1] = 3; // "alice" -> "bob" (length byte and name), lengths kept consistent by rebuilding
  const forged = Buffer.concat([h.subarray(0, at), Buffer.from('bob'), h.subarray(at + 5)]);
  await refusedUnchanged(f, 'header-auth-failed', () => f.tee.rewrap(forged, T, 'bob', ['carol']));
});

test('a retired kind-1 header (a data key wrapped per message) is refused as malformed', async () => {
  const m = await publish(alice, T, 'open');
  const kind1 = Buffer.from(m.header);
  kind1[1] = 1;
  await refusedUnchanged(f, 'malformed-header', () => f.tee.rewrap(kind1, T, 'alice', ['bob']));
});

test('truncated headers and envelopes are refused as malformed', async () => {
  const m = await publish(alice, T, 'open');
  for (const cut of [0, 1, 10, m.header.length - 1]) {
    await refusedUnchanged(f, 'malformed-header', () => f.tee.rewrap(m.header.subarray(0, cut), T, 'alice', ['bob']));
  }
  const [r] = await f.tee.rewrap(m.header, T, 'alice', ['bob']);
  const env = joinEnvelope(r!.header!, m.payload);
  for (const cut of [1, 20, env.length - m.payload.length + 3]) {
    await assert.rejects(openEnvelope({ key: bob.key, identity: 'bob', topic: T, envelope: env.subarray(0, cut) }), MalformedEnvelopeError);
  }
});

test('a bit flipped anywhere in a sender header is refused by the trusted component', async () => {
  const m = await publish(alice, T, 'open');
  const seen = new Set<string>();
  for (let i = 0; i < m.header.length; i++) {
    const h = Buffer.from(m.header);
    h[i]! ^= 1 << (i % 8);
    await assert.rejects(f.tee.rewrap(h, T, 'alice', ['bob']), (e: unknown) => e instanceof TeeError && (seen.add(e.code), true), `byte ${i}`);
  }
  assert.deepEqual([...seen].sort(), ['header-auth-failed', 'malformed-header', 'sender-mismatch', 'wrong-topic']);
});

test('a bit flipped anywhere in a delivered envelope is detected by the subscriber', async () => {
  const m = await publish(alice, T, 'twenty bytes payload');
  const [r] = await f.tee.rewrap(m.header, T, 'alice', ['bob']);
  const env = joinEnvelope(r!.header!, m.payload);
  const seen = new Set<string>();
  for (let i = 0; i < env.length; i++) {
    const e = Buffer.from(env);
    e[i]! ^= 0x80 >> (i % 8);
    await assert.rejects(openEnvelope({ key: bob.key, identity: 'bob', topic: T, envelope: e }), (err: unknown) => err instanceof ProtectedMessageError && (seen.add(err.code), true), `byte ${i}`);
  }
  assert.deepEqual([...seen].sort(), ['malformed', 'not-for-me', 'tampered', 'wrong-topic']);
});

test('a header spliced onto another message payload, or delivered on another topic, is detected by the subscriber', async () => {
  const m1 = await publish(alice, T, 'first', 10);
  const m2 = await publish(alice, T, 'second', 11);
  const [r1] = await f.tee.rewrap(m1.header, T, 'alice', ['bob']);
  await assert.rejects(openEnvelope({ key: bob.key, identity: 'bob', topic: T, envelope: joinEnvelope(r1!.header!, m2.payload) }), TamperedMessageError);
  await assert.rejects(openEnvelope({ key: bob.key, identity: 'bob', topic: 'home/window', envelope: joinEnvelope(r1!.header!, m1.payload) }), WrongTopicError);
});

test('a header re-routed to another subscriber is refused by that subscriber as not-for-me', async () => {
  const m = await publish(alice, T, 'open');
  const [r] = await f.tee.rewrap(m.header, T, 'alice', ['bob']);
  await assert.rejects(openEnvelope({ key: carol.key, identity: 'carol', topic: T, envelope: joinEnvelope(r!.header!, m.payload) }), NotForMeError);
  await assert.rejects(openEnvelope({ key: bob.key, identity: 'bob', topic: T, envelope: joinEnvelope(m.header, m.payload) }), NotForMeError);
});

test('feeding a recipient header back to re-wrap it for someone else is refused', async () => {
  const m = await publish(alice, T, 'open');
  const [r] = await f.tee.rewrap(m.header, T, 'alice', ['bob']);
  await refusedUnchanged(f, 'malformed-header', () => f.tee.rewrap(r!.header!, T, 'bob', ['carol']));
});

test('a replayed message is refused by the subscriber window', async () => {
  const m = await publish(alice, T, 'open', 42);
  const window = new ReplayWindow();
  await deliver(f, m, T, 'alice', bob, window);
  await assert.rejects(deliver(f, m, T, 'alice', bob, window), ReplayedMessageError);
});

test('recipients without a read grant, revoked or unknown are refused one by one without aborting the batch', async () => {
  await f.enrol('rita');
  await f.tee.revoke(signRevocation(f.operator, 'rita'));
  const before = f.storeState();
  const secret = await publish(alice, 'secret/plan', 'x');
  const res = await f.tee.rewrap(secret.header, 'secret/plan', 'alice', ['bob', 'carol']);
  assert.deepEqual(res.map((r) => r.refusal ?? 'ok'), ['read-denied', 'ok']);
  const home = await publish(alice, T, 'x');
  const res2 = await f.tee.rewrap(home.header, T, 'alice', ['rita', 'mallory', '', 'bob']);
  assert.deepEqual(res2.map((r) => r.refusal ?? 'ok'), ['recipient-revoked', 'recipient-unknown', 'recipient-bad-identity', 'ok']);
  assert.equal(f.storeState(), before);
});

test('an unknown sender is refused as unknown-sender', async () => {
  const m = await publish({ ...alice, identity: 'mallory' }, T, 'x');
  await refusedUnchanged(f, 'unknown-sender', () => f.tee.rewrap(m.header, T, 'mallory', ['bob']));
});

test('a forged token, a replayed enrolment (answered as the first time) and a forged revocation, policy or endorsement change nothing', async () => {
  const forged = issueToken(forger(), 'dave', 60);
  const { request } = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'dave', key: generateClientKeyBytes(), token: forged });
  const before = f.storeState();
  assert.equal(codeFromNumber(parseKeyResponse(await f.tee.enrol(request)).status), 'token-invalid');
  assert.equal(f.storeState(), before);

  const token = f.token('erin');
  const first = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'erin', key: generateClientKeyBytes(), token });
  const answer = await f.tee.enrol(first.request);
  assert.equal(parseKeyResponse(answer).status, 0);
  const enrolled = f.storeState();
  assert.deepEqual(await f.tee.enrol(first.request), answer, 'the same request gets the same signed answer, and grants nothing new');
  const second = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'erin', key: generateClientKeyBytes(), token });
  assert.equal(codeFromNumber(parseKeyResponse(await f.tee.enrol(second.request)).status), 'token-replayed');
  assert.equal(f.storeState(), enrolled);

  await refusedUnchanged(f, 'revocation-invalid', () => f.tee.revoke(signRevocation(forger(), 'bob')));
  await refusedUnchanged(f, 'policy-invalid', () => f.tee.loadPolicy(signPolicy(forger(), '{"rules":[]}', 99)));
  const flipped = Buffer.from(signPolicy(f.operator, '{"rules":[]}', 99));
  flipped[20]! ^= 1;
  await refusedUnchanged(f, 'policy-invalid', () => f.tee.loadPolicy(flipped));
  const info = f.info;
  const body = encodeEndorsementBody({ x25519: Buffer.from(info.x25519, 'hex'), ed25519: Buffer.from(info.ed25519, 'hex'), measurement: randomBytes(32), mode: 0, build: 0, issuedAt: 1 });
  await refusedUnchanged(f, 'endorsement-invalid', () => f.tee.setEndorsement(signStatement(forger(), body)));
  await refusedUnchanged(f, 'endorsement-invalid', () => f.tee.setEndorsement(signStatement(f.operator, body)));
  assert.equal(await f.tee.isEnrolled('bob'), true);
});

test('a sealed key blob swapped between two identities is refused as sealed-invalid', async () => {
  // The cache holds 2 keys: publishing as alice below must read her blob from the store.
  await f.enrol('frank');
  await f.enrol('gina');
  const aliceName = f.storedName('key/alice');
  const aliceBlob = f.store.get(aliceName)!;
  f.store.put(aliceName, f.store.get(f.storedName('key/bob'))!);
  try {
    const m = await publish(alice, T, 'x');
    await refusedUnchanged(f, 'sealed-invalid', () => f.tee.rewrap(m.header, T, 'alice', ['bob']));
    const fromFrank = await publish(await f.enrol('hank'), T, 'x');
    const [r] = await f.tee.rewrap(fromFrank.header, T, 'hank', ['alice']);
    assert.equal(r!.refusal, 'recipient-sealed-invalid');
    assert.equal(await f.tee.isEnrolled('alice'), false);
  } finally {
    f.store.put(aliceName, aliceBlob);
  }
  const m = await publish(alice, T, 'restored');
  assert.equal(new TextDecoder().decode((await deliver(f, m, T, 'alice', bob)).payload), 'restored');
});

test('a blob sealed by another device does not unseal here', async () => {
  const other = await makeFixture('inline');
  try {
    await f.enrol('ivan');
    await f.enrol('jack');
    await f.enrol('kate'); // the cache holds 2 keys: ivan's must be read from the store
    const ivanName = f.storedName('key/ivan');
    const otherIvan = await other.enrol('ivan');
    f.store.put(ivanName, other.store.get(other.storedName('key/ivan'))!);
    const m = await publish(otherIvan, T, 'x');
    await refusedUnchanged(f, 'sealed-invalid', () => f.tee.rewrap(m.header, T, 'ivan', ['bob']));
  } finally {
    await other.dispose();
  }
});
