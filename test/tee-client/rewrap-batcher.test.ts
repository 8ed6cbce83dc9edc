// The host's batching of group re-wraps: one batch waits for the trusted component at a time, and
// what is asked for meanwhile leaves as the next batch the moment the answer is in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TeeError, type RewrapReceiver, type Transport } from '../../src/tee-client/host.js';
import { RewrapBatcher } from '../../src/tee-client/rewrap-batcher.js';
import { CMD } from '../../src/envelope/wire.js';
import { TEE_ERRORS } from '../../src/envelope/errors.js';
import { SENDER_FIELD_AT } from '../../src/envelope/envelope-layout.js';
import { Reader, Writer } from '../../src/envelope/bytes.js';

/** A transport whose answers the test gives by hand: it records each batch's message headers. */
class HeldTransport implements Transport {
  readonly pid = undefined;
  readonly batches: { headers: string[]; senders: string[]; answer: (status: number[]) => void; fail: (err: Error) => void }[] = [];

  call(command: number, params: Uint8Array): Promise<Uint8Array> {
    assert.equal(command, CMD.groupRewrapBatch);
    const r = new Reader(params);
    const n = r.u16();
    const headers: string[] = [];
    const senders: string[] = [];
    for (let i = 0; i < n; i++) {
      r.u32();
      r.bytes16();
      senders.push(Buffer.from(r.take(r.u8())).toString());
      headers.push(Buffer.from(r.bytes16()).toString('latin1'));
    }
    r.end('batch');
    return new Promise((resolve, reject) => {
      const answer = (status: number[]): void => {
        const w = new Writer().u16(n);
        headers.forEach((h, i) => w.u8(status[i] ?? 0).bytes16(Buffer.from(status[i] ? 'refused' : `part of ${h}`)));
        resolve(w.finish());
      };
      this.batches.push({ headers, senders, answer, fail: reject });
    });
  }

  async close(): Promise<void> {}
}

class Collect implements RewrapReceiver {
  readonly got: string[] = [];
  rewrapped(part: Uint8Array): void {
    this.got.push(Buffer.from(part).toString());
  }
  refused(err: TeeError): void {
    this.got.push(`refused ${err.code}`);
  }
}

const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

test('one batch waits at a time: calls made while it waits leave together, right after its answer', async () => {
  const t = new HeldTransport();
  const b = new RewrapBatcher(t);
  const to = new Collect();
  const ask = (h: string): void => b.add(1, Buffer.from(h), 'home/door', 'alice', to);
  ask('m1');
  ask('m2');
  await turn();
  assert.deepEqual(t.batches.map((x) => x.headers), [['m1', 'm2']], 'the first turn leaves as one batch');
  ask('m3');
  await turn();
  ask('m4');
  ask('m5');
  await turn();
  assert.equal(t.batches.length, 1, 'nothing else leaves while the first batch waits');
  t.batches[0]!.answer([0, 0]);
  await turn();
  assert.deepEqual(t.batches.map((x) => x.headers), [['m1', 'm2'], ['m3', 'm4', 'm5']], 'three turns gathered into the second batch');
  t.batches[1]!.answer([0, TEE_ERRORS['sender-mismatch'], 0]);
  await turn();
  assert.deepEqual(to.got, ['part of m1', 'part of m2', 'part of m3', 'refused sender-mismatch', 'part of m5']);
  ask('m6');
  await turn();
  assert.deepEqual(t.batches[2]!.headers, ['m6'], 'with nothing in flight a call leaves at the end of its turn');
});

test('a batch the transport fails refuses each of its messages, and the next batch still leaves', async () => {
  const t = new HeldTransport();
  const b = new RewrapBatcher(t);
  const to = new Collect();
  b.add(1, Buffer.from('a'), 'home/door', 'alice', to);
  await turn();
  b.add(1, Buffer.from('b'), 'home/door', 'alice', to);
  t.batches[0]!.fail(new TeeError('internal', 'trusted component process exited'));
  await turn();
  assert.deepEqual(to.got, ['refused internal']);
  assert.deepEqual(t.batches[1]?.headers, ['b']);
});

test('the hot-path call takes the sender the header names, copied as is; a header too short for it is refused', async () => {
  const t = new HeldTransport();
  const b = new RewrapBatcher(t);
  const to = new Collect();
  const header = Buffer.alloc(SENDER_FIELD_AT + 1 + 'zoë'.length + 1 + 40, 0x2e);
  header[SENDER_FIELD_AT] = Buffer.byteLength('zoë');
  header.write('zoë', SENDER_FIELD_AT + 1);
  b.add(1, header, 'home/door', undefined, to);
  b.add(1, header.subarray(0, SENDER_FIELD_AT + 2), 'home/door', undefined, to);
  b.add(1, header, 'home/door', 'alice', to);
  await turn();
  assert.deepEqual(t.batches[0]!.senders, ['zoë', 'alice'], 'the named sender, and an explicit one');
  assert.deepEqual(to.got, ['refused malformed-header']);
});

test('a receiver that throws is reported, and the other messages of its batch still get their answers', async () => {
  const t = new HeldTransport();
  const b = new RewrapBatcher(t);
  const to = new Collect();
  const warnings: Error[] = [];
  const onWarning = (w: Error): void => void warnings.push(w);
  process.on('warning', onWarning);
  try {
    b.add(1, Buffer.from('x1'), 'home/door', 'alice', to);
    b.add(1, Buffer.from('x2'), 'home/door', 'alice', { rewrapped: () => assert.fail('a receiver bug'), refused: () => assert.fail('answered twice') });
    b.add(1, Buffer.from('x3'), 'home/door', 'alice', to);
    await turn();
    t.batches[0]!.answer([0, 0, 0]);
    await turn();
    await turn();
    assert.deepEqual(to.got, ['part of x1', 'part of x3']);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!.message, /a receiver bug/);
  } finally {
    process.off('warning', onWarning);
  }
});

test('messages on changing topics asked for by the callbacks of one loop phase leave as one batch; a single topic leaves after its first callback', async () => {
  const cases: [string[], string[][]][] = [
    [['ward/p1', 'ward/p2', 'ward/p3'], [['m1', 'm2', 'm3']]],
    [['home/door', 'home/door', 'home/door'], [['m1']]],
  ];
  for (const [topics, expected] of cases) {
    const t = new HeldTransport();
    const b = new RewrapBatcher(t);
    const to = new Collect();
    // a message before, on the last topic, answered
    b.add(1, Buffer.from('m0'), topics[topics.length - 1]!, 'alice', to);
    await turn();
    await turn();
    t.batches.shift()!.answer([0]);
    await turn();
    // three callbacks of one check phase, as three sockets read in one poll would be
    await new Promise<void>((done) => {
      topics.forEach((topic, i) =>
        setImmediate(() => {
          b.add(1, Buffer.from(`m${i + 1}`), topic, 'alice', to);
          if (i === topics.length - 1) done();
        }),
      );
    });
    await turn();
    await turn();
    assert.deepEqual(t.batches.map((x) => x.headers), expected, topics.join(', '));
  }
});
