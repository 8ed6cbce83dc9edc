import { test } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHash, randomBytes } from 'node:crypto';
import {
  EnrolmentError, ReplayWindow, buildEnrolmentRequest, buildRotationRequest, generateClientKeyBytes, openEnvelope, verifyEndorsement, verifyKeyResponse,
} from '../../src/client/crypto/index.js';
import { createOperatorKey, issueToken, signEndorsement, signOperatorChange, signPolicy, signRevocation } from '../../src/protect/operator.js';
import { Reader, Writer } from '../../src/envelope/bytes.js';
import { Dispatcher } from '../../src/tee/commands.js';
import { CMD } from '../../src/envelope/wire.js';
import { measureTrustedCode } from '../../src/tee/core.js';
import { joinEnvelope } from '../../src/envelope/envelope-layout.js';
import { TeeError } from '../../src/envelope/errors.js';
import { BUILD_BENCHMARK, BUILD_PRODUCTION, MODE_TOKEN, parseKeyResponse, readGrants } from '../../src/envelope/messages.js';
import { Sealer } from '../../src/tee/seal.js';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { codeFromNumber } from '../../src/envelope/errors.js';
import { ALL_GRANTS, makeFixture } from '../helpers/tee/fixture.js';
import { deliver, publish, refusedUnchanged, text } from '../helpers/tee/publishing.js';

const TEE_DIST = join(dirname(fileURLToPath(import.meta.url)), '../../src/tee');
const statusOf = (response: Uint8Array): string => codeFromNumber(parseKeyResponse(response).status);

test('info reports the keys, the measurement of the trusted code, a fingerprint over keys, operator, mode and build, and the operator endorsement once stored', async () => {
  const f = await makeFixture();
  try {
    const i = f.info;
    assert.match(i.x25519, /^[0-9a-f]{64}$/);
    assert.match(i.ed25519, /^[0-9a-f]{64}$/);
    assert.equal(i.measurement, measureTrustedCode(TEE_DIST).toString('hex'));
    assert.deepEqual([i.openEnrolment, i.build], [false, 'production']);
    const fp = createHash('sha256').update('mqt-tz/1 fingerprint').update(Buffer.from(i.x25519, 'hex')).update(Buffer.from(i.ed25519, 'hex'))
      .update(f.operator.publicKey).update(Uint8Array.of(0, 0)).digest('hex');
    assert.equal(i.fingerprint, fp);
    assert.equal(i.operatorPublicKey, Buffer.from(f.operator.publicKey).toString('hex'));
    assert.equal(i.endorsement, null, 'nothing endorses the component by itself');
    const issuedAt = Date.now() - 5_000;
    await f.tee.setEndorsement(signEndorsement(f.operator, i, issuedAt));
    const endorsed = await f.tee.info();
    assert.equal(await verifyEndorsement(endorsed, endorsed.operatorPublicKey), issuedAt, 'the endorsement verifies and carries the time it was signed');
    await assert.rejects(verifyEndorsement(endorsed, Buffer.alloc(32, 1).toString('hex')), (e: unknown) => e instanceof EnrolmentError && e.code === 'endorsement-invalid');
  } finally {
    await f.dispose();
  }
});

test('enrolment stores only a sealed key, answers with a verifiable key confirmation and makes the identity enrolled', async () => {
  const f = await makeFixture();
  try {
    assert.equal(await f.tee.isEnrolled('alice'), false);
    const before = Date.now();
    const alice = await f.enrol('alice');
    assert.equal(await f.tee.isEnrolled('alice'), true);
    const name = f.storedName('key/alice');
    const version = Number(name.slice('key/alice#'.length));
    const blob = f.store.get(name)!;
    assert.equal(Buffer.from(blob).indexOf(Buffer.from(alice.raw)), -1, 'stored blob does not contain the key');
    // The host holds `u8 seal version 1 | nonce(12) | sealed record | tag(16)`; the record, opened
    // with the device secret only the trusted side reads, is `u32 generation | u64 enrolled at (ms) | key(32) | grants`.
    const sealer = new Sealer(readFileSync(join(f.dir, 'tee', 'device.secret')));
    const record = sealer.unseal('key/alice', version, blob);
    const grantsLength = 2 * (1 + 2 + '#'.length);
    assert.equal(record.length, 4 + 8 + 32 + grantsLength);
    assert.equal(blob.length, 1 + 12 + record.length + 16);
    assert.equal(blob[0], 1);
    const r = new Reader(record);
    assert.equal(r.u32(), 1, 'generation 1: a first enrolment');
    const enrolledAt = r.u64();
    assert.ok(enrolledAt >= before && enrolledAt <= Date.now(), `enrolled at ${enrolledAt}`);
    assert.deepEqual(Buffer.from(r.take(32)), Buffer.from(alice.raw));
    assert.deepEqual(readGrants(r), ALL_GRANTS);
    r.end('key record');
    for (const [other, v] of [['key/bob', version], ['key/alice', version - 1], ['key/alice', version + 1]] as const) {
      assert.throws(() => sealer.unseal(other, v, blob), (e: unknown) => e instanceof TeeError && e.code === 'sealed-invalid', `opened as ${other}#${v}`);
    }
    assert.equal((await f.tee.stats()).enrolments, 1);
  } finally {
    await f.dispose();
  }
});

test('enrolment refusals are signed responses naming the reason: missing, expired or foreign token, already enrolled, malformed', async () => {
  const f = await makeFixture();
  try {
    await f.enrol('alice');
    const attempt = async (identity: string, token?: Uint8Array): Promise<string> => {
      const { request, pending } = await buildEnrolmentRequest({ tee: f.teeKeys, identity, key: generateClientKeyBytes(), token });
      const response = await f.tee.enrol(request);
      await assert.rejects(verifyKeyResponse(pending, response), (e: unknown) => e instanceof EnrolmentError && e.code === 'refused');
      return statusOf(response);
    };
    assert.equal(await attempt('bob'), 'token-missing');
    assert.equal(await attempt('bob', issueToken(f.operator, 'bob', 1, ALL_GRANTS, Date.now() - 10_000)), 'token-expired');
    assert.equal(await attempt('bob', f.token('carol')), 'token-identity-mismatch');
    assert.equal(await attempt('alice', f.token('alice')), 'already-enrolled');
    assert.equal(statusOf(await f.tee.enrol(randomBytes(40))), 'enrol-malformed');
    assert.equal(await f.tee.isEnrolled('bob'), false);
  } finally {
    await f.dispose();
  }
});

test('an enrolment request sent again gets the same signed answer (also after a restart) and enrols nothing new; once revoked, the repeat is refused', async () => {
  const f = await makeFixture();
  try {
    const raw = generateClientKeyBytes();
    const { request, pending } = await buildEnrolmentRequest({ tee: f.teeKeys, identity: 'alice', key: raw, token: f.token('alice') });
    const answer = await f.tee.enrol(request);
    await verifyKeyResponse(pending, answer);
    const enrolled = f.storeState();
    assert.deepEqual(await f.tee.enrol(request), answer);
    assert.equal((await f.tee.stats()).enrolments, 1);
    await f.tee.close();
    const { openTrustedComponent } = await import('../../src/tee-client/host.js');
    const restarted = await openTrustedComponent({ backend: 'inline', store: f.store, stateDir: join(f.dir, 'tee'), operatorPublicKey: f.operator.publicKey });
    try {
      assert.deepEqual(await restarted.enrol(request), answer, 'answered from the sealed key record, not from memory');
      assert.equal(f.storeState(), enrolled);
      await restarted.revoke(signRevocation(f.operator, 'alice'));
      assert.equal(statusOf(await restarted.enrol(request)), 'token-replayed');
    } finally {
      await restarted.close();
    }
  } finally {
    await f.dispose().catch(() => undefined);
  }
});

test('open enrolment accepts a request without a token, warns at start and shows in info and fingerprint', async () => {
  const warnings: string[] = [];
  const { openDataTee, createOperatorKey } = await import('../../src/protect/operator.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const dir = mkdtempSync(join((await import('node:os')).tmpdir(), 'mqt-tz-open-'));
  const operator = createOperatorKey(join(dir, 'operator.key'));
  const d = await openDataTee(dir, { backend: 'inline', enrolmentMode: 'open', operatorPublicKey: operator.publicKey, onWarning: (m) => warnings.push(m) });
  try {
    assert.match(warnings.join(), /OPEN ENROLMENT/);
    const info = await d.tee.info();
    assert.equal(info.openEnrolment, true);
    const { pinTee, fingerprintOf } = await import('../../src/client/crypto/index.js');
    assert.equal(await fingerprintOf({ ...info, openEnrolment: false }) === info.fingerprint, false, 'the mode is part of the fingerprint');
    const { request, pending } = await buildEnrolmentRequest({ tee: await pinTee(info, { fingerprint: info.fingerprint, allowOpenEnrolment: true }), identity: 'dev', key: generateClientKeyBytes() });
    await verifyKeyResponse(pending, await d.tee.enrol(request));
    assert.equal(await d.tee.isEnrolled('dev'), true);
  } finally {
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('rotation with proof of the current key replaces it: new headers work, headers under the old key are refused; the same request again gets the same answer', async () => {
  const f = await makeFixture();
  try {
    const alice = await f.enrol('alice');
    const bob = await f.enrol('bob');
    const oldMessage = await publish(alice, 't', 'old');
    const newRaw = generateClientKeyBytes();
    const { request, pending } = await buildRotationRequest({ tee: f.teeKeys, identity: 'alice', currentKey: alice.key, newKey: newRaw });
    const answer = await f.tee.rotate(request);
    const newKey = await verifyKeyResponse(pending, answer);
    await refusedUnchanged(f, 'header-auth-failed', () => f.tee.rewrap(oldMessage.header, 't', 'alice', ['bob']));
    const m = await deliver(f, await publish({ ...alice, key: newKey }, 't', 'new'), 't', 'alice', bob);
    assert.equal(new TextDecoder().decode(m.payload), 'new');
    // The same rotation again (its answer lost) gets the same answer and changes nothing; another
    // rotation with a proof under the replaced key is refused.
    const before = f.storeState();
    assert.deepEqual(await f.tee.rotate(request), answer);
    assert.equal(f.storeState(), before);
    const stale = await buildRotationRequest({ tee: f.teeKeys, identity: 'alice', currentKey: alice.key, newKey: generateClientKeyBytes() });
    assert.equal(statusOf(await f.tee.rotate(stale.request)), 'rotate-proof-invalid');
    const stranger = await buildRotationRequest({ tee: f.teeKeys, identity: 'zed', currentKey: alice.key, newKey: newRaw });
    assert.equal(statusOf(await f.tee.rotate(stranger.request)), 'unknown-identity');
    assert.equal((await f.tee.stats()).rotations, 1);
  } finally {
    await f.dispose();
  }
});

test('revocation removes the key from cache and store at once; a token issued later enrols again', async () => {
  const f = await makeFixture();
  try {
    const alice = await f.enrol('alice');
    const bob = await f.enrol('bob');
    const parts = await publish(alice, 't', 'x');
    await f.tee.revoke(signRevocation(f.operator, 'bob'));
    assert.deepEqual(f.store.snapshot().filter((e) => e.name.startsWith('key/bob#')), [], 'no version of bob\'s key is left in the store');
    assert.equal(await f.tee.isEnrolled('bob'), false);
    const [r] = await f.tee.rewrap(parts.header, 't', 'alice', ['bob']);
    assert.equal(r!.refusal, 'recipient-revoked');
    await f.tee.revoke(signRevocation(f.operator, 'alice'));
    await refusedUnchanged(f, 'revoked-sender', () => f.tee.rewrap(parts.header, 't', 'alice', []));
    const again = await f.enrol('bob');
    assert.equal(await f.tee.isEnrolled('bob'), true);
    assert.notDeepEqual(again.raw, bob.raw);
    assert.equal((await f.tee.stats()).revocations, 2);
  } finally {
    await f.dispose();
  }
});

test('a loaded policy limits publishing and reading per identity, and survives a restart', async () => {
  const f = await makeFixture();
  try {
    const alice = await f.enrol('alice');
    await f.enrol('bob');
    await f.enrol('carol');
    const policy = { rules: [{ identity: 'alice', publish: ['home/#'] }, { identity: 'bob', read: ['home/+/temp'] }, { identity: '*', read: ['public/#'] }] };
    await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify(policy), 5));
    assert.equal((await f.tee.info()).policySerial, 5);
    const res = await f.tee.rewrap((await publish(alice, 'home/kitchen/temp', 'x')).header, 'home/kitchen/temp', 'alice', ['bob', 'carol', 'alice']);
    assert.deepEqual(res.map((r) => r.refusal ?? 'ok'), ['ok', 'read-denied', 'read-denied']);
    await refusedUnchanged(f, 'publish-denied', async () => f.tee.rewrap((await publish(alice, 'work/x', 'x')).header, 'work/x', 'alice', ['bob']));
    await refusedUnchanged(f, 'policy-rollback', () => f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify(policy), 5)));
    await refusedUnchanged(f, 'policy-malformed', () => f.tee.loadPolicy(signPolicy(f.operator, '{"rules":[{"identity":"a","read":["a/#/b"]}]}', 9)));
    await f.tee.close();
    const { openTrustedComponent } = await import('../../src/tee-client/host.js');
    const again = await openTrustedComponent({ backend: 'inline', store: f.store, stateDir: join(f.dir, 'tee'), operatorPublicKey: f.operator.publicKey });
    assert.equal((await again.info()).policySerial, 5);
    assert.equal((await again.info()).fingerprint, f.info.fingerprint);
    await again.close();
  } finally {
    await f.dispose().catch(() => undefined);
  }
});

test('re-wrap returns one header per allowed recipient in order, of a size independent of the payload', async () => {
  const f = await makeFixture();
  try {
    const alice = await f.enrol('alice');
    const bob = await f.enrol('bob');
    const carol = await f.enrol('carol');
    const small = await publish(alice, 'a/b', 'x'.repeat(20), 1);
    const large = await publish(alice, 'a/b', 'y'.repeat(20_000), 2);
    const rs = await f.tee.rewrap(small.header, 'a/b', 'alice', ['carol', 'nobody', 'bob']);
    const rl = await f.tee.rewrap(large.header, 'a/b', 'alice', ['carol', 'nobody', 'bob']);
    assert.deepEqual(rs.map((r) => r.recipient), ['carol', 'nobody', 'bob']);
    assert.equal(rs[1]!.refusal, 'recipient-unknown');
    assert.equal(rs[0]!.header!.length, rl[0]!.header!.length);
    for (const [r, who] of [[rl[0]!, carol], [rl[2]!, bob]] as const) {
      const m = await openEnvelope({ key: who.key, identity: who.identity, topic: 'a/b', envelope: joinEnvelope(r.header!, large.payload), replay: new ReplayWindow() });
      assert.equal(new TextDecoder().decode(m.payload), 'y'.repeat(20_000));
      assert.equal(m.sender, 'alice');
    }
    const s = await f.tee.stats();
    assert.equal(s.rewrapCalls, 2);
    assert.equal(s.rewrapped, 4);
    assert.equal(s.refusals, 2);
  } finally {
    await f.dispose();
  }
});

test('the retired commands (per-recipient re-wrap 0x08, paper-mode re-encryption 0x09, single group re-wrap 0x0d) are unknown, in a benchmark build too', async (t) => {
  const f = await makeFixture();
  try {
    const alice = await f.enrol('alice');
    const parts = await publish(alice, 'p', 'payload');
    for (const build of [BUILD_PRODUCTION, BUILD_BENCHMARK]) {
      const blobs = new Map<string, Uint8Array>();
      const d = new Dispatcher({ get: async (n) => blobs.get(n), put: async (n, b) => void blobs.set(n, b), delete: async (n) => void blobs.delete(n) }, TEE_DIST);
      const stateDir = mkdtempSync(join(tmpdir(), 'mqt-tz-retired-'));
      t.after(() => rmSync(stateDir, { recursive: true, force: true }));
      await d.handle(CMD.init, new Writer().u32(16).str16(stateDir).u8(MODE_TOKEN).u8(build).raw(f.operator.publicKey).finish());
      for (const command of [0x08, 0x09, 0x0d]) {
        const params = new Writer().str16('p').str8('alice').u16(1).str8('alice').raw(joinEnvelope(parts.header, parts.payload)).finish();
        await assert.rejects(Promise.resolve().then(() => d.handle(command, params)), (e: TeeError) => e.code === 'unknown-command', `0x${command.toString(16)}`);
      }
      const info = new Reader(await d.handle(CMD.info, new Uint8Array(0)));
      info.skip(5 * 32 + 1);
      assert.equal(info.u8(), build, "the component was provisioned as asked");
    }
  } finally {
    await f.dispose();
  }
});

test('the key cache is a bounded LRU: each miss is exactly one sealed-store read', async () => {
  const f = await makeFixture('inline', { cacheSize: 2 });
  try {
    const alice = await f.enrol('alice');
    await f.enrol('bob');
    await f.enrol('carol'); // evicts alice
    const before = await f.tee.stats();
    assert.equal(before.cacheSize, 2);
    const parts = await publish(alice, 't', 'x');
    await f.tee.rewrap(parts.header, 't', 'alice', ['carol']); // alice: miss, carol: hit
    const after = await f.tee.stats();
    assert.equal(after.cacheMisses - before.cacheMisses, 1);
    assert.equal(after.cacheHits - before.cacheHits, 1);
    assert.equal(after.storeReads - before.storeReads, 1);
    assert.equal(after.cacheSize, 2);
  } finally {
    await f.dispose();
  }
});

test('the dispatcher refuses commands before init, unknown commands and truncated parameters with their own codes', async () => {
  const d = new Dispatcher({ get: async () => undefined, put: async () => undefined, delete: async () => undefined }, TEE_DIST);
  // the per-message command answers (and refuses) synchronously, the others through a Promise
  const code = async (call: () => unknown): Promise<string> => {
    try {
      await call();
      return 'ok';
    } catch (e) {
      return (e as TeeError).code;
    }
  };
  assert.equal(await code(() => d.handle(0x02, new Uint8Array(0))), 'not-initialised');
  assert.equal(await code(() => d.handle(CMD.groupRewrapBatch, new Uint8Array(0))), 'not-initialised');
  assert.equal(await code(() => d.handle(0x01, new Uint8Array(3))), 'bad-request');
  assert.equal(await code(() => d.handle(0x7f, new Uint8Array(0))), 'unknown-command');
});

test('a string parameter that is not UTF-8 is refused as bad-request, not as an internal error', async () => {
  // found by the fuzzer: the decoder's TypeError was answered as 'internal'
  assert.throws(() => new Reader(Uint8Array.of(2, 0xc3, 0x28)).str8('identity'), (e: unknown) => e instanceof RangeError && /identity is not valid UTF-8/.test(e.message));
  const d = new Dispatcher({ get: async () => undefined, put: async () => undefined, delete: async () => undefined }, TEE_DIST);
  // init: u32 cache size, str16 state directory (here not UTF-8), u8 mode, u8 build, operator key
  const init = new Writer().u32(8).u16(2).raw(Uint8Array.of(0xc3, 0x28)).u8(0).u8(0).raw(new Uint8Array(32)).finish();
  await assert.rejects(async () => d.handle(CMD.init, init), (e: unknown) => e instanceof TeeError && e.code === 'bad-request' && /not valid UTF-8/.test(e.detail));
});

test('a different operator key than the pinned one is refused at start', async () => {
  const f = await makeFixture();
  await f.tee.close();
  try {
    const { openTrustedComponent } = await import('../../src/tee-client/host.js');
    await assert.rejects(
      openTrustedComponent({ backend: 'inline', store: f.store, stateDir: join(f.dir, 'tee'), operatorPublicKey: randomBytes(32) }),
      (e: unknown) => e instanceof TeeError && e.code === 'operator-mismatch',
    );
  } finally {
    await f.dispose().catch(() => undefined);
  }
});

test('an operator-signed change hands the component to another operator key: fingerprint changes, endorsement dropped, only the new key signs from then on, also after a restart', async (t) => {
  const f = await makeFixture();
  try {
    const before = await f.tee.info();
    await f.tee.setEndorsement(signEndorsement(f.operator, before));
    const nextDir = mkdtempSync(join(tmpdir(), 'mqt-tz-next-operator-'));
    t.after(() => rmSync(nextDir, { recursive: true, force: true }));
    const next = createOperatorKey(join(nextDir, 'op.key'));
    const change = signOperatorChange(f.operator, before, next.publicKey);
    await f.tee.changeOperator(change);
    const after = await f.tee.info();
    assert.equal(after.operatorPublicKey, Buffer.from(next.publicKey).toString('hex'));
    assert.notEqual(after.fingerprint, before.fingerprint);
    assert.equal(after.endorsement, null, 'the old operator endorsed the old fingerprint only');
    // the recorded statement no longer verifies (the old key signed it), and the old operator signs nothing more
    await assert.rejects(f.tee.changeOperator(change), (e: unknown) => e instanceof TeeError && e.code === 'operator-change-invalid');
    await assert.rejects(f.tee.loadPolicy(signPolicy(f.operator, '{"rules":[]}')), (e: unknown) => e instanceof TeeError && e.code === 'policy-invalid');
    const enrol = async (operator: typeof next, identity: string): Promise<string> => {
      const { request } = await buildEnrolmentRequest({ tee: f.teeKeys, identity, key: generateClientKeyBytes(), token: issueToken(operator, identity, 600, ALL_GRANTS) });
      const answer = await f.tee.enrol(request);
      return parseKeyResponse(answer).status === 0 ? 'ok' : statusOf(answer);
    };
    assert.equal(await enrol(f.operator, 'old-token'), 'token-invalid');
    assert.equal(await enrol(next, 'new-token'), 'ok');
    await f.tee.setEndorsement(signEndorsement(next, after));
    await f.tee.close();
    const { openTrustedComponent } = await import('../../src/tee-client/host.js');
    const open = (operatorPublicKey?: Uint8Array) => openTrustedComponent({ backend: 'inline', store: f.store, stateDir: join(f.dir, 'tee'), operatorPublicKey });
    await assert.rejects(open(f.operator.publicKey), (e: unknown) => e instanceof TeeError && e.code === 'operator-mismatch', 'a host asking for the old operator is refused');
    const restarted = await open(next.publicKey);
    try {
      const again = await restarted.info();
      assert.equal(again.fingerprint, after.fingerprint);
      assert.notEqual(again.endorsement, null, 'the endorsement by the new operator survives the restart');
    } finally {
      await restarted.close();
    }
  } finally {
    await f.dispose().catch(() => undefined);
  }
});
