// The batched re-wrap (0x0e, fast and general path mixed in one batch) against a straightforward
// reference written here with node:crypto: open the sender's stream key with the sender's key, take
// the sequence tag and data key from its AES-256-CTR keystream, open the group key from a member
// part with the member's key, and check that the shared part
// is, byte for byte, the data key wrapped under the group key in the layout the client reads; then
// the client SDK opens the delivered envelope.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { openEnvelope } from '../../src/client/crypto/index.js';
import {
  GROUP_ID_BYTES, GROUP_PART_TAIL, KIND_GROUP, NONCE_BYTES, KIND_SENDER, SEQ_TAG_BYTES, STREAM_PART_BYTES, TAG_BYTES, encodeGroupMessagePart, encodeHeader, groupKeyAd, groupWrapAd,
  joinEnvelope, parseHeader, streamAd, type EnvelopeParts,
} from '../../src/envelope/envelope-layout.js';
import { codeFromNumber, TeeError } from '../../src/envelope/errors.js';
import { Reader, Writer } from '../../src/envelope/bytes.js';
import { CMD, GROUP_REWRAP_BATCH_MAX } from '../../src/envelope/wire.js';
import { Dispatcher } from '../../src/tee/commands.js';
import { createOperatorKey } from '../../src/protect/operator.js';
import type { FormedGroup } from '../../src/tee-client/host.js';
import { makeFixture, type Enrolled } from '../helpers/tee/fixture.js';
import { publish } from '../helpers/tee/publishing.js';

/** A small seeded generator, so a failing run can be replayed from the seed in its messages. */
function generator(seed: number): (n: number) => number {
  let x = seed >>> 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

function wrapSubkey(raw: Uint8Array): Buffer {
  return Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), 'mqt-tz/1 wrap key', 32));
}

function gcmOpen(key: Uint8Array, nonce: Uint8Array, sealed: Uint8Array, ad: Uint8Array): Buffer {
  const d = createDecipheriv('aes-256-gcm', key, nonce);
  d.setAAD(ad);
  d.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES));
  return Buffer.concat([d.update(sealed.subarray(0, sealed.length - TAG_BYTES)), d.final()]);
}

interface Sent {
  group: number;
  topic: string;
  sender: Enrolled;
  message: EnvelopeParts;
  tampered: boolean;
  plaintext: Buffer;
}

test('randomized batches: every shared part equals the reference re-wrap (sender key open, group key wrap) and every member opens it with the SDK', async () => {
  const seed = randomBytes(4).readUInt32BE();
  const rnd = generator(seed);
  const f = await makeFixture('inline');
  try {
    const people = [await f.enrol('alice'), await f.enrol('bob'), await f.enrol('carol'), await f.enrol('dave')];
    const topics = ['ward/1/ecg', 'ward/2/ecg', 'home/door'];
    const groups: FormedGroup[] = [];
    for (const [i, topic] of topics.entries()) {
      const members = people.filter(() => rnd(3) > 0).map((p) => p.identity);
      groups.push(await f.tee.formGroup(i + 1, topic, members.length > 0 ? members : ['bob']));
    }
    let seq = 1;
    let checked = 0;
    let parts = 0;
    const wrapNonces = new Set<string>();
    for (let round = 0; round < 6; round++) {
      const sent: Sent[] = [];
      for (let k = 1 + rnd(40); k > 0; k--) {
        const group = rnd(groups.length);
        const topic = topics[group]!;
        const sender = people[rnd(people.length)]!;
        const payload = randomBytes(rnd(3000));
        const message = await publish(sender, topic, payload, seq++);
        const tampered = rnd(10) === 0;
        // a bit of the sequence tag, the wrapped stream key or the stream nonce
        if (tampered) message.header[message.header.length - 1 - rnd(SEQ_TAG_BYTES + STREAM_PART_BYTES)]! ^= 1 << rnd(8);
        sent.push({ group, topic, sender, message, tampered, plaintext: payload });
      }
      // issued in one turn: the host sends them as one batch (0x0e)
      const answers = await Promise.all(sent.map((s) => f.tee.groupRewrap(s.group + 1, s.message.header, s.topic, s.sender.identity).catch((e: TeeError) => e)));
      for (const [i, s] of sent.entries()) {
        const answer = answers[i]!;
        const where = `seed ${seed}, round ${round}, message ${i}`;
        if (s.tampered) {
          assert.equal((answer as TeeError).code, 'header-auth-failed', where);
          continue;
        }
        assert.ok(answer instanceof Uint8Array, `${where}: ${String(answer)}`);
        const part = Buffer.from(answer);
        const h = parseHeader(s.message.header);
        assert.equal(h.kind, KIND_SENDER);
        const streamKey = gcmOpen(wrapSubkey(s.sender.raw), h.wrapNonce, h.wrappedKey, streamAd(s.topic, s.sender.identity));
        const counter = Buffer.alloc(16);
        counter.writeBigUInt64BE(BigInt(h.seq));
        const keystream = createCipheriv('aes-256-ctr', streamKey, counter).update(Buffer.alloc(64));
        assert.deepEqual(keystream.subarray(0, SEQ_TAG_BYTES), Buffer.from(h.seqTag!), `${where}: the sequence tag`);
        assert.deepEqual(keystream.subarray(48, 60), Buffer.from(h.payloadNonce), `${where}: the payload nonce`);
        const dek = keystream.subarray(SEQ_TAG_BYTES, 48);
        const group = groups[s.group]!;
        parts++;
        wrapNonces.add(part.subarray(part.length - GROUP_PART_TAIL, part.length - GROUP_PART_TAIL + NONCE_BYTES).toString('hex'));
        for (const member of group.members) {
          if (member.header === undefined) continue;
          const header = parseHeader(Buffer.concat([part, member.header]));
          assert.equal(header.kind, KIND_GROUP, where);
          assert.deepEqual(Buffer.from(header.group!.id), Buffer.from(group.id), where);
          const who = people.find((p) => p.identity === member.recipient)!;
          const groupKey = gcmOpen(wrapSubkey(who.raw), header.group!.memberNonce, header.group!.wrappedGroupKey, groupKeyAd(s.topic, who.identity, group.id));
          const unwrapped = gcmOpen(groupKey, header.wrapNonce, header.wrappedKey, groupWrapAd(h.seq, s.topic, s.sender.identity, h.payloadNonce, group.id));
          assert.deepEqual(unwrapped, dek, `${where}: the group wrap holds the sender's data key`);
          assert.deepEqual(part, Buffer.from(encodeGroupMessagePart(h, header.wrapNonce, header.wrappedKey, group.id)), `${where}: the layout, byte for byte`);
          const opened = await openEnvelope({ key: who.key, identity: who.identity, topic: s.topic, envelope: joinEnvelope(Buffer.concat([part, member.header]), s.message.payload) });
          assert.deepEqual([opened.sender, opened.seq, Buffer.from(opened.payload)], [s.sender.identity, h.seq, s.plaintext], where);
          checked++;
        }
        assert.equal(part.length > GROUP_ID_BYTES, true);
      }
    }
    assert.ok(checked > 0, `seed ${seed}: some deliveries checked`);
    assert.equal(wrapNonces.size, parts, `seed ${seed}: every group wrap has a nonce of its own`);
  } finally {
    await f.dispose();
  }
});

test(`a batch of exactly ${GROUP_REWRAP_BATCH_MAX} messages is answered message by message; one more is refused whole as bad-request naming the limit`, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-batch-max-'));
  try {
    const blobs = new Map<string, Uint8Array>();
    const d = new Dispatcher({ get: async (n) => blobs.get(n), put: async (n, b) => void blobs.set(n, b), delete: async (n) => void blobs.delete(n) }, join(dirname(fileURLToPath(import.meta.url)), '../../src/tee'));
    const operator = createOperatorKey(join(dir, 'operator.key'));
    await d.handle(CMD.init, new Writer().u32(16).str16(join(dir, 'tee')).u8(0).u8(0).raw(operator.publicKey).finish());
    const header = encodeHeader({
      version: 1, kind: KIND_SENDER, seq: 1, topicTag: new Uint8Array(8), sender: 'alice', recipient: '',
      payloadNonce: new Uint8Array(NONCE_BYTES), wrapNonce: new Uint8Array(NONCE_BYTES), wrappedKey: new Uint8Array(48), seqTag: new Uint8Array(SEQ_TAG_BYTES),
    });
    // a well-formed message naming a group this component never formed: each is refused on its own
    const entry = new Writer().u32(7).str16('t/x').str8('alice').bytes16(header).finish();
    const batch = (n: number): Buffer => Buffer.concat([new Writer().u16(n).finish(), ...Array.from({ length: n }, () => entry)]);
    const answer = new Reader(await d.handle(CMD.groupRewrapBatch, batch(GROUP_REWRAP_BATCH_MAX)));
    assert.equal(answer.u16(), GROUP_REWRAP_BATCH_MAX);
    const codes = new Set<string>();
    for (let i = 0; i < GROUP_REWRAP_BATCH_MAX; i++) {
      codes.add(codeFromNumber(answer.u8()));
      answer.take(answer.u16());
    }
    answer.end('batch answer');
    assert.deepEqual([...codes], ['group-unknown']);
    await assert.rejects(
      Promise.resolve().then(() => d.handle(CMD.groupRewrapBatch, batch(GROUP_REWRAP_BATCH_MAX + 1))),
      (e: unknown) => e instanceof TeeError && e.code === 'bad-request' && e.detail.includes(`at most ${GROUP_REWRAP_BATCH_MAX} messages`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
