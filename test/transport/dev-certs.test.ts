import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { ensureDevCertificates, issueClientCertificate } from '../../src/transport/dev-certs.js';
import { issueCertificate } from '../../src/transport/x509.js';
import { guard, makeTempDir } from '../helpers/transport.js';

async function readAll(paths: Record<'caCert' | 'caKey' | 'serverCert' | 'serverKey', string>) {
  const entries = await Promise.all(Object.entries(paths).map(async ([k, p]) => [k, await readFile(p, 'utf8')] as const));
  return Object.fromEntries(entries) as Record<keyof typeof paths, string>;
}

function withoutCreated<T extends { created: boolean }>(result: T): Omit<T, 'created'> {
  const { created: _created, ...paths } = result;
  return paths;
}

test('dev certs: created once under DATA/certs, then reused unchanged', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const data = join(temp.path, 'not-yet-there');
  const first = await ensureDevCertificates(data);
  assert.equal(first.created, true);
  assert.equal(first.caCert, join(data, 'certs', 'ca.crt'));
  assert.equal(first.serverKey, join(data, 'certs', 'server.key'));
  const before = await readAll(withoutCreated(first));

  const second = await ensureDevCertificates(data);
  assert.equal(second.created, false);
  assert.deepEqual(withoutCreated(second), withoutCreated(first));
  assert.deepEqual(await readAll(withoutCreated(second)), before);
});

test('dev certs: private keys are written with mode 0600 in a private folder', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const paths = await ensureDevCertificates(temp.path);
  const mode = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;
  assert.equal(await mode(paths.caKey), 0o600);
  assert.equal(await mode(paths.serverKey), 0o600);
  assert.equal(await mode(paths.caCert), 0o644);
  assert.equal(await mode(join(temp.path, 'certs')), 0o700);
});

test('dev certs: the server certificate is for localhost, 127.0.0.1 and ::1, issued by the CA, ECDSA P-256', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const pem = await readAll(withoutCreated(await ensureDevCertificates(temp.path)));
  const ca = new X509Certificate(pem.caCert);
  const server = new X509Certificate(pem.serverCert);
  assert.equal(ca.ca, true);
  assert.equal(server.ca, false);
  assert.ok(ca.verify(ca.publicKey), 'CA is self-signed');
  assert.ok(server.verify(ca.publicKey), 'server certificate is signed by the CA');
  assert.ok(server.checkIssued(ca));
  assert.equal(server.checkHost('localhost'), 'localhost');
  assert.equal(server.checkIP('127.0.0.1'), '127.0.0.1');
  assert.equal(server.checkIP('::1'), '::1');
  assert.deepEqual(server.keyUsage, ['1.3.6.1.5.5.7.3.1']);
  assert.ok(server.checkPrivateKey(createPrivateKey(pem.serverKey)));
  assert.equal(server.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.ok(Date.parse(server.validTo) > Date.now() + 365 * 86_400_000);
});

test('dev certs: an incomplete set is a clear error and nothing is overwritten', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const paths = await ensureDevCertificates(temp.path);
  const caBefore = await readFile(paths.caKey, 'utf8');
  await rm(paths.serverKey);
  await assert.rejects(ensureDevCertificates(temp.path), /incomplete \(missing server\.key\)/);
  assert.equal(await readFile(paths.caKey, 'utf8'), caBefore);
});

test('dev certs: a certs folder holding unrelated files is not taken over', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  await mkdir(join(temp.path, 'certs'));
  await writeFile(join(temp.path, 'certs', 'notes.txt'), 'mine');
  await assert.rejects(ensureDevCertificates(temp.path), /holds other files/);
  assert.equal(await readFile(join(temp.path, 'certs', 'notes.txt'), 'utf8'), 'mine');
});

test('dev certs: two starts at once end with one consistent set', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const results = await Promise.all([ensureDevCertificates(temp.path), ensureDevCertificates(temp.path)]);
  assert.equal(results.filter((r) => r.created).length, 1);
  const pem = await readAll(withoutCreated(results[0]!));
  assert.ok(new X509Certificate(pem.serverCert).verify(new X509Certificate(pem.caCert).publicKey));
  assert.ok(new X509Certificate(pem.caCert).checkPrivateKey(createPrivateKey(pem.caKey)));
});

test('dev certs: a server certificate about to expire is reissued from the same CA', guard, async (t) => {
  const temp = await makeTempDir();
  t.after(temp.remove);
  const paths = await ensureDevCertificates(temp.path);
  const ca = { cert: await readFile(paths.caCert, 'utf8'), key: await readFile(paths.caKey, 'utf8') };
  const expiring = await issueCertificate({ commonName: 'localhost', days: 1, role: 'server' }, ca);
  await writeFile(paths.serverCert, expiring.cert);
  await writeFile(paths.serverKey, expiring.key);

  const again = await ensureDevCertificates(temp.path);
  assert.equal(again.created, true);
  const renewed = new X509Certificate(await readFile(paths.serverCert));
  assert.ok(Date.parse(renewed.validTo) > Date.now() + 365 * 86_400_000);
  assert.ok(renewed.verify(new X509Certificate(ca.cert).publicKey));
  assert.ok(renewed.checkPrivateKey(createPrivateKey(await readFile(paths.serverKey, 'utf8'))));
  assert.equal(await readFile(paths.caCert, 'utf8'), ca.cert);
  assert.equal((await stat(paths.serverKey)).mode & 0o777, 0o600);
});

test('client certificates: CN, e-mail SAN, client-auth usage and validity as asked, signed by the CA', guard, async () => {
  const ca = await issueCertificate({ commonName: 'test CA', days: 30, role: 'ca' });
  const issued = await issueClientCertificate(ca, 'alice', { days: 10, sanEmail: 'alice@example.org' });
  const cert = new X509Certificate(issued.cert);
  assert.equal(cert.subject, 'CN=alice');
  assert.equal(cert.issuer, 'CN=test CA');
  assert.equal(cert.subjectAltName, 'email:alice@example.org');
  assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.2']);
  assert.ok(cert.verify(new X509Certificate(ca.cert).publicKey));
  assert.ok(cert.checkPrivateKey(createPrivateKey(issued.key)));
  const days = (Date.parse(cert.validTo) - Date.now()) / 86_400_000;
  assert.ok(days > 9.9 && days <= 10, `validity ${days} days`);
});

test('client certificates: a CN with DN syntax in it stays one literal CN', guard, async () => {
  const ca = await issueCertificate({ commonName: 'test CA', days: 30, role: 'ca' });
  const issued = await issueClientCertificate(ca, 'eve, O=Admins');
  assert.equal(new X509Certificate(issued.cert).subject, 'CN=eve\\, O=Admins');
});

test('client certificates: unusable input is refused with a specific error', guard, async () => {
  const ca = await issueCertificate({ commonName: 'test CA', days: 30, role: 'ca' });
  const other = await issueCertificate({ commonName: 'other CA', days: 30, role: 'ca' });
  await assert.rejects(issueClientCertificate({ cert: '/data/certs/ca.crt', key: ca.key }, 'a'), /PEM text .*not its path/);
  await assert.rejects(issueClientCertificate({ cert: ca.cert, key: other.key }, 'a'), /does not belong to the CA certificate/);
  await assert.rejects(issueClientCertificate(ca, ' '), /common name must not be empty/);
  await assert.rejects(issueClientCertificate(ca, 'a', { days: 0 }), /positive whole number of days/);
});
