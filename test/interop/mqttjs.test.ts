/** MQTT.js (protocol 4 and 5) against the broker over TCP, TLS with the development CA, and WebSockets. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { IClientOptions } from 'mqtt';
import { devPki, inboxOf, startTestBroker, unique, waitUntil, type DevPki, type TestBroker } from '../helpers/broker.js';

let tb: TestBroker;
let pki: DevPki;
let urls: Record<'tcp' | 'tls' | 'ws', string>;

before(async () => {
  tb = await startTestBroker((c) => {
    c.tls = { port: 0, clientCerts: 'optional', identityFrom: 'cn' };
    c.websocket = { port: 0, path: '/mqtt' };
    c.identityFrom = 'certificate';
  });
  pki = devPki(tb.dataDir);
  urls = {
    tcp: tb.url,
    tls: `mqtts://127.0.0.1:${tb.running.port('tls')}`,
    ws: `ws://127.0.0.1:${tb.running.port('ws')}/mqtt`,
  };
});
after(() => tb.close());

const transportOptions = (transport: keyof typeof urls): IClientOptions =>
  transport === 'tls' ? { ca: pki.caCert, rejectUnauthorized: true } : {};

for (const protocolVersion of [4, 5] as const) {
  describe(`MQTT.js protocol ${protocolVersion}`, () => {
    for (const transport of ['tcp', 'tls', 'ws'] as const) {
      test(`over ${transport}: subscribe, then publish at QoS 0, 1 and 2, and receive each once`, async () => {
        const topic = unique(`interop/${transport}`);
        const opts = { protocolVersion, ...transportOptions(transport) };
        const sub = await tb.mqtt(opts, urls[transport]);
        const granted = await sub.subscribeAsync(topic, { qos: 2 });
        assert.equal(granted[0]?.qos, 2);
        const pub = await tb.mqtt(opts, urls[transport]);
        for (const qos of [0, 1, 2] as const) await pub.publishAsync(topic, `${transport}-q${qos}`, { qos });
        const got = (await inboxOf(sub).take(3)).map((m) => [m.topic, m.payload, m.packet.qos]);
        assert.deepEqual(
          got.sort((a, b) => Number(a[2]) - Number(b[2])),
          [0, 1, 2].map((qos) => [topic, `${transport}-q${qos}`, qos]),
        );
        const conn = tb.broker.clients.get(sub.options.clientId!);
        assert.equal(conn?.transport.transport, transport);
        assert.equal(conn?.version, protocolVersion);
      });
    }

    test('a message crosses transports: published over WebSockets, received over TLS and TCP', async () => {
      const topic = unique('interop/cross');
      const overTls = await tb.mqtt({ protocolVersion, ...transportOptions('tls') }, urls.tls);
      const overTcp = await tb.mqtt({ protocolVersion }, urls.tcp);
      await overTls.subscribeAsync(topic, { qos: 1 });
      await overTcp.subscribeAsync(topic, { qos: 1 });
      const overWs = await tb.mqtt({ protocolVersion }, urls.ws);
      await overWs.publishAsync(topic, 'crossing', { qos: 1 });
      assert.equal((await inboxOf(overTls).next()).payload, 'crossing');
      assert.equal((await inboxOf(overTcp).next()).payload, 'crossing');
    });

    test('over TLS with a client certificate, the certificate CN becomes the client identity', async () => {
      const cn = unique('device');
      const cert = await pki.issue(cn);
      const client = await tb.mqtt({ protocolVersion, ca: pki.caCert, cert: cert.cert, key: cert.key }, urls.tls);
      const clientId = client.options.clientId!;
      await waitUntil(() => tb.broker.clients.has(clientId), 'the broker lists the client');
      assert.equal(tb.broker.clients.get(clientId)?.identity, cn);
      assert.equal(tb.broker.clients.get(clientId)?.certificateIdentity, cn);
      // and an anonymous TLS client (clientCerts: optional) has no certificate identity
      const anonymous = await tb.mqtt({ protocolVersion, ca: pki.caCert }, urls.tls);
      assert.equal(tb.broker.clients.get(anonymous.options.clientId!)?.certificateIdentity, undefined);
    });
  });
}

test('a TLS client that does not trust the broker certificate cannot connect', async () => {
  await assert.rejects(tb.mqtt({ rejectUnauthorized: true }, urls.tls));
});
