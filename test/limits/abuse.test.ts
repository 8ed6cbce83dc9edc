/** Abuse limits over real sockets: connection rate, connections per address, flapping bans, publish throttles, the connection limit. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Packet } from 'mqtt-packet';
import mqttPacket from 'mqtt-packet';
import { RawClient, startTestBroker, unique, waitUntil, withTimeout, WAIT_MS, type TestBroker } from '../helpers/broker.js';
import type { Limits } from '../../src/config.js';

async function brokerWith(limits: Partial<Limits>): Promise<TestBroker> {
  return startTestBroker((c) => Object.assign(c.limits, limits));
}

/** CONNECT on a fresh socket: the CONNACK's code, or 'closed' if the broker closed the connection without one. */
async function tryConnect(tb: TestBroker, clientId: string, version: 4 | 5 = 5, from?: string): Promise<number | 'closed'> {
  const raw = await RawClient.open(tb.port, version, '127.0.0.1', from);
  raw.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId, clean: true, keepalive: 0 });
  try {
    const p = await raw.next('CONNACK');
    assert.equal(p.cmd, 'connack');
    return p.cmd === 'connack' ? ((version === 5 ? p.reasonCode : p.returnCode) ?? 0) : -1;
  } catch (err) {
    if (raw.isClosed) return 'closed';
    throw err;
  } finally {
    raw.destroy();
  }
}

test('past limits.connectionRate a listener closes new connections before reading their CONNECT, and lets them in again once the rate allows', async () => {
  const tb = await brokerWith({ connectionRate: 5 });
  try {
    const results = await Promise.all(Array.from({ length: 15 }, (_, i) => tryConnect(tb, unique(`rate-${i}`))));
    const accepted = results.filter((r) => r === 0).length;
    const closed = results.filter((r) => r === 'closed').length;
    assert.equal(accepted + closed, 15, JSON.stringify(results));
    // a burst of 5 (one second's worth), plus whatever refilled while the 15 were opened
    assert.ok(accepted >= 5 && accepted <= 10, `accepted ${accepted}: ${JSON.stringify(results)}`);
    assert.equal(tb.broker.counters.refusedConnectionRate, closed);
    await new Promise((resolve) => setTimeout(resolve, 400)); // two tokens at 5/s
    assert.equal(await tryConnect(tb, unique('rate-later')), 0);
  } finally {
    await tb.close();
  }
});

test('limits.maxConnectionsPerAddress: one address gets that many open connections, other addresses are not affected, a closed one frees its place', async () => {
  const tb = await brokerWith({ maxConnectionsPerAddress: 2 });
  try {
    const held = [await tb.raw(5), await tb.raw(5)];
    for (const r of held) assert.equal((await r.connect({ clientId: unique('addr') })).reasonCode, 0);
    assert.equal(await tryConnect(tb, unique('addr-third')), 'closed');
    assert.equal(await tryConnect(tb, unique('addr-other'), 5, '127.0.0.2'), 0);
    assert.equal(tb.broker.counters.refusedPerAddress, 1);
    held[0]!.destroy();
    await waitUntil(() => tb.broker.connections.size === 1, 'the broker to see the connection closed');
    assert.equal(await tryConnect(tb, unique('addr-again')), 0);
  } finally {
    await tb.close();
  }
});

test('flapping: more than limits.flapConnects connects of one client id ban that id from every address (v5 CONNACK 0x9F), other ids go on', async () => {
  const tb = await brokerWith({ flapConnects: 3, flapWindow: 60, flapBan: 1 });
  try {
    const id = unique('flappy');
    // each from its own address, so only the client id flaps
    for (let i = 0; i < 3; i++) assert.equal(await tryConnect(tb, id, 5, `127.0.1.${i + 1}`), 0, `connect ${i + 1}`);
    assert.equal(await tryConnect(tb, id, 5, '127.0.1.4'), 0x9f);
    assert.equal(await tryConnect(tb, id, 5, '127.0.1.5'), 0x9f);
    assert.equal(await tryConnect(tb, id, 4, '127.0.1.6'), 3, 'v3.1.1: CONNACK 3 (server unavailable)');
    assert.equal(await tryConnect(tb, unique('calm'), 5, '127.0.1.5'), 0);
    assert.equal(tb.broker.counters.flapBans, 1);
    assert.equal(tb.broker.counters.refusedBanned, 3);
    await new Promise((resolve) => setTimeout(resolve, 1100)); // limits.flapBan: 1 s
    assert.equal(await tryConnect(tb, id, 5, '127.0.1.7'), 0, 'the ban is over');
  } finally {
    await tb.close();
  }
});

test('flapping: more than limits.flapConnects connects from one address ban that address for every client id, whatever id it tries', async () => {
  const tb = await brokerWith({ flapConnects: 3, flapWindow: 60, flapBan: 60 });
  try {
    const from = '127.0.2.1';
    for (let i = 0; i < 3; i++) assert.equal(await tryConnect(tb, unique('hopper'), 5, from), 0);
    assert.equal(await tryConnect(tb, unique('hopper'), 5, from), 0x9f);
    assert.equal(await tryConnect(tb, unique('hopper'), 5, from), 0x9f);
    assert.equal(await tryConnect(tb, '', 5, from), 0x9f, 'an id to be assigned');
    assert.equal(await tryConnect(tb, unique('hopper'), 5, '127.0.2.2'), 0, 'another address');
    assert.equal(tb.broker.counters.flapBans, 1);
  } finally {
    await tb.close();
  }
});

/** Publishes `count` QoS 1 messages of `payload` bytes in one write; resolves with the ms until the last PUBACK. */
async function publishBurst(raw: RawClient, topic: string, count: number, payload: number): Promise<number> {
  const packets = Array.from({ length: count }, (_, i) =>
    mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(payload, 0x61), qos: 1, dup: false, retain: false, messageId: i + 1 }, { protocolVersion: 5 }),
  );
  const t0 = performance.now();
  raw.write(Buffer.concat(packets));
  for (let i = 0; i < count; i++) {
    const p: Packet = await raw.next(`PUBACK ${i + 1} of ${count}`, 10_000);
    assert.equal(p.cmd, 'puback');
  }
  return performance.now() - t0;
}

test('limits.publishRate: a client publishing faster is slowed (its socket is not read), not disconnected, and others are not slowed', async () => {
  const rate = 20;
  const tb = await brokerWith({ publishRate: rate });
  try {
    const fast = await tb.raw(5);
    await fast.connect({ clientId: unique('fast') });
    const burst = publishBurst(fast, unique('rate/topic'), 3 * rate, 8);
    await waitUntil(() => tb.broker.counters.publishPauses > 0, 'the fast client to be paused');
    // a bystander within its own budget round-trips at once while the fast one waits
    const bystander = await tb.raw(5);
    await bystander.connect({ clientId: unique('bystander') });
    assert.ok((await publishBurst(bystander, unique('rate/other'), 3, 8)) < 500, 'the bystander is not slowed');
    const ms = await burst;
    // 1 s of burst, the other 2 s worth at 20/s
    assert.ok(ms >= 1700, `${3 * rate} publishes at ${rate}/s took only ${ms.toFixed(0)} ms`);
    assert.equal(fast.isClosed, false);
    assert.ok(tb.broker.counters.publishPauses >= 1);
  } finally {
    await tb.close();
  }
});

test('limits.publishByteRate: a client sending more bytes per second is slowed to that rate, not disconnected', async () => {
  const byteRate = 32 * 1024;
  const tb = await brokerWith({ publishByteRate: byteRate });
  try {
    const raw = await tb.raw(5);
    await raw.connect({ clientId: unique('bytes') });
    const count = 64;
    const ms = await publishBurst(raw, unique('bytes/topic'), count, 1024);
    // the whole packets count: 64 x ~1 040 bytes, 32 KiB of them free (the burst)
    const expected = ((count * 1040 - byteRate) / byteRate) * 1000;
    assert.ok(ms >= expected * 0.8, `${count} KiB at ${byteRate} B/s took only ${ms.toFixed(0)} ms (expected about ${expected.toFixed(0)})`);
    assert.equal(raw.isClosed, false);
  } finally {
    await tb.close();
  }
});

test('at limits.maxConnections v5 clients get CONNACK 0x97 and v3.1.1 clients a closed connection, while the connected ones keep round-tripping', async () => {
  const max = 10;
  const tb = await brokerWith({ maxConnections: max });
  try {
    const topic = unique('full/echo');
    const sub = await tb.raw(5);
    await sub.connect({ clientId: unique('full-sub') });
    await sub.subscribe(topic, 0);
    const pub = await tb.raw(5);
    await pub.connect({ clientId: unique('full-pub') });
    const others = await Promise.all(Array.from({ length: max - 2 }, () => tb.raw(4)));
    for (const o of others) assert.equal((await o.connect({ clientId: unique('full') })).returnCode, 0);

    let worst = 0;
    let rounds = 0;
    let flooding = true;
    const roundTrips = (async () => {
      while (flooding) {
        const t0 = performance.now();
        pub.send({ cmd: 'publish', topic, payload: Buffer.from('ping'), qos: 0, dup: false, retain: false });
        await sub.expect('publish');
        worst = Math.max(worst, performance.now() - t0);
        rounds++;
      }
    })();
    const attempts = await Promise.all(Array.from({ length: 2 * max }, (_, i) => tryConnect(tb, unique('extra'), i % 2 === 0 ? 5 : 4)));
    flooding = false;
    await withTimeout(roundTrips, WAIT_MS, 'the round trips to stop');
    for (let i = 0; i < attempts.length; i++) assert.equal(attempts[i], i % 2 === 0 ? 0x97 : 'closed', `attempt ${i} (v${i % 2 === 0 ? 5 : '3.1.1'})`);
    assert.ok(rounds > 0, 'round trips went on during the flood');
    assert.ok(worst < 1000, `the slowest round trip during the flood took ${worst.toFixed(0)} ms`);
    assert.equal(tb.broker.counters.refusedConnectionLimit, 2 * max);
    assert.equal(tb.broker.clients.size, max);
    // a place that frees up is taken again
    others[0]!.destroy();
    await waitUntil(() => tb.broker.connections.size === max - 1, 'the broker to see a connection closed');
    assert.equal(await tryConnect(tb, unique('after')), 0);
  } finally {
    await tb.close();
  }
});

test('a client held back by its byte rate longer than its keep alive is not disconnected for the silence the broker imposed', async () => {
  const tb = await brokerWith({ publishByteRate: 1000 });
  try {
    const raw = await tb.raw(4);
    await raw.connect({ clientId: unique('slow-keepalive'), keepalive: 1 });
    // 4 KB overdraws the budget by ~3 s; the second PUBLISH waits that long, unread
    const ms = await publishBurstV4(raw, unique('keepalive/topic'), [4000, 10]);
    assert.ok(ms >= 2500, `the second PUBLISH waited only ${ms.toFixed(0)} ms`);
    raw.send({ cmd: 'pingreq' });
    await raw.expect('pingresp');
    assert.ok(tb.broker.counters.publishPauses >= 1);
    assert.equal(raw.isClosed, false);
  } finally {
    await tb.close();
  }
});

/** v3.1.1 QoS 1 PUBLISHes of the given payload sizes in one write; ms until the last PUBACK. */
async function publishBurstV4(raw: RawClient, topic: string, sizes: number[]): Promise<number> {
  const t0 = performance.now();
  raw.write(Buffer.concat(sizes.map((n, i) => mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(n), qos: 1, dup: false, retain: false, messageId: i + 1 }))));
  for (const _ of sizes) await raw.expect('puback', 10_000);
  return performance.now() - t0;
}
