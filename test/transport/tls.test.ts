import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as connectTcp } from 'node:net';
import { after, before, test } from 'node:test';
import { connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { issueClientCertificate } from '../../src/transport/dev-certs.js';
import { listenTls, type TlsOptions } from '../../src/transport/tls.js';
import type { Listener } from '../../src/transport/types.js';
import { issueCertificate } from '../../src/transport/x509.js';
import { Acceptor, assertAnonymousLoopback, echoHandler, makeDevPki, readBytes, whenClosed, type Accepted, type DevPki, guard } from '../helpers/transport.js';

let pki: DevPki;
before(async () => {
  pki = await makeDevPki();
});
after(() => pki.remove());

interface Harness {
  listener: Listener;
  acceptor: Acceptor;
  errors: string[];
  /** Resolves once the listener has reported a refused connection. */
  firstError: Promise<void>;
}

async function startTls(settings: Partial<TlsOptions>): Promise<Harness> {
  const acceptor = new Acceptor();
  const errors: string[] = [];
  let reported = (): void => {};
  const firstError = new Promise<void>((resolve) => (reported = resolve));
  const listener = await listenTls(
    {
      host: '127.0.0.1',
      port: 0,
      key: pki.server.key,
      cert: pki.server.cert,
      ca: pki.ca.cert,
      clientCerts: 'none',
      onError: (err) => {
        errors.push(err.message);
        reported();
      },
      ...settings,
    },
    (stream, info) => {
      acceptor.handler(stream, info);
      echoHandler(stream, info);
    },
  );
  return { listener, acceptor, errors, firstError };
}

/** Connects, verifying the server's certificate for "localhost" against the dev CA. */
async function connectClient(port: number, extra: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = connect({ host: '127.0.0.1', servername: 'localhost', port, ca: pki.ca.cert, ...extra });
  await once(socket, 'secureConnect');
  return socket;
}

/** A TLS client round trip: the bytes come back through the handler, which saw this connection. */
async function roundTrip(h: Harness, socket: TLSSocket): Promise<Accepted> {
  socket.write('ping');
  assert.equal((await readBytes(socket, 9)).toString(), 'echo:ping');
  return h.acceptor.nth(h.acceptor.accepted.length - 1);
}

/**
 * A client the server refuses: with TLS 1.3 the client may finish its side of the handshake
 * before the server's verdict, so what counts is that the handler never sees it and it is closed.
 */
async function assertRefused(h: Harness, extra: ConnectionOptions): Promise<void> {
  const socket = connect({ host: '127.0.0.1', servername: 'localhost', port: h.listener.port, ca: pki.ca.cert, ...extra });
  socket.on('error', () => {});
  socket.on('secureConnect', () => socket.write('ping'));
  const received: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  await whenClosed(socket);
  assert.equal(h.acceptor.accepted.length, 0);
  assert.equal(Buffer.concat(received).length, 0);
}

async function clientCert(commonName: string, opts: { sanEmail?: string; sanDns?: string; sanUri?: string } = {}) {
  return issueClientCertificate(pki.ca, commonName, opts);
}

test('tls: a client verifying the dev CA for "localhost" gets TLS 1.3 and reaches the handler', guard, async (t) => {
  const h = await startTls({});
  t.after(() => h.listener.close());
  assert.equal(h.listener.transport, 'tls');
  const socket = await connectClient(h.listener.port);
  assert.equal(socket.authorized, true);
  assert.equal(socket.getProtocol(), 'TLSv1.3');
  const { info } = await roundTrip(h, socket);
  assertAnonymousLoopback(info, 'tls');
  socket.destroy();
});

test('tls: a TLS 1.2-only client is served; a TLS 1.1-only one is not', guard, async (t) => {
  const h = await startTls({});
  t.after(() => h.listener.close());
  const socket = await connectClient(h.listener.port, { maxVersion: 'TLSv1.2' });
  assert.equal(socket.getProtocol(), 'TLSv1.2');
  await roundTrip(h, socket);
  socket.destroy();
  const old = connect({
    host: '127.0.0.1', servername: 'localhost', port: h.listener.port, ca: pki.ca.cert,
    minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT:@SECLEVEL=0',
  });
  const [err] = (await once(old, 'error')) as [Error];
  // The alert comes from the server: the client itself was willing to speak TLS 1.1.
  assert.match(err.message, /alert protocol version/);
  await h.firstError;
  assert.match(h.errors.join('\n'), /unsupported protocol/);
  assert.equal(h.acceptor.accepted.length, 1);
});

test('mutual tls: a client certificate signed by the CA yields its CN as identity', guard, async (t) => {
  const h = await startTls({ clientCerts: 'required' });
  t.after(() => h.listener.close());
  const socket = await connectClient(h.listener.port, await clientCert('sensor-17'));
  const { info } = await roundTrip(h, socket);
  assert.equal(info.certificateIdentity, 'sensor-17');
  socket.destroy();
});

test('mutual tls: a client without a certificate is refused when required', guard, async (t) => {
  const h = await startTls({ clientCerts: 'required' });
  t.after(() => h.listener.close());
  await assertRefused(h, {});
  await h.firstError;
  assert.match(h.errors.join('\n'), /certificate/);
});

test('mutual tls: a certificate from another CA is refused', guard, async (t) => {
  const h = await startTls({ clientCerts: 'required' });
  const optional = await startTls({ clientCerts: 'optional' });
  t.after(() => h.listener.close());
  t.after(() => optional.listener.close());
  const otherCa = await issueCertificate({ commonName: 'other CA', days: 30, role: 'ca' });
  const forged = await issueClientCertificate(otherCa, 'sensor-17');
  await assertRefused(h, forged);
  // 'optional' must not treat an unverifiable certificate as anonymous either.
  await assertRefused(optional, forged);
  await optional.firstError;
  assert.match(optional.errors.join('\n'), /client certificate refused/);
});

test("mutual tls: identityFrom 'san-email', 'san-dns' and 'san-uri' take that SAN, not the CN", guard, async () => {
  const cert = await clientCert('ignored-cn', {
    sanEmail: 'alice@example.org', sanDns: 'alice.devices.example.org', sanUri: 'spiffe://example.org/alice',
  });
  const expected = {
    'san-email': 'alice@example.org', 'san-dns': 'alice.devices.example.org', 'san-uri': 'spiffe://example.org/alice',
  } as const;
  for (const [identityFrom, identity] of Object.entries(expected)) {
    const h = await startTls({ clientCerts: 'required', identityFrom: identityFrom as keyof typeof expected });
    try {
      const socket = await connectClient(h.listener.port, cert);
      assert.equal((await roundTrip(h, socket)).info.certificateIdentity, identity);
      socket.destroy();
    } finally {
      await h.listener.close();
    }
  }
});

test("mutual tls: a verified certificate lacking the configured SAN is refused with the reason", guard, async (t) => {
  const h = await startTls({ clientCerts: 'required', identityFrom: 'san-email' });
  t.after(() => h.listener.close());
  await assertRefused(h, await clientCert('no-email'));
  await h.firstError;
  assert.match(h.errors.join('\n'), /no email subject alternative name/);
});

test("tls: 'optional' client certificates admit anonymous clients and identify certified ones", guard, async (t) => {
  const h = await startTls({ clientCerts: 'optional' });
  t.after(() => h.listener.close());
  const anonymous = await connectClient(h.listener.port);
  assert.equal((await roundTrip(h, anonymous)).info.certificateIdentity, undefined);
  const certified = await connectClient(h.listener.port, await clientCert('bob'));
  assert.equal((await roundTrip(h, certified)).info.certificateIdentity, 'bob');
  anonymous.destroy();
  certified.destroy();
});

test('tls: plain TCP on the TLS port is dropped, reported, and the listener keeps serving', guard, async (t) => {
  const h = await startTls({ clientCerts: 'required' });
  t.after(() => h.listener.close());
  const plain = connectTcp({ host: '127.0.0.1', port: h.listener.port });
  plain.on('error', () => {});
  plain.write(Buffer.from('100c00044d5154540402003c0000', 'hex')); // an MQTT CONNECT
  await whenClosed(plain);
  assert.equal(h.acceptor.accepted.length, 0);
  await h.firstError;
  assert.match(h.errors.join('\n'), /wrong version number|packet length too long|http request/i);
  const socket = await connectClient(h.listener.port, await clientCert('after'));
  assert.equal((await roundTrip(h, socket)).info.certificateIdentity, 'after');
  socket.destroy();
});

test('tls: unusable settings are refused with a specific error', guard, async () => {
  const base = { port: 0, key: pki.server.key, cert: pki.server.cert };
  await assert.rejects(listenTls({ ...base, clientCerts: 'required' }, () => {}), /needs a ca/);
  await assert.rejects(listenTls({ ...base, key: 'not a key', clientCerts: 'none' }, () => {}), /invalid TLS key/);
  await assert.rejects(
    listenTls({ ...base, ca: pki.ca.cert, clientCerts: 'always' as 'required' }, () => {}),
    /clientCerts must be/,
  );
});
