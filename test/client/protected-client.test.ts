import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, test } from 'node:test';
import {
  EnrolmentError, importClientKey, joinEnvelope, KeyFileError, readKeyFile, sealEnvelope, splitEnvelope, type ProtectedClient,
} from '../../src/client/index.js';
import { connectProtected } from '../../src/client/index.js';
import { KIND_GROUP, parseHeader } from '../../src/envelope/envelope-layout.js';
import { inboxOf, unique } from '../helpers/broker.js';
import { Events, startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';

let b: ProtectedBroker;
before(async () => {
  b = await startProtectedBroker('inline');
});
after(() => b.close());

async function subscribed(client: ProtectedClient, filters: string[]): Promise<Events> {
  const events = new Events(client);
  const granted = await client.subscribeAsync(filters, { qos: 1 });
  assert.ok(granted.every((g) => g.qos < 0x80), `subscriptions granted: ${JSON.stringify(granted)}`);
  return events;
}

test('a client enrols on first use with a token (MQTT 5 and 3.1.1), stores its key 0600, and reconnects with the key file alone', async () => {
  const alice = unique('alice');
  const bob = unique('bob');
  await (await b.enrolled(alice)).endAsync();
  await (await b.enrolled(bob, { protocolVersion: 4 })).endAsync();
  for (const id of [alice, bob]) {
    assert.equal(statSync(b.keyFile(id)).mode & 0o777, 0o600);
    assert.equal(readKeyFile(b.keyFile(id))?.identity, id);
    assert.equal(await b.tee.isEnrolled(id), true);
  }
  const again = await b.client(alice, { teeFingerprint: undefined });
  assert.equal(again.identity, alice);
  assert.equal(again.connected, true);
});

test('protected topics are sealed on publish and opened on receive, plain topics pass through, and the wire carries only ciphertext', async () => {
  const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
  const pub = await b.enrolled(alice);
  const sub = await b.enrolled(bob);
  await (await b.enrolled(carol)).endAsync();
  const raw = await b.mqtt({ clientId: carol }); // enrolled identity, but no SDK: sees what the broker sends
  await raw.subscribeAsync('secure/#', { qos: 1 });
  const events = await subscribed(sub, ['secure/#', 'plain/#']);

  await pub.publishAsync('secure/a', 'secret text', { qos: 1 });
  await pub.publishAsync('plain/a', 'open text', { qos: 1 });
  assert.deepEqual(await events.next('the protected message'), { kind: 'message', topic: 'secure/a', text: 'secret text', sender: alice, protected: true, retain: false });
  assert.deepEqual(await events.next('the plain message'), { kind: 'message', topic: 'plain/a', text: 'open text', sender: undefined, protected: false, retain: false });
  const onWire = await inboxOf(raw).next('the envelope for carol');
  assert.equal(onWire.packet.payload.indexOf('secret text'), -1);
  // an envelope made for carol: a group header (alice to carol), then the ciphertext and its 16-byte tag
  const envelope = splitEnvelope(Buffer.from(onWire.packet.payload));
  const h = parseHeader(envelope.header);
  assert.deepEqual([h.kind, h.sender, h.recipient], [KIND_GROUP, alice, carol]);
  assert.equal(envelope.payload.length, Buffer.byteLength('secret text') + 16);
});

test('publishes keep their order, and sequence numbers keep rising across a publisher restart', async () => {
  const [alice, bob] = [unique('alice'), unique('bob')];
  const pub = await b.enrolled(alice);
  const events = await subscribed(await b.enrolled(bob), ['secure/order']);
  const sent = Array.from({ length: 30 }, (_, i) => `m${i}`);
  await Promise.all(sent.map((m) => pub.publishAsync('secure/order', m, { qos: 1 })));
  await pub.endAsync();
  const restarted = await b.client(alice);
  await restarted.publishAsync('secure/order', 'after restart', { qos: 1 });
  const got: string[] = [];
  for (let i = 0; i <= sent.length; i++) {
    const e = await events.next(`message ${i}`);
    assert.equal(e.kind, 'message', e.kind === 'error' ? e.error.message : '');
    if (e.kind === 'message') got.push(e.text);
  }
  assert.deepEqual(got, [...sent, 'after restart']);
});

test('enrolment against another trusted component than the pinned one fails before the key is sent, and writes no key file', async () => {
  const id = unique('mallory');
  await assert.rejects(b.enrolled(id, { teeFingerprint: '00'.repeat(32) }), (err: unknown) => err instanceof EnrolmentError && err.code === 'fingerprint-mismatch');
  assert.equal(existsSync(b.keyFile(id)), false);
  assert.equal(await b.tee.isEnrolled(id), false);
});

test('a refused enrolment rejects with the trusted component\'s reason and writes no key file', async () => {
  const [dave, eve] = [unique('dave'), unique('eve')];
  const refusal = (code: string) => (err: unknown) => err instanceof EnrolmentError && err.code === 'refused' && err.refusal === code;
  await assert.rejects(b.client(eve, { token: b.token(dave) }), refusal('token-identity-mismatch'));
  assert.equal(existsSync(b.keyFile(eve)), false);

  const token = b.token(dave);
  await (await b.client(dave, { token })).endAsync();
  await assert.rejects(b.client(dave, { token, keyFile: b.keyFile(`${dave}-again`) }), refusal('token-replayed'));
  assert.equal(existsSync(b.keyFile(`${dave}-again`)), false);

  await assert.rejects(b.client(unique('nokey')), (err: unknown) => err instanceof KeyFileError && /no enrolment token/.test(err.message));
  await assert.rejects(b.client(eve, { keyFile: b.keyFile(dave) }), /enrolled for .*dave/);
});

test('a hostile broker\'s tampering is reported as its own error, never delivered as a payload', async () => {
  // hostile/# is protected by the clients but not by the broker, so the test can play the hostile
  // host: it calls the real trusted component and injects whatever bytes it likes.
  const [alice, bob, carol] = [unique('alice'), unique('bob'), unique('carol')];
  const grants = { publish: ['hostile/#'], read: ['hostile/#'] };
  await (await b.enrolled(alice, { token: b.token(alice, grants) })).endAsync();
  await (await b.enrolled(carol, { token: b.token(carol, grants) })).endAsync();
  const events = await subscribed(await b.enrolled(bob, { protectedTopics: ['hostile/#'], token: b.token(bob, grants) }), ['hostile/#']);
  const aliceKey = await importClientKey(readKeyFile(b.keyFile(alice))!.key);
  const seal = async (seq: number, text: string) => {
    const env = await sealEnvelope({ key: aliceKey, sender: alice, topic: 'hostile/a', seq, payload: Buffer.from(text) });
    const { header, payload } = splitEnvelope(env);
    const [forBob, forCarol] = await b.tee.rewrap(header, 'hostile/a', alice, [bob, carol]);
    return { senderWrapped: Buffer.from(env), forBob: Buffer.from(joinEnvelope(forBob!.header!, payload)), forCarol: Buffer.from(joinEnvelope(forCarol!.header!, payload)) };
  };
  const first = await seal(1, 'genuine');
  const flipped = Buffer.from(first.forBob);
  flipped[flipped.length - 1]! ^= 1;
  const injector = await b.mqtt();
  const inject: [string, Buffer][] = [
    ['hostile/a', first.forBob],
    ['hostile/a', first.forBob],
    ['hostile/a', flipped],
    ['hostile/b', first.forBob],
    ['hostile/a', first.forCarol],
    ['hostile/a', first.senderWrapped],
    ['hostile/a', Buffer.from('plaintext')],
    ['hostile/a', (await seal(2, 'still working')).forBob],
  ];
  for (const [topic, payload] of inject) await injector.publishAsync(topic, payload, { qos: 1 });
  const seen = [];
  for (let i = 0; i < inject.length; i++) {
    const e = await events.next(`event ${i}`);
    seen.push(e.kind === 'message' ? `message ${e.text}` : `${e.code} on ${e.topic}`);
  }
  assert.deepEqual(seen, [
    'message genuine',
    'replayed on hostile/a',
    'tampered on hostile/a',
    'wrong-topic on hostile/b',
    'not-for-me on hostile/a',
    'not-for-me on hostile/a',
    'malformed on hostile/a',
    'message still working',
  ]);
});

test('a retained protected message is readable by a subscriber that enrolled after it was published', async () => {
  const [alice, late] = [unique('alice'), unique('late')];
  const topic = `secure/retained/${alice}`;
  await (await b.enrolled(alice)).publishAsync(topic, 'kept for later', { qos: 1, retain: true });
  const events = await subscribed(await b.enrolled(late), [topic]);
  assert.deepEqual(await events.next('the retained message'), { kind: 'message', topic, text: 'kept for later', sender: alice, protected: true, retain: true });
});

test('rotating the key replaces the key file, and messages keep flowing under the new key', async () => {
  const [alice, frank] = [unique('alice'), unique('frank')];
  const pub = await b.enrolled(alice);
  const sub = await b.enrolled(frank);
  const before = readKeyFile(b.keyFile(frank))!.key;
  await sub.rotateKey();
  const rotated = readKeyFile(b.keyFile(frank))!;
  assert.notDeepEqual(rotated.key, before);
  assert.equal(statSync(b.keyFile(frank)).mode & 0o777, 0o600);
  const events = await subscribed(sub, ['secure/rotated']);
  await pub.publishAsync('secure/rotated', 'under the new key', { qos: 1 });
  assert.equal((await events.next('a message after rotation')).kind, 'message');
});

test('connecting to a broker that is not there rejects with one readable line', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await assert.rejects(
    connectProtected(`mqtt://127.0.0.1:${port}`, { identity: 'x', clientKey: new Uint8Array(32), reconnectPeriod: 0 }),
    /cannot connect to mqtt:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/,
  );
});
