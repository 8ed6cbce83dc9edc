import assert from 'node:assert/strict';
import { test } from 'node:test';
import { joinEnvelope, splitEnvelope } from '../../src/envelope/envelope-layout.js';
import { publishHeader } from '../../src/mqtt/publish-header.js';
import { ProtectedLead } from '../../src/protect/protected-lead.js';

test('a protected lead is the start of the recipient envelope: u16 length, the shared part, its own part', () => {
  const shared = Buffer.alloc(70, 0x11);
  const own = Buffer.alloc(300, 0x22);
  const body = Buffer.alloc(50, 0x33);
  const lead = new ProtectedLead(shared, own);
  assert.equal(lead.byteLength, 2 + 370);
  const out = Buffer.alloc(lead.byteLength + body.length);
  lead.writeTo(out, 0);
  body.copy(out, lead.byteLength);
  assert.deepEqual(out, Buffer.from(joinEnvelope(Buffer.concat([shared, own]), body)));
  const { header, payload } = splitEnvelope(out);
  assert.deepEqual(Buffer.from(header), Buffer.concat([shared, own]));
  assert.deepEqual(payload, body);
});

test('publishHeader writes a lead behind the header, counted in the payload length', () => {
  const lead = new ProtectedLead(Buffer.from([1, 2, 3]), Buffer.from([4, 5]));
  const topic = Buffer.from('t/1');
  const header = publishHeader(topic, lead.byteLength + 4, 1, false, false, 7, false, lead);
  // 0x32 (QoS 1), remaining length, topic, packet id, then the lead
  assert.deepEqual([...header], [0x32, 2 + 3 + 2 + 7 + 4, 0, 3, ...topic, 0, 7, 0, 5, 1, 2, 3, 4, 5]);
});

test('settling copies a shared part that pins a large buffer, once, and keeps a small one as it is', () => {
  const answer = Buffer.alloc(65536, 0xbb);
  const lead = new ProtectedLead(answer.subarray(100, 180), Buffer.alloc(40, 0x44));
  const settled = lead.settled() as ProtectedLead;
  assert.notEqual(settled, lead);
  assert.equal(settled.shared.buffer.byteLength, 80);
  assert.deepEqual(Buffer.from(settled.shared), answer.subarray(100, 180));
  assert.equal(settled.own, lead.own);
  assert.equal(settled.settled(), settled);
});
