/** The envelope layout shared by client, host and trusted component: headers, splitting, associated data. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EnvelopeFormatError, KIND_SENDER, encodeHeader, joinEnvelope, parseHeader, splitEnvelope } from '../../src/envelope/envelope-layout.js';

const header = {
  version: 1, kind: KIND_SENDER, seq: 2 ** 40 + 7, topicTag: new Uint8Array(8).fill(1), sender: 'alice', recipient: '',
  payloadNonce: new Uint8Array(12).fill(2), wrapNonce: new Uint8Array(12).fill(3), wrappedKey: new Uint8Array(48).fill(4), seqTag: new Uint8Array(16).fill(5),
};

test('envelope layout splits header from payload without keys and round-trips headers', () => {
  const h = encodeHeader(header);
  const env = joinEnvelope(h, new Uint8Array(40).fill(9));
  const parts = splitEnvelope(env);
  assert.deepEqual(parts.header, h);
  assert.equal(parts.payload.length, 40);
  assert.equal(h.length, 107 + 'alice'.length);
  assert.deepEqual({ ...parseHeader(parts.header) }, { ...header, topicTag: parts.header.subarray(10, 18), payloadNonce: header.payloadNonce, wrapNonce: header.wrapNonce, wrappedKey: header.wrappedKey });
});

test('a kind-3 header is the shared part followed by the member part, and round-trips', async () => {
  const { KIND_GROUP, encodeGroupMessagePart, encodeGroupMemberPart } = await import('../../src/envelope/envelope-layout.js');
  const group = { id: new Uint8Array(16).fill(5), memberNonce: new Uint8Array(12).fill(6), wrappedGroupKey: new Uint8Array(48).fill(7) };
  const g = { ...header, kind: KIND_GROUP, recipient: 'bob', group };
  const shared = encodeGroupMessagePart(g, g.wrapNonce, g.wrappedKey, group.id);
  const member = encodeGroupMemberPart(new TextEncoder().encode('bob'), group.memberNonce, group.wrappedGroupKey);
  const bytes = encodeHeader(g);
  assert.deepEqual(bytes, Uint8Array.from([...shared, ...member]));
  assert.equal(bytes.length, 168 + 'alice'.length + 'bob'.length);
  const parsed = parseHeader(bytes);
  assert.deepEqual([parsed.kind, parsed.seq, parsed.sender, parsed.recipient], [KIND_GROUP, g.seq, 'alice', 'bob']);
  assert.deepEqual([parsed.group?.id, parsed.group?.memberNonce, parsed.group?.wrappedGroupKey, parsed.wrappedKey], [group.id, group.memberNonce, group.wrappedGroupKey, g.wrappedKey]);
  assert.throws(() => parseHeader(bytes.subarray(0, bytes.length - 1)), (e: EnvelopeFormatError) => e.code === 'truncated');
  assert.throws(() => parseHeader(Uint8Array.from([...shared, 0, ...member.subarray(4)])), EnvelopeFormatError, 'a member part without a recipient');
});

test('senderOf reads the sender of every header kind as parseHeader does', async () => {
  const { senderOf, KIND_GROUP, KIND_RECIPIENT } = await import('../../src/envelope/envelope-layout.js');
  const group = { id: new Uint8Array(16), memberNonce: new Uint8Array(12), wrappedGroupKey: new Uint8Array(48) };
  for (const h of [header, { ...header, sender: 'ünïcode-sender', kind: KIND_RECIPIENT, recipient: 'bob' }, { ...header, kind: KIND_GROUP, recipient: 'bob', group }]) {
    const bytes = encodeHeader(h);
    assert.equal(senderOf(bytes), parseHeader(bytes).sender);
    assert.equal(senderOf(bytes), h.sender);
  }
});

test('isSenderHeaderOf accepts exactly the headers parseHeader accepts as sender-wrapped by that sender', async () => {
  const { isSenderHeaderOf, KIND_RECIPIENT, KIND_GROUP } = await import('../../src/envelope/envelope-layout.js');
  const names = ['alice', 'ünïcode-sender', 'a', 'x'.repeat(255)];
  const group = { id: new Uint8Array(16), memberNonce: new Uint8Array(12), wrappedGroupKey: new Uint8Array(48) };
  const samples: Uint8Array[] = [];
  for (const sender of names) {
    samples.push(encodeHeader({ ...header, sender }), encodeHeader({ ...header, sender, seq: 2 ** 53 - 1 }));
    samples.push(encodeHeader({ ...header, sender, kind: KIND_RECIPIENT, recipient: 'bob' }), encodeHeader({ ...header, sender, kind: KIND_GROUP, recipient: 'bob', group }));
  }
  // every single-byte change, truncation and extension of a valid one
  const base = encodeHeader(header);
  for (let i = 0; i < base.length; i++) for (const v of [0, 1, 0x1f, 0x20, 0xff, base[i]! ^ 0x01]) samples.push(Uint8Array.from(base, (b, j) => (j === i ? v : b)));
  for (let n = 0; n < base.length; n++) samples.push(base.subarray(0, n));
  samples.push(Uint8Array.from([...base, 0]));
  const te = new TextEncoder();
  let accepted = 0;
  for (const bytes of samples) {
    for (const sender of [...names, 'alicf', '']) {
      let expected: boolean;
      try {
        const h = parseHeader(bytes);
        expected = h.kind === KIND_SENDER && h.sender === sender;
      } catch {
        expected = false;
      }
      assert.equal(isSenderHeaderOf(bytes, te.encode(sender)), expected, `sender ${JSON.stringify(sender.slice(0, 12))}, header of ${bytes.length} bytes`);
      // the same header read in place inside an envelope: bytes around it change nothing
      const envelope = joinEnvelope(bytes, Uint8Array.from({ length: 20 }, (_, k) => k));
      assert.equal(isSenderHeaderOf(envelope, te.encode(sender), 2, bytes.length), expected, `in place: sender ${JSON.stringify(sender.slice(0, 12))}, header of ${bytes.length} bytes`);
      // a header announced longer than the bytes that hold it
      if (expected) assert.equal(isSenderHeaderOf(envelope.subarray(0, 2 + bytes.length - 1), te.encode(sender), 2, bytes.length), false, 'cut short');
      if (expected) accepted++;
    }
  }
  assert.ok(accepted > names.length, 'the samples include accepted headers');
});

test('the group wrap associated data, the shared group part and the stream fields read in place from a sender header equal the ones built field by field', async () => {
  const L = await import('../../src/envelope/envelope-layout.js');
  const rnd = (n: number, seed: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 131 + seed * 17 + 7) & 0xff);
  let cases = 0;
  for (const sender of ['alice', 'ünïcode-sender', 'a', 'x'.repeat(255)]) {
    for (const topic of ['t', 'home/door', 'ä/'.repeat(40)]) {
      const groupId = rnd(16, cases);
      const seal = L.groupWrapAdTemplate(topic, sender, groupId);
      // the same templates serve message after message: each fill must overwrite all that differs
      for (const seq of [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 40 + 7, 2 ** 53 - 1]) {
        const payloadNonce = rnd(12, seq % 251);
        const h = { ...header, sender, seq, payloadNonce, topicTag: rnd(8, cases), seqTag: rnd(16, seq % 13) };
        const bytes = L.encodeHeader(h);
        const n = new TextEncoder().encode(sender).length;
        assert.deepEqual(bytes.subarray(L.streamPartAt(n), L.streamPartAt(n) + L.STREAM_PART_BYTES), Uint8Array.from([...h.wrapNonce, ...h.wrappedKey]));
        assert.deepEqual(bytes.subarray(L.seqTagAt(n)), h.seqTag);
        const seqBytes = Buffer.alloc(8);
        seqBytes.writeBigUInt64BE(BigInt(seq));
        assert.deepEqual(Buffer.from(bytes.subarray(L.SEQ_FIELD_AT, L.SEQ_FIELD_AT + 8)), seqBytes);
        assert.deepEqual(L.fillAd(seal, bytes), L.groupWrapAd(seq, topic, sender, payloadNonce, groupId));
        const part = new Uint8Array(L.groupPartLength(bytes)).fill(0xee);
        L.writeGroupPartAt(part, 0, part.length, bytes, 0, groupId);
        const wrapNonce = rnd(12, 3);
        const wrapped = rnd(48, 4);
        part.set(wrapNonce, part.length - L.GROUP_PART_TAIL);
        part.set(wrapped, part.length - L.GROUP_PART_TAIL + 12);
        assert.deepEqual(part, L.encodeGroupMessagePart(h, wrapNonce, wrapped, groupId));
        cases++;
      }
    }
  }
  assert.equal(cases, 4 * 3 * 6);
});

test('envelope layout names each malformation', () => {
  const code = (fn: () => unknown): string => {
    try {
      fn();
      return 'ok';
    } catch (e) {
      return (e as EnvelopeFormatError).code;
    }
  };
  const h = encodeHeader(header);
  assert.equal(code(() => splitEnvelope(new Uint8Array(1))), 'truncated');
  assert.equal(code(() => splitEnvelope(joinEnvelope(h, new Uint8Array(3)))), 'bad-length');
  assert.equal(code(() => parseHeader(h.subarray(0, 30))), 'truncated');
  assert.equal(code(() => parseHeader(Uint8Array.from([9, ...h.subarray(1)]))), 'unsupported-version');
  assert.equal(code(() => parseHeader(Uint8Array.from([1, 7, ...h.subarray(2)]))), 'bad-kind');
  // kind 1, a data key wrapped per message, is retired
  assert.equal(code(() => parseHeader(encodeHeader({ ...header, kind: 1 }))), 'bad-kind');
  assert.equal(code(() => encodeHeader({ ...header, seqTag: undefined })), 'bad-kind');
  assert.equal(code(() => parseHeader(encodeHeader({ ...header, recipient: 'bob' }))), 'bad-identity');
  assert.equal(code(() => parseHeader(Uint8Array.from([...h, 0]))), 'bad-length');
});

test('the per-message recipient AD builder yields exactly wrapAd of a recipient header', async () => {
  const { recipientWrapAd, wrapAd, KIND_RECIPIENT } = await import('../../src/envelope/envelope-layout.js');
  const nonce = new Uint8Array(12).map((_, i) => i * 7);
  const adFor = recipientWrapAd(2 ** 40 + 5, 'patients/42/ecg', 'alice', nonce);
  for (const r of ['bob', 'ärzte-7', 'x'.repeat(255)]) {
    assert.deepEqual(adFor(r), wrapAd(KIND_RECIPIENT, 2 ** 40 + 5, 'patients/42/ecg', 'alice', r, nonce));
  }
  assert.throws(() => adFor('y'.repeat(256)), /255 bytes/);
});

test('the per-message recipient header encoder yields exactly encodeHeader of a kind-2 header', async () => {
  const { recipientHeaderEncoder, encodeHeader, KIND_SENDER, KIND_RECIPIENT } = await import('../../src/envelope/envelope-layout.js');
  const bytes = (n: number, seed: number): Uint8Array => new Uint8Array(n).map((_, i) => (i * 31 + seed) & 0xff);
  const h = { version: 1, kind: KIND_SENDER, seq: 2 ** 41 + 9, topicTag: bytes(8, 1), sender: 'alice', recipient: '', payloadNonce: bytes(12, 2), wrapNonce: bytes(12, 3), wrappedKey: bytes(48, 4) };
  const headerFor = recipientHeaderEncoder(h);
  for (const r of ['bob', 'ärzte-7', 'z'.repeat(255)]) {
    const wrapNonce = bytes(12, r.length);
    const wrappedKey = bytes(48, r.length + 1);
    assert.deepEqual(headerFor(Buffer.from(r), wrapNonce, wrappedKey), encodeHeader({ ...h, kind: KIND_RECIPIENT, recipient: r, wrapNonce, wrappedKey }));
  }
  assert.throws(() => headerFor(new Uint8Array(0), bytes(12, 0), bytes(48, 0)), /1 to 255 bytes/);
});
