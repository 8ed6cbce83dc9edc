// The operations HTTP listener over real sockets: /metrics (broker and trusted-component series
// move with real traffic), /healthz, /readyz, the 127.0.0.1 default, and the dashboard's login.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, describe, test } from 'node:test';
import { startTestBroker, unique, WAIT_MS, type TestBroker } from '../helpers/broker.js';
import { startProtectedBroker } from '../helpers/protected-broker.js';
import { Events } from '../helpers/protected-broker.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-http-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

async function get(b: Pick<TestBroker, 'running'>, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; headers: Headers }> {
  const res = await fetch(`http://127.0.0.1:${b.running.http!.port}${path}`, { headers });
  return { status: res.status, text: await res.text(), headers: res.headers };
}

/** The value of one series line, e.g. `mqttz_messages_received_total{qos="1"}`. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.slice(name.length + 1));
}

describe('operations HTTP', () => {
  test('/metrics counts real connections, messages by QoS, bytes and retained messages, and carries event loop lag and GC from prom-client; /healthz and /readyz answer', async () => {
    const b = await startTestBroker((c) => (c.http = { port: 0, host: '127.0.0.1', admins: [] }));
    try {
      assert.equal(b.running.http!.host, '127.0.0.1');
      const before = (await get(b, '/metrics')).text;
      const topic = unique('metrics');
      const inbox = await b.watch(topic, { qos: 1 });
      await b.publish(topic, 'one', { qos: 1, retain: true });
      await b.publish(topic, 'two', { qos: 0 });
      await inbox.take(2);
      const m = await get(b, '/metrics');
      assert.equal(m.status, 200);
      assert.match(m.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const t = m.text;
      assert.equal(series(t, 'mqttz_clients_connected'), 2);
      assert.equal(series(t, 'mqttz_messages_received_total{qos="1"}') - series(before, 'mqttz_messages_received_total{qos="1"}'), 1);
      assert.equal(series(t, 'mqttz_messages_received_total{qos="0"}') - series(before, 'mqttz_messages_received_total{qos="0"}'), 1);
      assert.ok(series(t, 'mqttz_messages_sent_total{qos="1"}') >= 1);
      assert.ok(series(t, 'mqttz_bytes_received_total') > series(before, 'mqttz_bytes_received_total'));
      assert.ok(series(t, 'mqttz_bytes_sent_total') > series(before, 'mqttz_bytes_sent_total'));
      assert.equal(series(t, 'mqttz_subscriptions'), 1);
      assert.ok(series(t, 'mqttz_retained_messages') >= 1);
      assert.match(t, /^nodejs_eventloop_lag_seconds \d/m);
      assert.match(t, /^# TYPE nodejs_gc_duration_seconds histogram$/m);
      assert.doesNotMatch(t, /^mqttz_tee_/m, 'no trusted-component series without one');
      assert.deepEqual([(await get(b, '/healthz')).status, (await get(b, '/readyz')).text], [200, 'ready\n']);
      assert.equal((await get(b, '/nothing')).status, 404);
      assert.equal((await fetch(`http://127.0.0.1:${b.running.http!.port}/metrics`, { method: 'POST' })).status, 405);
    } finally {
      await b.close();
    }
  });

  test('mqttz_persistence_commit_duration_seconds counts the group commits of persistent-session traffic, and is absent without persistence', async () => {
    const b = await startTestBroker((c) => (c.http = { port: 0, host: '127.0.0.1', admins: [] }));
    const memoryOnly = await startTestBroker((c) => {
      c.http = { port: 0, host: '127.0.0.1', admins: [] };
      c.persistence = null;
    });
    try {
      const before = series((await get(b, '/metrics')).text, 'mqttz_persistence_commit_duration_seconds_count');
      const topic = unique('durable');
      const subscriber = await b.mqtt({ protocolVersion: 4, clean: false, clientId: unique('persistent') });
      await subscriber.subscribeAsync(topic, { qos: 1 });
      await b.publish(topic, 'kept', { qos: 1 });
      const t = (await get(b, '/metrics')).text;
      assert.ok(series(t, 'mqttz_persistence_commit_duration_seconds_count') > before, 'a commit was timed');
      assert.ok(series(t, 'mqttz_persistence_commit_duration_seconds_sum') > 0);
      assert.doesNotMatch((await get(memoryOnly, '/metrics')).text, /^mqttz_persistence_commit_duration_seconds_count/m);
    } finally {
      await b.close();
      await memoryOnly.close();
    }
  });

  test('the trusted-component series follow protected traffic: re-wraps, groups formed, refusals by reason, key-cache hits and misses, call latency histogram', async () => {
    const b = await startProtectedBroker('inline', (c) => (c.http = { port: 0, host: '127.0.0.1', admins: [] }));
    try {
      const [alice, bob] = [unique('alice'), unique('bob')];
      const sub = await b.enrolled(bob);
      const events = new Events(sub);
      await sub.subscribeAsync('secure/m', { qos: 1 });
      await (await b.enrolled(alice)).publishAsync('secure/m', 'sealed', { qos: 1 });
      await events.next('the protected message');
      const plain = await b.mqtt({ protocolVersion: 5 });
      await assert.rejects(plain.publishAsync('secure/m', 'not an envelope', { qos: 1 }));
      const t = (await get(b, '/metrics')).text;
      assert.equal(series(t, 'mqttz_tee_up'), 1);
      assert.equal(series(t, 'mqttz_protected_messages_total'), 1);
      assert.ok(series(t, 'mqttz_tee_rewrap_calls_total') >= 1);
      assert.ok(series(t, 'mqttz_tee_groups_formed_total') >= 1);
      assert.equal(series(t, 'mqttz_tee_refusals_total{reason="malformed-envelope"}'), 1);
      assert.ok(series(t, 'mqttz_tee_key_cache_hits_total') + series(t, 'mqttz_tee_key_cache_misses_total') >= 1);
      const calls = series(t, 'mqttz_tee_call_duration_seconds_count');
      assert.ok(calls >= 3, `calls timed: ${calls}`);
      assert.equal(series(t, 'mqttz_tee_call_duration_seconds_bucket{le="+Inf"}'), calls);
    } finally {
      await b.close();
    }
  });

  test('/readyz says 503 and mqttz_tee_up 0 once the trusted component process is gone', async () => {
    const b = await startProtectedBroker('process', (c) => (c.http = { port: 0, host: '127.0.0.1', admins: [] }));
    try {
      assert.equal((await get(b, '/readyz')).status, 200);
      process.kill(b.tee.pid!, 'SIGKILL');
      const deadline = Date.now() + WAIT_MS;
      let ready = await get(b, '/readyz');
      while (ready.status === 200 && Date.now() < deadline) ready = await get(b, '/readyz');
      assert.deepEqual([ready.status, ready.text], [503, 'not ready: the trusted component does not answer\n']);
      assert.equal(series((await get(b, '/metrics')).text, 'mqttz_tee_up'), 0);
      assert.equal((await get(b, '/healthz')).status, 200);
    } finally {
      await b.close();
    }
  });

  test('with http.admins the dashboard and its data ask for a Basic login by an admin of the password file; /metrics and health stay open', async () => {
    const passwd = join(dir, 'admins.passwd');
    await run('mosquitto_passwd', ['-c', '-b', passwd, 'root', 'admin-pw']);
    await run('mosquitto_passwd', ['-b', passwd, 'user', 'user-pw']);
    const b = await startTestBroker((c) => {
      c.passwordFile = passwd;
      c.http = { port: 0, host: '127.0.0.1', admins: ['root'] };
    });
    const basic = (user: string, pw: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`${user}:${pw}`).toString('base64')}` });
    try {
      const anonymous = await get(b, '/');
      assert.equal(anonymous.status, 401);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic realm="mqt-tz dashboard"/);
      assert.equal((await get(b, '/api/stats', basic('root', 'wrong'))).status, 401);
      assert.equal((await get(b, '/api/stats', basic('user', 'user-pw'))).status, 401, 'a user who is not an admin');
      const page = await get(b, '/', basic('root', 'admin-pw'));
      assert.equal(page.status, 200);
      assert.match(page.text, /<title>mqt-tz dashboard<\/title>/);
      const stats = JSON.parse((await get(b, '/api/stats', basic('root', 'admin-pw'))).text) as { snapshot: { clientsConnected: number } };
      assert.equal(typeof stats.snapshot.clientsConnected, 'number');
      assert.equal((await get(b, '/metrics')).status, 200);
      assert.equal((await get(b, '/healthz')).status, 200);
    } finally {
      await b.close();
    }
  });

  test('dashboard admins without a password file are a config error naming http.admins', async () => {
    await assert.rejects(startTestBroker((c) => (c.http = { port: 0, host: '127.0.0.1', admins: ['root'] })), /config: http\.admins: dashboard admins log in with the password file/);
  });
});
