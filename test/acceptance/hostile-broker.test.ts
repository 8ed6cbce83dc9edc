// Acceptance (issue 4): a hostile broker host. A man-in-the-middle proxy in the broker's place
// rewrites what is delivered to bob; each attack must reach bob's SDK as an error with its own
// code, never as a payload. And the host that asks the trusted component to re-wrap for an
// identity without a read grant is refused (read-denied), so that identity receives nothing.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import type { IPublishPacket } from 'mqtt-packet';
import { connectProtected, importClientKey, joinEnvelope, openEnvelope, readKeyFile, sealEnvelope, splitEnvelope, type ProtectedClient } from '../../src/client/index.js';
import { join } from 'node:path';
import { loadOperatorKey, OPERATOR_KEY_FILE, signPolicy } from '../../src/protect/operator.js';
import { encodeHeader, parseHeader, topicTagInput, type EnvelopeHeader } from '../../src/envelope/envelope-layout.js';
import { inboxOf, waitUntil, type Inbox } from '../helpers/broker.js';
import { Events, PROTECTED, startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';
import { MitmProxy, type Rewrite } from '../helpers/mitm-proxy.js';

let b: ProtectedBroker;
let proxy: MitmProxy;
let alice: ProtectedClient;
let bob: ProtectedClient; // connected through the proxy
let bobEvents: Events;
let carol: MqttClient; // enrolled, plain MQTT.js straight to the broker: sees the envelopes made for her
let carolInbox: Inbox;

before(async () => {
  b = await startProtectedBroker('process');
  proxy = await MitmProxy.start(b.port);
  alice = await b.enrolled('alice');
  await (await b.enrolled('bob')).endAsync();
  await (await b.enrolled('carol')).endAsync();
  bob = await connectProtected(proxy.url, { identity: 'bob', keyFile: b.keyFile('bob'), protectedTopics: [PROTECTED], reconnectPeriod: 0 });
  bobEvents = new Events(bob);
  await bob.subscribeAsync('secure/#', { qos: 0 });
  carol = await b.mqtt({ clientId: 'carol', protocolVersion: 5 });
  carolInbox = inboxOf(carol);
  await carol.subscribeAsync('secure/#', { qos: 0 });
});
after(async () => {
  await bob?.endAsync(true);
  await proxy?.close();
  await b?.close();
});

const payloadOf = (p: IPublishPacket): Buffer => Buffer.from(p.payload);
const withPayload = (p: IPublishPacket, payload: Uint8Array): IPublishPacket => ({ ...p, payload: Buffer.from(payload) });
const headerLength = (p: IPublishPacket): number => payloadOf(p).readUInt16BE(0);

/** `p` with one bit flipped at byte `at` of its payload (the envelope). */
function flipBit(p: IPublishPacket, at: number): IPublishPacket {
  const bytes = payloadOf(p);
  bytes[at]! ^= 0x01;
  return withPayload(p, bytes);
}

/** `p` with its envelope header rebuilt after `change` (a host can re-encode any field). */
function reheader(p: IPublishPacket, change: (h: EnvelopeHeader) => EnvelopeHeader): IPublishPacket {
  const { header, payload } = splitEnvelope(payloadOf(p));
  return withPayload(p, joinEnvelope(encodeHeader(change(parseHeader(header))), payload));
}

const topicTag = (topic: string): Uint8Array => createHash('sha256').update(topicTagInput(topic)).digest().subarray(0, 8);

/** carol's copy of the message `p` is bob's copy of (same sender sequence number). */
async function carolsCopy(p: IPublishPacket): Promise<IPublishPacket> {
  const seq = parseHeader(splitEnvelope(payloadOf(p)).header).seq;
  const sameMessage = (m: { packet: IPublishPacket }): boolean => parseHeader(splitEnvelope(payloadOf(m.packet)).header).seq === seq;
  await waitUntil(() => carolInbox.messages.some(sameMessage), 'carol\'s copy of the message');
  return carolInbox.messages.find(sameMessage)!.packet;
}

let n = 0;
/** alice publishes a fresh text to `topic`; bob's next event must be `expected`. */
async function exchange(topic: string, expected: { error: string } | 'plaintext'): Promise<void> {
  const text = `note ${++n} from alice`;
  await alice.publishAsync(topic, text, { qos: 1 });
  const e = await bobEvents.next(`bob's event for "${text}"`);
  if (expected === 'plaintext') assert.deepEqual(e.kind === 'message' ? [e.topic, e.text, e.sender] : e, [topic, text, 'alice']);
  else assert.equal(e.kind === 'error' ? e.code : `a message: ${JSON.stringify(e)}`, expected.error);
}

describe('a hostile broker between the broker and the subscriber', () => {
  it('relays untouched messages that bob reads (the harness itself changes nothing)', async () => {
    await exchange('secure/a', 'plaintext');
  });

  const attacks: Array<[string, Rewrite, string]> = [
    ['a bit flipped in the header\'s sequence number is detected as tampered', (p) => [flipBit(p, 2 + 9)], 'tampered'],
    ['a bit flipped in the header\'s wrapped data key is detected as tampered', (p) => [flipBit(p, 2 + headerLength(p) - 1)], 'tampered'],
    ['a bit flipped in the payload ciphertext is detected as tampered', (p) => [flipBit(p, 2 + headerLength(p))], 'tampered'],
    ['secure/a\'s message delivered as secure/b is detected as wrong-topic', (p) => [{ ...p, topic: 'secure/b' }], 'wrong-topic'],
    ['secure/a\'s message delivered as secure/b with a recomputed topic tag is detected as tampered', (p) => [reheader({ ...p, topic: 'secure/b' }, (h) => ({ ...h, topicTag: topicTag('secure/b') }))], 'tampered'],
    ['carol\'s copy delivered to bob is detected as not-for-me', async (p) => [withPayload(p, payloadOf(await carolsCopy(p)))], 'not-for-me'],
    ['carol\'s copy with its recipient renamed to bob is detected as tampered', async (p) => [reheader(await carolsCopy(p), (h) => ({ ...h, recipient: 'bob' }))], 'tampered'],
  ];
  for (const [name, rewrite, code] of attacks) {
    it(`${name}, and bob gets no payload from it`, async () => {
      proxy.once(rewrite);
      await exchange('secure/a', { error: code });
      await exchange('secure/a', 'plaintext'); // the next honest message is bob's next event: nothing slipped in between
    });
  }

  it('an earlier message delivered again is detected as replayed, and bob gets no payload from it', async () => {
    let earlier: IPublishPacket | undefined;
    proxy.once((p) => [(earlier = p)]);
    await exchange('secure/a', 'plaintext');
    proxy.once((p) => [p, earlier!]);
    await exchange('secure/a', 'plaintext');
    const e = await bobEvents.next('the replayed copy');
    assert.deepEqual(e.kind === 'error' ? [e.code, e.topic] : e, ['replayed', 'secure/a']);
    await exchange('secure/a', 'plaintext');
  });

  it('never delivers bob a payload twice, or one other than alice sent on its topic, when copies of one message come in many forms', async () => {
    const from = bobEvents.all.length;
    // one message reaches bob as itself, again, under another topic, as carol's copy and as carol's copy renamed to bob
    proxy.once(async (p) => {
      const carols = await carolsCopy(p);
      return [p, p, { ...p, topic: 'secure/b' }, withPayload(p, payloadOf(carols)), reheader(carols, (h) => ({ ...h, recipient: 'bob' }))];
    });
    await exchange('secure/a', 'plaintext');
    const refused: string[] = [];
    for (let i = 0; i < 4; i++) {
      const e = await bobEvents.next(`bob's event for copy ${i + 2}`);
      refused.push(e.kind === 'error' ? e.code : `a message: ${JSON.stringify(e)}`);
    }
    assert.deepEqual(refused, ['replayed', 'wrong-topic', 'not-for-me', 'tampered']);
    await exchange('secure/a', 'plaintext');
    const delivered = bobEvents.all.slice(from).flatMap((e) => (e.kind === 'message' ? [`${e.topic} ${e.text}`] : []));
    assert.deepEqual(delivered, [`secure/a note ${n - 1} from alice`, `secure/a note ${n} from alice`], 'the two texts alice sent, once each');
  });
});

describe('a hostile host asking the trusted component to re-wrap for an identity without a read grant', () => {
  it('is refused per recipient as read-denied, and mallory subscribed through the broker receives nothing', async () => {
    const mallory = await b.enrolled('mallory');
    const malloryEvents = new Events(mallory);
    const granted = await mallory.subscribeAsync('secure/#', { qos: 1 });
    assert.ok(granted[0]!.qos < 0x80, 'the enrolled mallory may subscribe; the trusted component decides what she reads');
    const policy = {
      rules: [
        { identity: '*', publish: ['secure/#'], read: ['secure/lobby/#'] },
        { identity: 'bob', read: ['secure/#'] },
        { identity: 'carol', read: ['secure/#'] },
      ],
    };
    await b.tee.loadPolicy(signPolicy(loadOperatorKey(join(b.dataDir, OPERATOR_KEY_FILE)), JSON.stringify(policy)));

    // The host calls the trusted component itself with a genuine header of alice's.
    const aliceKey = await importClientKey(readKeyFile(b.keyFile('alice'))!.key);
    const envelope = splitEnvelope(await sealEnvelope({ key: aliceKey, sender: 'alice', topic: 'secure/vault', seq: 1, payload: Buffer.from('vault code 4711') }));
    const results = await b.tee.rewrap(envelope.header, 'secure/vault', 'alice', ['mallory', 'bob']);
    assert.deepEqual(results.map((r) => [r.recipient, r.refusal ?? 'wrapped']), [['mallory', 'read-denied'], ['bob', 'wrapped']]);
    const bobKey = await importClientKey(readKeyFile(b.keyFile('bob'))!.key);
    const forBob = await openEnvelope({ key: bobKey, identity: 'bob', topic: 'secure/vault', envelope: joinEnvelope(results[1]!.header!, envelope.payload) });
    assert.equal(Buffer.from(forBob.payload).toString(), 'vault code 4711', 'control: the same batch served bob');

    // Through the broker: mallory's first event is the lobby message published after the vault one.
    const refusedBefore = b.running.protection!.topics.counters.recipientsRefused;
    await exchange('secure/vault', 'plaintext');
    await alice.publishAsync('secure/lobby/news', 'lobby opens at nine', { qos: 1 });
    const e = await malloryEvents.next('mallory\'s first message');
    assert.deepEqual(e.kind === 'message' ? [e.topic, e.text] : e, ['secure/lobby/news', 'lobby opens at nine']);
    assert.equal(b.running.protection!.topics.counters.recipientsRefused - refusedBefore, 1, 'the trusted component refused mallory once, for the vault message');
    await bobEvents.next('the lobby message for bob');
  });
});
