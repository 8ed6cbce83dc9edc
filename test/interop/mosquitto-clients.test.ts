/**
 * mosquitto_pub / mosquitto_sub (Debian's mosquitto-clients) against the broker: plain TCP with
 * MQTT 3.1.1 and 5, and mutual TLS where the client certificate's CN becomes the identity.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ensureDevCertificates } from '../../src/transport/dev-certs.js';
import { devPki, inboxOf, startTestBroker, unique, waitUntil, withTimeout, WAIT_MS, type DevPki, type TestBroker } from '../helpers/broker.js';

const INSTALL_HINT = 'install mosquitto-clients (Debian/Ubuntu: apt-get install -y mosquitto-clients); these interoperability tests need it';

/** Fails (never skips) when the tools are missing. */
function requireMosquittoClients(): void {
  for (const tool of ['mosquitto_pub', 'mosquitto_sub']) {
    const probe = spawnSync(tool, ['--help'], { stdio: 'ignore' });
    if (probe.error) assert.fail(`${tool} not found on PATH: ${INSTALL_HINT}`);
  }
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs mosquitto_pub to completion. */
function mosquittoPub(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile('mosquitto_pub', args, { timeout: WAIT_MS }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Starts mosquitto_sub; `done` resolves when it exits (after -C messages or -W seconds). */
function mosquittoSub(args: string[]): { done: Promise<Run>; kill(): void } {
  const child = spawn('mosquitto_sub', ['-W', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<Run>((resolve) => {
    child.once('error', (err) => resolve({ code: -1, stdout, stderr: stderr + err.message }));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  return { done, kill: () => child.kill() };
}

const subs: { kill(): void }[] = [];
let tb: TestBroker;
let tlsPort: number;
let pki: DevPki;

before(async () => {
  tb = await startTestBroker((c) => {
    c.tls = { port: 0, clientCerts: 'required', identityFrom: 'cn' };
    c.identityFrom = 'certificate';
  });
  tlsPort = tb.running.port('tls') ?? 0;
  pki = devPki(tb.dataDir);
});
after(async () => {
  for (const s of subs) s.kill();
  await tb.close();
});

/** Waits until the client `clientId` is connected and subscribed to `filter`. */
async function subscribed(clientId: string, filter: string, sub: { done: Promise<Run> }): Promise<void> {
  let exited: Run | undefined;
  void sub.done.then((r) => (exited = r));
  await waitUntil(
    () => exited !== undefined || tb.broker.sessions.get(clientId)?.subscriptions.has(filter) === true,
    `${clientId} to subscribe to ${filter}`,
  );
  if (exited) assert.fail(`mosquitto_sub exited early (${exited.code}): ${exited.stderr}`);
}

async function received(sub: { done: Promise<Run> }): Promise<string> {
  const r = await withTimeout(sub.done, 12_000, 'mosquitto_sub to exit');
  assert.equal(r.code, 0, `mosquitto_sub failed: ${r.stderr}`);
  return r.stdout.trim();
}

for (const [label, version] of [['MQTT 3.1.1', 'mqttv311'], ['MQTT 5', '5']] as const) {
  describe(`${label} over plain TCP`, () => {
    test('mosquitto_sub receives what mosquitto_pub publishes at QoS 0, 1 and 2', async () => {
      requireMosquittoClients();
      for (const qos of ['0', '1', '2']) {
        const topic = unique('mosq/tcp');
        const clientId = unique('mosq-sub');
        const common = ['-h', '127.0.0.1', '-p', String(tb.port), '-V', version];
        const sub = mosquittoSub([...common, '-i', clientId, '-t', topic, '-q', qos, '-C', '1', '-v']);
        subs.push(sub);
        await subscribed(clientId, topic, sub);
        const pub = await mosquittoPub([...common, '-t', topic, '-q', qos, '-m', `hello q${qos}`]);
        assert.equal(pub.code, 0, `mosquitto_pub failed: ${pub.stderr}`);
        assert.equal(await received(sub), `${topic} hello q${qos}`);
      }
    });

    test('a retained message from mosquitto_pub reaches a later MQTT.js and mosquitto_sub subscriber', async () => {
      requireMosquittoClients();
      const topic = unique('mosq/retained');
      const common = ['-h', '127.0.0.1', '-p', String(tb.port), '-V', version];
      const pub = await mosquittoPub([...common, '-t', topic, '-q', '1', '-r', '-m', 'kept']);
      assert.equal(pub.code, 0, pub.stderr);
      const sub = mosquittoSub([...common, '-t', topic, '-C', '1', '-v']);
      subs.push(sub);
      assert.equal(await received(sub), `${topic} kept`);
      const js = await tb.mqtt({ protocolVersion: version === '5' ? 5 : 4 });
      await js.subscribeAsync(topic, { qos: 1 });
      const m = await inboxOf(js).next('the retained message');
      assert.equal(m.payload, 'kept');
      assert.equal(m.packet.retain, true);
    });
  });
}

test('MQTT 5: user properties and content type set by mosquitto_pub reach an MQTT.js subscriber', async () => {
  requireMosquittoClients();
  const topic = unique('mosq/props');
  const js = await tb.mqtt({ protocolVersion: 5 });
  await js.subscribeAsync(topic, { qos: 1 });
  const pub = await mosquittoPub([
    '-h', '127.0.0.1', '-p', String(tb.port), '-V', '5', '-t', topic, '-q', '1', '-m', '{"t":21}',
    '-D', 'publish', 'user-property', 'site', 'lab',
    '-D', 'publish', 'content-type', 'application/json',
  ]);
  assert.equal(pub.code, 0, pub.stderr);
  const m = await inboxOf(js).next();
  assert.equal(m.payload, '{"t":21}');
  assert.deepEqual({ ...m.packet.properties?.userProperties }, { site: 'lab' });
  assert.equal(m.packet.properties?.contentType, 'application/json');
});

describe('mutual TLS', () => {
  for (const [label, version] of [['MQTT 3.1.1', 'mqttv311'], ['MQTT 5', '5']] as const) {
    test(`${label}: clients with certificates exchange messages and are known by their certificate CN`, async () => {
      requireMosquittoClients();
      const topic = unique('mosq/mtls');
      const subCn = unique('sensor');
      const pubCn = unique('controller');
      const [subCert, pubCert] = [await pki.issue(subCn), await pki.issue(pubCn)];
      const tls = (c: { certPath: string; keyPath: string }): string[] => [
        '-h', '127.0.0.1', '-p', String(tlsPort), '-V', version, '--cafile', pki.caCertPath, '--cert', c.certPath, '--key', c.keyPath,
      ];
      const clientId = unique('mtls-sub');
      const sub = mosquittoSub([...tls(subCert), '-i', clientId, '-t', topic, '-q', '1', '-C', '1', '-v']);
      subs.push(sub);
      await subscribed(clientId, topic, sub);
      const conn = tb.broker.clients.get(clientId);
      assert.equal(conn?.transport.transport, 'tls');
      assert.equal(conn?.identity, subCn);
      const pub = await mosquittoPub([...tls(pubCert), '-t', topic, '-q', '1', '-m', 'over mTLS']);
      assert.equal(pub.code, 0, `mosquitto_pub failed: ${pub.stderr}`);
      assert.equal(await received(sub), `${topic} over mTLS`);
    });
  }

  test('a client without a certificate is refused when client certificates are required', async () => {
    requireMosquittoClients();
    const clientId = unique('no-cert');
    const pub = await mosquittoPub([
      '-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', pki.caCertPath, '-i', clientId, '-t', unique('mosq/refused'), '-m', 'x',
    ]);
    assert.notEqual(pub.code, 0, 'mosquitto_pub must fail without a client certificate');
    assert.equal(tb.broker.clients.has(clientId), false);
    assert.equal(tb.broker.sessions.has(clientId), false);
  });

  test('a certificate from another CA is refused', async () => {
    requireMosquittoClients();
    const otherDir = mkdtempSync(join(tmpdir(), 'mqt-tz-other-ca-'));
    try {
      await ensureDevCertificates(otherDir);
      const stranger = await devPki(otherDir).issue('intruder');
      const clientId = unique('stranger');
      const pub = await mosquittoPub([
        '-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', pki.caCertPath, '--cert', stranger.certPath, '--key', stranger.keyPath,
        '-i', clientId, '-t', unique('mosq/refused'), '-m', 'x',
      ]);
      assert.notEqual(pub.code, 0, 'mosquitto_pub must fail with a certificate the broker does not trust');
      assert.equal(tb.broker.clients.has(clientId), false);
    } finally {
      rmSync(otherDir, { recursive: true, force: true });
    }
  });
});
