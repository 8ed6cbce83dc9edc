/** Clients that hold a connection without finishing anything: no CONNECT, or a huge packet trickled in. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { codes, RawClient, startTestBroker, unique, withTimeout, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
before(async () => {
  tb = await startTestBroker((c) => {
    c.limits.connectTimeout = 1;
  });
});
after(() => tb.close());

for (const [what, bytes] of [
  ['sends nothing', Buffer.alloc(0)],
  ['sends half a CONNECT', Buffer.from([0x10, 0x20, 0x00, 0x04, 0x4d, 0x51])],
] as const) {
  test(`a connection that ${what} is closed after limits.connectTimeout (1 s here)`, async () => {
    const before = tb.broker.counters.connectTimeouts;
    const raw = await RawClient.open(tb.port, 4);
    const t0 = performance.now();
    if (bytes.length > 0) raw.write(bytes);
    await withTimeout(raw.closed, 4000, 'the broker to close the connection');
    const ms = performance.now() - t0;
    assert.ok(ms >= 900, `closed after ${ms.toFixed(0)} ms, before the timeout`);
    assert.equal(tb.broker.counters.connectTimeouts, before + 1);
  });
}

test('a client that connected in time is not closed by the CONNECT timeout', async () => {
  const raw = await tb.raw(4);
  await raw.connect({ clientId: unique('in-time') });
  await new Promise((resolve) => setTimeout(resolve, 2200));
  assert.equal(raw.isClosed, false);
  raw.send({ cmd: 'pingreq' });
  await raw.expect('pingresp');
});

// PUBLISH announcing 268 435 455 bytes (256 MiB, the largest remaining length MQTT can encode)
const HUGE_HEADER = [0x30, 0xff, 0xff, 0xff, 0x7f];

for (const version of [5, 4] as const) {
  test(`v${version === 5 ? '5' : '3.1.1'}: a 256 MiB PUBLISH whose header is trickled in byte by byte is refused${version === 5 ? ' with DISCONNECT 0x95' : ''} once the header is complete, before any of its body is sent (nothing of it is buffered)`, async () => {
    const raw = await tb.raw(version);
    await raw.connect({ clientId: unique('trickle') });
    const before = tb.broker.counters.oversizedPackets;
    // the header one byte at a time, each in its own segment
    for (const b of HUGE_HEADER) {
      raw.write(Buffer.from([b]));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const rest = await raw.closedByBroker();
    assert.deepEqual(codes(rest), version === 5 ? [['disconnect', 0x95]] : []);
    assert.equal(tb.broker.counters.oversizedPackets, before + 1);
  });
}
