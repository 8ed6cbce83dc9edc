import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { WebSocket, type ClientOptions } from 'ws';
import { issueClientCertificate } from '../../src/transport/dev-certs.js';
import type { TlsSettings } from '../../src/transport/tls.js';
import type { Listener } from '../../src/transport/types.js';
import { listenWebSocket, type WebSocketOptions } from '../../src/transport/websocket.js';
import { issueCertificate } from '../../src/transport/x509.js';
import { Acceptor, assertAnonymousLoopback, echoHandler, makeDevPki, readBytes, whenClosed, type DevPki, guard } from '../helpers/transport.js';

let pki: DevPki;
before(async () => {
  pki = await makeDevPki();
});
after(() => pki.remove());

function tlsSettings(extra: Partial<TlsSettings> = {}): TlsSettings {
  return { key: pki.server.key, cert: pki.server.cert, ca: pki.ca.cert, clientCerts: 'none', ...extra };
}

async function startWs(opts: Partial<WebSocketOptions> = {}): Promise<{ listener: Listener; acceptor: Acceptor }> {
  const acceptor = new Acceptor();
  const listener = await listenWebSocket({ host: '127.0.0.1', port: 0, ...opts }, (stream, info) => {
    acceptor.handler(stream, info);
    echoHandler(stream, info);
  });
  return { listener, acceptor };
}

async function open(url: string, options: ClientOptions = {}, protocols: string[] = ['mqtt']): Promise<WebSocket> {
  const ws = new WebSocket(url, protocols, options);
  await once(ws, 'open');
  return ws;
}

async function nextMessage(ws: WebSocket): Promise<{ data: Buffer; isBinary: boolean }> {
  const [data, isBinary] = (await once(ws, 'message')) as [Buffer, boolean];
  return { data, isBinary };
}

test('ws: binary bytes flow both ways with subprotocol "mqtt" on /mqtt', guard, async (t) => {
  const { listener, acceptor } = await startWs();
  t.after(() => listener.close());
  assert.equal(listener.transport, 'ws');
  const ws = await open(`ws://127.0.0.1:${listener.port}/mqtt`);
  assert.equal(ws.protocol, 'mqtt');
  ws.send(Buffer.from([0x10, 0x0c, 0x00, 0x04]));
  const reply = await nextMessage(ws);
  assert.equal(reply.isBinary, true);
  assert.deepEqual(reply.data, Buffer.concat([Buffer.from('echo:'), Buffer.from([0x10, 0x0c, 0x00, 0x04])]));
  const { info } = await acceptor.nth(0);
  assertAnonymousLoopback(info, 'ws');
  ws.close();
});

test('ws: the handler sees one byte stream across frames, and its writes arrive in order', guard, async (t) => {
  const acceptor = new Acceptor();
  const listener = await listenWebSocket({ port: 0 }, acceptor.handler);
  t.after(() => listener.close());
  const ws = await open(`ws://127.0.0.1:${listener.port}/mqtt`);
  ws.send(Buffer.from('ab'));
  ws.send(Buffer.from('cde'));
  const { stream } = await acceptor.nth(0);
  assert.equal((await readBytes(stream, 5)).toString(), 'abcde');
  const received: string[] = [];
  ws.on('message', (data: Buffer) => received.push(data.toString()));
  stream.write('one');
  stream.write('two');
  const closed = whenClosed(ws);
  stream.end();
  await closed;
  assert.equal(received.join(''), 'onetwo');
});

test("ws: the handler's stream.destroy() closes the WebSocket", guard, async (t) => {
  const acceptor = new Acceptor();
  const listener = await listenWebSocket({ port: 0 }, acceptor.handler);
  t.after(() => listener.close());
  const ws = await open(`ws://127.0.0.1:${listener.port}/mqtt`);
  const closed = whenClosed(ws);
  (await acceptor.nth(0)).stream.destroy();
  await closed;
  assert.equal(ws.readyState, WebSocket.CLOSED);
});

test('ws: a text frame closes the connection and its bytes never reach the handler', guard, async (t) => {
  const acceptor = new Acceptor();
  const errors: string[] = [];
  const listener = await listenWebSocket({ port: 0, onError: (e) => errors.push(e.message) }, acceptor.handler);
  t.after(() => listener.close());
  const ws = await open(`ws://127.0.0.1:${listener.port}/mqtt`);
  const { stream } = await acceptor.nth(0);
  const outcome = new Promise<string>((resolve) => {
    stream.once('data', (chunk: Buffer) => resolve(`data: ${chunk.toString('hex')}`));
    stream.once('close', () => resolve('closed'));
  });
  ws.send('\x10\x0c\x00\x04MQTT');
  assert.equal(await outcome, 'closed');
  assert.match(errors.join('\n'), /binary frames only/);
});

test('ws: a configured path is served and other paths get 404', guard, async (t) => {
  const { listener, acceptor } = await startWs({ path: '/broker' });
  t.after(() => listener.close());
  const wrong = new WebSocket(`ws://127.0.0.1:${listener.port}/mqtt`, ['mqtt']);
  wrong.on('error', () => {});
  const [, response] = (await once(wrong, 'unexpected-response')) as [unknown, { statusCode: number }];
  assert.equal(response.statusCode, 404);
  const ws = await open(`ws://127.0.0.1:${listener.port}/broker?client=1`);
  ws.send(Buffer.from('x'));
  assert.equal((await nextMessage(ws)).data.toString(), 'echo:x');
  assert.equal(acceptor.accepted.length, 1);
  ws.close();
});

test('ws: a plain HTTP request is told to upgrade', guard, async (t) => {
  const { listener } = await startWs();
  t.after(() => listener.close());
  const response = await fetch(`http://127.0.0.1:${listener.port}/mqtt`);
  assert.equal(response.status, 426);
  assert.match(await response.text(), /WebSocket/);
});

test('wss: bytes flow both ways over TLS verified against the dev CA for "localhost"', guard, async (t) => {
  const { listener, acceptor } = await startWs({ tls: tlsSettings() });
  t.after(() => listener.close());
  assert.equal(listener.transport, 'wss');
  const ws = await open(`wss://localhost:${listener.port}/mqtt`, { ca: pki.ca.cert });
  assert.equal(ws.protocol, 'mqtt');
  ws.send(Buffer.from('hello'));
  assert.equal((await nextMessage(ws)).data.toString(), 'echo:hello');
  assert.equal((await acceptor.nth(0)).info.transport, 'wss');
  ws.close();
});

test('wss: mutual TLS gives the certificate identity; a missing certificate is refused', guard, async (t) => {
  const { listener, acceptor } = await startWs({ tls: tlsSettings({ clientCerts: 'required' }) });
  t.after(() => listener.close());
  const client = await issueClientCertificate(pki.ca, 'dashboard-3');
  const ws = await open(`wss://localhost:${listener.port}/mqtt`, { ca: pki.ca.cert, ...client });
  ws.send(Buffer.from('x'));
  await nextMessage(ws);
  assert.equal((await acceptor.nth(0)).info.certificateIdentity, 'dashboard-3');
  ws.close();

  const anonymous = new WebSocket(`wss://localhost:${listener.port}/mqtt`, ['mqtt'], { ca: pki.ca.cert });
  anonymous.on('error', () => {});
  await whenClosed(anonymous);
  assert.equal(acceptor.accepted.length, 1);
});

test('wss: with optional client certificates a certificate from another CA is refused before the upgrade', guard, async (t) => {
  const { listener, acceptor } = await startWs({ tls: tlsSettings({ clientCerts: 'optional' }) });
  t.after(() => listener.close());
  const otherCa = await issueCertificate({ commonName: 'other CA', days: 30, role: 'ca' });
  const forged = await issueClientCertificate(otherCa, 'dashboard-3');
  const ws = new WebSocket(`wss://localhost:${listener.port}/mqtt`, ['mqtt'], { ca: pki.ca.cert, ...forged });
  ws.on('error', () => {});
  await whenClosed(ws);
  assert.equal(acceptor.accepted.length, 0);
  const anonymous = await open(`wss://localhost:${listener.port}/mqtt`, { ca: pki.ca.cert });
  anonymous.send(Buffer.from('x'));
  await nextMessage(anonymous);
  assert.equal((await acceptor.nth(0)).info.certificateIdentity, undefined);
  anonymous.close();
});
