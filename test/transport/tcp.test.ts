import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { listenTcp } from '../../src/transport/tcp.js';
import { Acceptor, assertAnonymousLoopback, echoHandler, readBytes, whenClosed, guard } from '../helpers/transport.js';

async function connectTo(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  return socket;
}

test('tcp: bytes flow both ways through the handler, on an ephemeral port', guard, async (t) => {
  const acceptor = new Acceptor();
  const listener = await listenTcp({ host: '127.0.0.1', port: 0 }, (stream, info) => {
    acceptor.handler(stream, info);
    echoHandler(stream, info);
  });
  t.after(() => listener.close());
  assert.equal(listener.transport, 'tcp');
  assert.equal(listener.host, '127.0.0.1');
  assert.ok(listener.port > 0);
  const client = await connectTo(listener.port);
  client.write('\x10\x0c\x00\x04MQTT');
  assert.equal((await readBytes(client, 13)).toString('latin1'), 'echo:\x10\x0c\x00\x04MQTT');
  const { info } = await acceptor.nth(0);
  assertAnonymousLoopback(info, 'tcp');
  assert.equal(info.remotePort, client.localPort);
  client.destroy();
});

test("tcp: the handler's stream.destroy() closes the client's socket", guard, async (t) => {
  const acceptor = new Acceptor();
  const listener = await listenTcp({ port: 0 }, acceptor.handler);
  t.after(() => listener.close());
  const client = await connectTo(listener.port);
  const closed = whenClosed(client);
  (await acceptor.nth(0)).stream.destroy();
  await closed;
  assert.equal(client.destroyed, true);
});

test('tcp: over maxConnections a new connection is dropped before the handler and reported', guard, async (t) => {
  const acceptor = new Acceptor();
  const errors: string[] = [];
  const listener = await listenTcp(
    { port: 0, maxConnections: 1, onError: (err) => errors.push(err.message) },
    acceptor.handler,
  );
  t.after(() => listener.close());
  const first = await connectTo(listener.port);
  await acceptor.nth(0);
  const second = connect({ host: '127.0.0.1', port: listener.port });
  second.on('error', () => {});
  await whenClosed(second);
  assert.equal(acceptor.accepted.length, 1);
  assert.match(errors.join('\n'), /limit of 1 connections/);
  first.destroy();
});

test('tcp: close() stops accepting and ends open connections', guard, async () => {
  const acceptor = new Acceptor();
  const listener = await listenTcp({ port: 0 }, acceptor.handler);
  const client = await connectTo(listener.port);
  await acceptor.nth(0);
  assert.equal(listener.connectionCount, 1);
  const clientClosed = whenClosed(client);
  await listener.close();
  await clientClosed;
  const refused = connect({ host: '127.0.0.1', port: listener.port });
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
});

test('tcp: a port already in use is a clear error', guard, async (t) => {
  const first = await listenTcp({ host: '127.0.0.1', port: 0 }, () => {});
  t.after(() => first.close());
  await assert.rejects(
    listenTcp({ host: '127.0.0.1', port: first.port }, () => {}),
    /cannot listen for tcp on 127\.0\.0\.1:\d+: .*EADDRINUSE/,
  );
});

test('tcp: a client resetting its connection does not crash the listener', guard, async (t) => {
  const acceptor = new Acceptor();
  const listener = await listenTcp({ port: 0 }, acceptor.handler);
  t.after(() => listener.close());
  const client = await connectTo(listener.port);
  const { stream } = await acceptor.nth(0);
  const closed = whenClosed(stream);
  client.resetAndDestroy();
  await closed;
  const again = await connectTo(listener.port);
  await acceptor.nth(1);
  again.destroy();
});
