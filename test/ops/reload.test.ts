// Live reload: SIGHUP to a real broker process, and RunningBroker.reload in process: new password
// file, ACL, limits and TLS certificates apply to later connections; connections stay up; a bad
// file keeps the old settings and the log says why.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import type { MqttClient } from 'mqtt';
import { connectMqtt, inboxOf, startTestBroker, unique, withTimeout, WAIT_MS } from '../helpers/broker.js';
import { makeDevPki } from '../helpers/transport.js';
import { startProcessBroker } from '../helpers/process-broker.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-reload-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function accepted(url: string, username: string, password: string, extra: object = {}): Promise<boolean> {
  try {
    const c = await connectMqtt(url, { username, password, ...extra });
    await c.endAsync();
    return true;
  } catch {
    return false;
  }
}

/** The connection still carries messages both ways. */
async function stillConnected(client: MqttClient): Promise<void> {
  const topic = unique('alive');
  await client.subscribeAsync(topic, { qos: 1 });
  await client.publishAsync(topic, 'still here', { qos: 1 });
  const m = await inboxOf(client).next('the echo of its own message');
  assert.equal(m.payload, 'still here');
}

describe('reload', () => {
  test('SIGHUP: a broker process takes a new user from the password file and a new ACL, keeps its connections, and keeps the old settings when the file is bad', async () => {
    const passwd = join(dir, 'hup.passwd');
    const configFile = join(dir, 'hup.json');
    await run('mosquitto_passwd', ['-c', '-b', passwd, 'alice', 'pw-a']);
    writeFileSync(configFile, JSON.stringify({ tee: null, allowAnonymous: false, passwordFile: passwd, sysInterval: 0 }));
    const b = startProcessBroker(['--port', '0', '--host', '127.0.0.1', '--data', join(dir, 'hup-data'), '--config', configFile]);
    try {
      const url = `mqtt://127.0.0.1:${await b.port()}`;
      const alice = await connectMqtt(url, { username: 'alice', password: 'pw-a', protocolVersion: 5 });
      assert.equal(await accepted(url, 'bob', 'pw-b'), false);

      await run('mosquitto_passwd', ['-b', passwd, 'bob', 'pw-b']);
      writeFileSync(configFile, JSON.stringify({ tee: null, allowAnonymous: false, passwordFile: passwd, sysInterval: 0, acl: [{ permission: 'deny', action: 'publish', topic: 'locked/#' }] }));
      let mark = b.lines.length;
      b.child.kill('SIGHUP');
      await b.waitFor((l) => l.msg === 'reloaded password file, ACL, TLS certificates and limits', 'the reload to be logged', mark);
      assert.equal(await accepted(url, 'bob', 'pw-b'), true);
      await stillConnected(alice);
      await assert.rejects(alice.publishAsync('locked/x', 'no', { qos: 1 }), /Not authorized/);

      writeFileSync(passwd, 'bob:not-a-hash\n');
      mark = b.lines.length;
      b.child.kill('SIGHUP');
      const failed = await b.waitFor((l) => l.msg === 'reload failed: keeping the previous settings', 'the failed reload to be logged', mark);
      assert.match(String(failed.error), /hup\.passwd:1: user "bob": not a mosquitto hash/);
      assert.equal(await accepted(url, 'bob', 'pw-b'), true);

      writeFileSync(configFile, '{ "acl": [ broken');
      mark = b.lines.length;
      b.child.kill('SIGHUP');
      const badConfig = await b.waitFor((l) => l.msg === 'reload failed: keeping the previous settings', 'the bad config to be logged', mark);
      assert.match(String(badConfig.error), /hup\.json is not valid JSON/);
      await stillConnected(alice);
      await alice.endAsync();
    } finally {
      await b.stop();
    }
  });

  test('in process: reload() applies limits (to sessions made before it too) and the ACL to the running broker, reports keys that need a restart, and a missing password file changes nothing', async () => {
    const passwd = join(dir, 'inproc.passwd');
    await run('mosquitto_passwd', ['-c', '-b', passwd, 'alice', 'pw-a']);
    const b = await startTestBroker((c) => (c.passwordFile = passwd));
    try {
      const alice = await b.mqtt({ username: 'alice', password: 'pw-a', protocolVersion: 5 });
      const next = { ...b.config, limits: { ...b.config.limits, maxQueuedMessages: 7 }, acl: [{ permission: 'deny' as const, action: 'all' as const, topic: 'secret/#' }], port: 1, logLevel: 'fatal' as const };
      const result = await b.running.reload(next);
      assert.deepEqual(result, { ok: true, restartNeeded: ['port'] });
      assert.equal(b.running.log.level, 'fatal');
      assert.equal(b.broker.config.limits.maxQueuedMessages, 7);
      // a session made before the reload queues at most the new limit
      const offlineId = unique('offline');
      const offline = await b.mqtt({ clientId: offlineId, clean: false, protocolVersion: 4, username: 'alice', password: 'pw-a' });
      const topic = unique('queued');
      await offline.subscribeAsync(topic, { qos: 1 });
      await offline.endAsync();
      const dropped = b.broker.counters.dropped;
      for (let i = 0; i < 10; i++) await alice.publishAsync(topic, `m${i}`, { qos: 1 });
      assert.equal(b.broker.sessions.get(offlineId)?.queue.length, 7);
      assert.equal(b.broker.counters.dropped - dropped, 3);
      await assert.rejects(alice.publishAsync('secret/x', 'no', { qos: 1 }), /Not authorized/);
      await stillConnected(alice);

      const bad = await b.running.reload({ ...next, passwordFile: join(dir, 'gone.passwd'), limits: { ...next.limits, maxQueuedMessages: 9 } });
      assert.equal(bad.ok, false);
      assert.match(bad.ok ? '' : bad.error, /gone\.passwd:0: cannot read/);
      assert.equal(b.broker.config.limits.maxQueuedMessages, 7);
      assert.equal(await accepted(b.url, 'alice', 'pw-a'), true);
    } finally {
      await b.close();
    }
  });

  test('in process: new TLS certificate files serve every later handshake while a connection made with the old one carries on; an unusable key keeps the old one', async () => {
    const [one, two] = await Promise.all([makeDevPki(), makeDevPki()]);
    const cert = join(dir, 'server.crt');
    const key = join(dir, 'server.key');
    writeFileSync(cert, one.server.cert);
    writeFileSync(key, one.server.key);
    const b = await startTestBroker((c) => (c.tls = { port: 0, host: '127.0.0.1', cert, key, clientCerts: 'none', identityFrom: 'cn' }));
    const port = b.running.port('tls')!;
    const peerCert = async (): Promise<string> => {
      const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
      await withTimeout(new Promise((resolve) => socket.once('secureConnect', resolve)), WAIT_MS, 'a TLS handshake');
      const pem = socket.getPeerX509Certificate()!.toString();
      socket.destroy();
      return pem;
    };
    try {
      assert.equal((await peerCert()).trim(), one.server.cert.trim());
      const old = await connectMqtt(`mqtts://127.0.0.1:${port}`, { rejectUnauthorized: false, protocolVersion: 5 });
      writeFileSync(cert, two.server.cert);
      writeFileSync(key, two.server.key);
      assert.deepEqual(await b.running.reload(b.config), { ok: true, restartNeeded: [] });
      assert.equal((await peerCert()).trim(), two.server.cert.trim());
      await stillConnected(old);

      writeFileSync(key, 'not a key');
      const bad = await b.running.reload(b.config);
      assert.equal(bad.ok, false);
      assert.match(bad.ok ? '' : bad.error, /invalid TLS key, certificate or CA/);
      assert.equal((await peerCert()).trim(), two.server.cert.trim());
      await old.endAsync();
    } finally {
      await b.close();
      await Promise.all([one.remove(), two.remove()]);
    }
  });
});
