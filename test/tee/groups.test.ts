// Recipient groups: one trusted wrap per message whatever the number of subscribers, with the
// same guarantees as a per-recipient re-wrap (policy checked inside, every byte authenticated).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  NotForMeError, ProtectedMessageError, ReplayWindow, ReplayedMessageError, TamperedMessageError, WrongTopicError, buildRotationRequest,
  generateClientKeyBytes, openEnvelope, verifyKeyResponse, type ClientKey,
} from '../../src/client/crypto/index.js';
import { signPolicy, signRevocation } from '../../src/protect/operator.js';
import { GROUP_ID_BYTES, KIND_GROUP, joinEnvelope, parseHeader, type EnvelopeParts } from '../../src/envelope/envelope-layout.js';
import type { FormedGroup } from '../../src/tee-client/host.js';
import { TeeError, codeFromNumber } from '../../src/envelope/errors.js';
import { makeFixture, type Enrolled, type Fixture } from '../helpers/tee/fixture.js';
import { publish, refusedUnchanged } from '../helpers/tee/publishing.js';

let f: Fixture;
let alice: Enrolled;
let bob: Enrolled;
let carol: Enrolled;
let dave: Enrolled;
const T = 'home/door';
let nextHandle = 1;

before(async () => {
  f = await makeFixture('inline');
  alice = await f.enrol('alice');
  bob = await f.enrol('bob');
  carol = await f.enrol('carol');
  dave = await f.enrol('dave');
  await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['home/#'] }, { identity: 'carol', read: ['secret/#'] }] }), 1));
});
after(() => f.dispose());

/** The envelope the broker sends `member` (index in the group's member list). */
function envelopeFor(part: Uint8Array, group: FormedGroup, member: number, m: EnvelopeParts): Uint8Array {
  const own = group.members[member]!.header;
  assert.ok(own, `member ${member} refused: ${group.members[member]!.refusal}`);
  return joinEnvelope(Buffer.concat([part, own]), m.payload);
}

function open(who: { identity: string; key: ClientKey }, envelope: Uint8Array, topic = T, replay?: ReplayWindow) {
  return openEnvelope({ key: who.key, identity: who.identity, topic, envelope, replay });
}

test('every member of a group opens a message wrapped once for the group; the trusted work per message does not grow with the members', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['bob', 'carol', 'dave']);
  assert.equal(group.id.length, GROUP_ID_BYTES);
  const before = await f.tee.stats();
  for (let seq = 1; seq <= 5; seq++) {
    const m = await publish(alice, T, `open ${seq}`, seq);
    const part = await f.tee.groupRewrap(handle, m.header, T, 'alice');
    assert.deepEqual(Buffer.from(part.subarray(part.length - GROUP_ID_BYTES)), Buffer.from(group.id), 'the shared part ends with the group id');
    for (const [i, who] of [bob, carol, dave].entries()) {
      const env = envelopeFor(part, group, i, m);
      assert.equal(parseHeader(Buffer.from(env.subarray(2, 2 + ((env[0]! << 8) | env[1]!)))).kind, KIND_GROUP);
      const opened = await open(who, env);
      assert.deepEqual([opened.sender, opened.seq, new TextDecoder().decode(opened.payload)], ['alice', seq, `open ${seq}`]);
    }
  }
  const after = await f.tee.stats();
  assert.equal(after.rewrapCalls - before.rewrapCalls, 5, 'one trusted call per message');
  assert.equal(after.rewrapped - before.rewrapped, 0, 'no per-recipient wrap per message: the members were wrapped at formation');
  assert.equal(after.groupsFormed - before.groupsFormed, 0);
});

test('members the policy does not let read the topic, revoked or unknown ones get no member part, and the others still do', async () => {
  await f.enrol('rita');
  await f.tee.revoke(signRevocation(f.operator, 'rita'));
  const secret = await f.tee.formGroup(nextHandle++, 'secret/plan', ['bob', 'carol']);
  assert.deepEqual(secret.members.map((r) => r.refusal ?? 'ok'), ['read-denied', 'ok']);
  const home = await f.tee.formGroup(nextHandle++, T, ['rita', 'mallory', '', 'bob']);
  assert.deepEqual(home.members.map((r) => r.refusal ?? 'ok'), ['recipient-revoked', 'recipient-unknown', 'recipient-bad-identity', 'ok']);
});

test('a re-wrap pipelined right behind the formation of its group, without waiting for it, finds the group', async () => {
  const handle = nextHandle++;
  const m = await publish(alice, T, 'pipelined', 100);
  const [group, part] = await Promise.all([f.tee.formGroup(handle, T, ['bob']), f.tee.groupRewrap(handle, m.header, T, 'alice')]);
  assert.equal(new TextDecoder().decode((await open(bob, envelopeFor(part, group, 0, m))).payload), 'pipelined');
});

test('an unknown handle or a group formed for another topic is refused as group-unknown, changing nothing', async () => {
  const m = await publish(alice, T, 'x', 200);
  await refusedUnchanged(f, 'group-unknown', () => f.tee.groupRewrap(999_999, m.header, T, 'alice'));
  const other = nextHandle++;
  await f.tee.formGroup(other, 'home/window', ['bob']);
  await refusedUnchanged(f, 'group-unknown', () => f.tee.groupRewrap(other, m.header, T, 'alice'));
});

test('a group does not bypass the sender checks of a re-wrap', async () => {
  const handle = nextHandle++;
  await f.tee.formGroup(handle, T, ['bob']);
  const m = await publish(alice, T, 'x', 300);
  await refusedUnchanged(f, 'wrong-topic', async () => {
    await f.tee.formGroup(handle + 1000, 'home/window', ['bob']);
    return f.tee.groupRewrap(handle + 1000, m.header, 'home/window', 'alice');
  });
  await refusedUnchanged(f, 'sender-mismatch', () => f.tee.groupRewrap(handle, m.header, T, 'bob'));
  const flipped = Buffer.from(m.header);
  flipped[flipped.length - 1]! ^= 1;
  await refusedUnchanged(f, 'header-auth-failed', () => f.tee.groupRewrap(handle, flipped, T, 'alice'));
});

test('two publishers taking turns on one group each get their own checks; a header of one never passes as the other\'s', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['dave']);
  for (let round = 0; round < 3; round++) {
    for (const [who, seq] of [[alice, 700 + round], [bob, 710 + round]] as const) {
      const m = await publish(who, T, `${who.identity} ${round}`, seq);
      const opened = await open(dave, envelopeFor(await f.tee.groupRewrap(handle, m.header, T, who.identity), group, 0, m));
      assert.deepEqual([opened.sender, new TextDecoder().decode(opened.payload)], [who.identity, `${who.identity} ${round}`]);
      // the other publisher's stream is known by now: it still does not take this header
      await refusedUnchanged(f, 'sender-mismatch', () => f.tee.groupRewrap(handle, m.header, T, who === alice ? 'bob' : 'alice'));
    }
  }
  const m = await publish(alice, T, 'late', 720);
  const altered = Buffer.from(m.header);
  altered[3]! ^= 1; // the sequence number, bound into the wrap's associated data
  await refusedUnchanged(f, 'header-auth-failed', () => f.tee.groupRewrap(handle, altered, T, 'alice'));
  const wrongTag = Buffer.from(m.header);
  wrongTag[12]! ^= 1;
  await refusedUnchanged(f, 'wrong-topic', () => f.tee.groupRewrap(handle, wrongTag, T, 'alice'));
});

test('re-wraps asked for in one turn cross as one batch, and each message gets its own answer or refusal', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['bob']);
  const ms = await Promise.all([800, 801, 802].map((seq) => publish(alice, T, `batched ${seq}`, seq)));
  const before = await f.tee.stats();
  // no await between the calls: one batch of five messages, two of them refused
  const answers = await Promise.allSettled([
    f.tee.groupRewrap(handle, ms[0]!.header, T, 'alice'),
    f.tee.groupRewrap(handle, ms[1]!.header, T, 'bob'),
    f.tee.groupRewrap(999_998, ms[1]!.header, T, 'alice'),
    f.tee.groupRewrap(handle, ms[1]!.header, T, 'alice'),
    f.tee.groupRewrap(handle, ms[2]!.header, T, 'alice'),
  ]);
  const after = await f.tee.stats();
  assert.equal(after.calls - before.calls, 2, 'one command for the five messages (and one for the stats)');
  assert.equal(after.rewrapCalls - before.rewrapCalls, 5);
  assert.deepEqual(answers.map((a) => (a.status === 'fulfilled' ? 'ok' : (a.reason as TeeError).code)), ['ok', 'sender-mismatch', 'group-unknown', 'ok', 'ok']);
  for (const [i, k] of [[0, 0], [3, 1], [4, 2]] as const) {
    const part = (answers[i] as PromiseFulfilledResult<Uint8Array>).value;
    assert.equal(new TextDecoder().decode((await open(bob, envelopeFor(part, group, 0, ms[k]!))).payload), `batched ${800 + k}`);
  }
});

test('a batch whose first messages take the fast path and a later one is refused still answers each message in order', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['bob']);
  // warm the stream: alice is then the group's latest sender and her key is cached
  await f.tee.groupRewrap(handle, (await publish(alice, T, 'warm', 850)).header, T, 'alice');
  const ms = await Promise.all([851, 852, 853, 854].map((seq) => publish(alice, T, `fast ${seq}`, seq)));
  const tampered = Buffer.from(ms[2]!.header);
  tampered[tampered.length - 1]! ^= 1; // the last byte of the wrapped data key's tag
  const before = await f.tee.stats();
  const answers = await Promise.allSettled([
    f.tee.groupRewrap(handle, ms[0]!.header, T, 'alice'),
    f.tee.groupRewrap(handle, ms[1]!.header, T, 'alice'),
    f.tee.groupRewrap(handle, tampered, T, 'alice'),
    f.tee.groupRewrap(handle, ms[3]!.header, T, 'alice'),
  ]);
  const after = await f.tee.stats();
  assert.equal(after.calls - before.calls, 2, 'one command for the four messages (and one for the stats)');
  assert.equal(after.rewrapCalls - before.rewrapCalls, 4);
  assert.deepEqual(answers.map((a) => (a.status === 'fulfilled' ? 'ok' : (a.reason as TeeError).code)), ['ok', 'ok', 'header-auth-failed', 'ok']);
  for (const k of [0, 1, 3]) {
    const part = (answers[k] as PromiseFulfilledResult<Uint8Array>).value;
    assert.equal(new TextDecoder().decode((await open(bob, envelopeFor(part, group, 0, ms[k]!))).payload), `fast ${851 + k}`);
  }
});

test('a batch interleaving the streams of several groups, some with one message, re-wraps every message for its own group', async () => {
  const topics = ['home/a', 'home/b', 'home/c'];
  const groups = new Map<string, { handle: number; group: FormedGroup }>();
  for (const [i, topic] of topics.entries()) {
    const handle = nextHandle++;
    groups.set(topic, { handle, group: await f.tee.formGroup(handle, topic, ['bob']) });
    await f.tee.groupRewrap(handle, (await publish(alice, topic, 'warm', 900 + i)).header, topic, 'alice');
  }
  // a and b carry several messages each (their keystreams are made ahead), c one
  const order = ['home/a', 'home/b', 'home/a', 'home/c', 'home/b', 'home/a'];
  const ms = await Promise.all(order.map((topic, k) => publish(alice, topic, `${topic} ${k}`, 910 + k)));
  const parts = await Promise.all(order.map((topic, k) => f.tee.groupRewrap(groups.get(topic)!.handle, ms[k]!.header, topic, 'alice')));
  for (const [k, topic] of order.entries()) {
    const opened = await open(bob, envelopeFor(parts[k]!, groups.get(topic)!.group, 0, ms[k]!), topic);
    assert.equal(new TextDecoder().decode(opened.payload), `${topic} ${k}`);
  }
});

test('a malformed batch is refused whole as bad-request before any message of it is worked on', async (t) => {
  const { Dispatcher } = await import('../../src/tee/commands.js');
  const { CMD } = await import('../../src/envelope/wire.js');
  const { Reader, Writer } = await import('../../src/envelope/bytes.js');
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { dirname, join } = await import('node:path');
  const { fileURLToPath } = await import('node:url');
  const blobs = new Map<string, Uint8Array>();
  const d = new Dispatcher({ get: async (n) => blobs.get(n), put: async (n, b) => void blobs.set(n, b), delete: async (n) => void blobs.delete(n) }, join(dirname(fileURLToPath(import.meta.url)), '../../src/tee'));
  const run = async (command: number, params: Uint8Array): Promise<Uint8Array | string> => {
    try {
      return await d.handle(command, params);
    } catch (e) {
      return (e as TeeError).code;
    }
  };
  const m = await publish(alice, T, 'one', 900);
  const entry = (header: Uint8Array): Uint8Array => new Writer().u32(1).str16(T).str8('alice').bytes16(header).finish();
  const count = (n: number): Uint8Array => new Writer().u16(n).finish();
  const cat = (...parts: Uint8Array[]): Buffer => Buffer.concat(parts);
  const good = entry(m.header);
  assert.equal(await run(CMD.groupRewrapBatch, cat(count(1), good)), 'not-initialised');
  const secretDir = mkdtempSync(join(tmpdir(), 'mqt-tz-batch-'));
  t.after(() => rmSync(secretDir, { recursive: true, force: true }));
  assert.ok((await run(CMD.init, new Writer().u32(16).str16(secretDir).u8(0).u8(0).raw(f.operator.publicKey).finish())) instanceof Uint8Array);
  for (const params of [cat(count(2), good), cat(count(1), good, Uint8Array.of(0)), cat(count(1), good.subarray(0, good.length - 1)), count(5000), Uint8Array.of(0)]) {
    assert.equal(await run(CMD.groupRewrapBatch, params), 'bad-request', `${params.length}-byte batch`);
  }
  const rewrapCalls = async (): Promise<number> => {
    const r = new Reader((await run(CMD.stats, new Uint8Array(0))) as Uint8Array);
    r.u64(); // calls
    return r.u64();
  };
  assert.equal(await rewrapCalls(), 0, 'no message of a malformed batch was worked on');
  // a well-formed batch naming a group this component never formed: answered, that message refused
  const answer = await run(CMD.groupRewrapBatch, cat(count(1), good));
  assert.ok(answer instanceof Uint8Array);
  const r = new Reader(answer);
  assert.deepEqual([r.u16(), codeFromNumber(r.u8())], [1, 'group-unknown']);
  assert.equal(await rewrapCalls(), 1);
});

test('after a revocation, a policy change or a key rotation every older group is stale until formed again, and the new group leaves out who lost access', async () => {
  const g = nextHandle++;
  const m = await publish(alice, T, 'x', 400);
  await f.tee.formGroup(g, T, ['bob', 'carol']);
  await f.tee.groupRewrap(g, m.header, T, 'alice');

  await f.enrol('eve');
  const withEve = nextHandle++;
  await f.tee.formGroup(withEve, T, ['bob', 'eve']);
  await f.tee.revoke(signRevocation(f.operator, 'eve'));
  await refusedUnchanged(f, 'group-stale', () => f.tee.groupRewrap(g, m.header, T, 'alice'));
  const again = await f.tee.formGroup(withEve, T, ['bob', 'eve']);
  assert.deepEqual(again.members.map((r) => r.refusal ?? 'ok'), ['ok', 'recipient-revoked']);
  await f.tee.groupRewrap(withEve, m.header, T, 'alice');

  await f.tee.loadPolicy(signPolicy(f.operator, JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['home/#'] }, { identity: 'carol', read: ['secret/#'] }] }), 2));
  await refusedUnchanged(f, 'group-stale', () => f.tee.groupRewrap(withEve, m.header, T, 'alice'));

  const h = nextHandle++;
  await f.tee.formGroup(h, T, ['dave']);
  const { request, pending } = await buildRotationRequest({ tee: f.teeKeys, identity: 'dave', currentKey: dave.key, newKey: generateClientKeyBytes() });
  const newKey = await verifyKeyResponse(pending, await f.tee.rotate(request));
  await assert.rejects(f.tee.groupRewrap(h, m.header, T, 'alice'), (e: Error & { code?: string }) => e.code === 'group-stale');
  const reformed = await f.tee.formGroup(h, T, ['dave']);
  const m2 = await publish(alice, T, 'after rotation', 401);
  const env = envelopeFor(await f.tee.groupRewrap(h, m2.header, T, 'alice'), reformed, 0, m2);
  assert.equal(new TextDecoder().decode((await open({ identity: 'dave', key: newKey }, env)).payload), 'after rotation');
  await assert.rejects(open(dave, env), TamperedMessageError, 'the old key no longer opens the group key');
  dave = { ...dave, key: newKey };
});

test('a bit flipped anywhere in a delivered group envelope is detected by the subscriber, even with the group key remembered', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['bob']);
  const m = await publish(alice, T, 'twenty bytes payload', 500);
  const env = envelopeFor(await f.tee.groupRewrap(handle, m.header, T, 'alice'), group, 0, m);
  await open(bob, env); // bob now remembers this group's key
  const seen = new Set<string>();
  for (let i = 0; i < env.length; i++) {
    const e = Buffer.from(env);
    e[i]! ^= 0x80 >> (i % 8);
    await assert.rejects(open(bob, e), (err: unknown) => err instanceof ProtectedMessageError && (seen.add(err.code), true), `byte ${i}`);
  }
  assert.deepEqual([...seen].sort(), ['malformed', 'not-for-me', 'tampered', 'wrong-topic']);
});

test('member parts and shared parts cannot be mixed across members, groups, messages or topics', async () => {
  const g1 = nextHandle++;
  const g2 = nextHandle++;
  const group1 = await f.tee.formGroup(g1, T, ['bob', 'carol']);
  const group2 = await f.tee.formGroup(g2, T, ['bob']);
  const m1 = await publish(alice, T, 'first', 600);
  const m2 = await publish(alice, T, 'second', 601);
  const p1 = await f.tee.groupRewrap(g1, m1.header, T, 'alice');
  const p2 = await f.tee.groupRewrap(g2, m2.header, T, 'alice');
  // carol's member part delivered to bob
  await assert.rejects(open(bob, envelopeFor(p1, group1, 1, m1)), NotForMeError);
  // bob's member part of group 2 behind the shared part of group 1
  await assert.rejects(open(bob, joinEnvelope(Buffer.concat([p1, group2.members[0]!.header!]), m1.payload)), TamperedMessageError);
  // the shared part of one message on the payload of another
  await assert.rejects(open(bob, envelopeFor(p1, group1, 0, m2)), TamperedMessageError);
  // the right envelope on another topic
  await assert.rejects(open(bob, envelopeFor(p2, group2, 0, m2), 'home/window'), WrongTopicError);
  // and the genuine ones open, once each
  const window = new ReplayWindow();
  await open(bob, envelopeFor(p1, group1, 0, m1), T, window);
  await assert.rejects(open(bob, envelopeFor(p1, group1, 0, m1), T, window), ReplayedMessageError);
});

test('a publisher\'s new stream (a restart, another counter) is re-wrapped next to its old one; another topic\'s stream part is refused as header-auth-failed', async () => {
  const handle = nextHandle++;
  const group = await f.tee.formGroup(handle, T, ['dave']);
  const streamPart = (m: EnvelopeParts): string => Buffer.from(m.header.subarray(m.header.length - 16 - 60, m.header.length - 16)).toString('hex');
  const first = await publish(alice, T, 'first stream', 900);
  const next = await publish(alice, T, 'first stream again', 901);
  // a sequence number that does not rise makes the SDK start a new stream
  const second = await publish(alice, T, 'second stream', 899);
  assert.equal(streamPart(next), streamPart(first));
  assert.notEqual(streamPart(second), streamPart(first));
  // each message twice, the streams alternating: the fast path takes the stream it knows, the
  // general path opens the other one
  for (const m of [first, next, second, first, second, next]) {
    const opened = await open(dave, envelopeFor(await f.tee.groupRewrap(handle, m.header, T, 'alice'), group, 0, m));
    assert.equal(opened.sender, 'alice');
  }
  // alice's stream on another topic, its header given this topic's tag: the stream key is bound to its topic
  const elsewhere = await publish(alice, 'home/window', 'other topic', 950);
  const moved = Buffer.from(elsewhere.header);
  moved.set(first.header.subarray(10, 18), 10);
  await refusedUnchanged(f, 'header-auth-failed', () => f.tee.groupRewrap(handle, moved, T, 'alice'));
  // this stream's part with another message's sequence tag
  const swapped = Buffer.from(next.header);
  swapped.set(first.header.subarray(first.header.length - 16), swapped.length - 16);
  await refusedUnchanged(f, 'header-auth-failed', () => f.tee.groupRewrap(handle, swapped, T, 'alice'));
});
