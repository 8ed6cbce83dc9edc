// `mqt-tz tee serve` as users start it (its own process, through the CLI) and a CLI broker that uses
// it with --tee-socket: a protected exchange through the service, the socket closed to other users,
// one broker at a time, and the state directory fixed by the service, not by the broker.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { withTimeout, WAIT_MS } from '../helpers/broker.js';
import { Events } from '../client/protected-broker.js';
import { MAIN, startCliBroker, type CliBroker } from '../acceptance/cli-broker.js';

interface Service {
  process: ChildProcess;
  next(msg: string): Promise<{ teePid?: number }>;
}

async function startService(stateDir: string, socket: string): Promise<Service> {
  const child = spawn(process.execPath, [MAIN, 'tee', 'serve', '--data', stateDir, '--socket', socket], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MQT_TZ_LOG_FORMAT: 'json' } });
  const waiters: { msg: string; resolve: (l: { teePid?: number }) => void }[] = [];
  createInterface({ input: child.stderr! }).on('line', (text) => {
    const line = JSON.parse(text) as { msg?: string; teePid?: number };
    for (const w of waiters.filter((x) => x.msg === line.msg)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.resolve(line);
    }
  });
  const next = (msg: string): Promise<{ teePid?: number }> => withTimeout(new Promise((resolve) => waiters.push({ msg, resolve })), 3 * WAIT_MS, `the service to log "${msg}"`);
  await next('trusted component service listening');
  return { process: child, next };
}

const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-tee-service-'));
const stateDir = join(dir, 'tee-state');
const socket = join(dir, 'tee.sock');
const brokerData = join(dir, 'broker'); // kept across the broker's restart: the sealed blobs live there
let service: Service;
let b: CliBroker;
before(async () => {
  service = await startService(stateDir, socket);
  b = await startCliBroker({ dataDir: brokerData, args: ['--tee-socket', socket] });
});
after(async () => {
  await b?.close();
  service?.process.kill('SIGTERM');
  if (service !== undefined && service.process.exitCode === null) await new Promise((resolve) => service.process.once('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
});

test('a broker started with --tee-socket relays a protected exchange through the service, and spawns no trusted child of its own', async () => {
  assert.deepEqual(b.children().filter((c) => /tee\/main\.js/.test(c.command)), [], 'no trusted child under the broker');
  const [alice, bob] = await Promise.all([b.enrolled('alice'), b.enrolled('bob')]);
  const topic = `secure/ward-${randomBytes(4).toString('hex')}`;
  const events = new Events(bob);
  await bob.subscribeAsync(topic, { qos: 1 });
  await alice.publishAsync(topic, 'heart rate 61', { qos: 1 });
  const e = await events.next('the message for bob');
  assert.deepEqual(e.kind === 'message' ? [e.topic, e.text, e.sender] : e, [topic, 'heart rate 61', 'alice']);
});

test('the service keeps the device secret and counter in its own state directory, mode 0700, whatever the broker\'s init names', () => {
  assert.equal(statSync(stateDir).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(stateDir).sort(), ['counter', 'device.secret']);
  assert.equal(existsSync(join(b.dataDir, 'tee', 'device.secret')), false, 'nothing trusted in the broker\'s data folder');
});

test('the socket is born mode 0600: only the service\'s user may connect', () => {
  const st = statSync(socket);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
});

test('a second connection while a broker is connected is closed at once, and the first broker keeps working', async () => {
  const refused = service.next('refused a second connection: a broker is already connected');
  const intruder = connect(socket);
  intruder.on('error', () => undefined);
  await withTimeout(new Promise((resolve) => intruder.once('close', resolve)), WAIT_MS, 'the service to close the second connection');
  await refused;
  const [carol, dave] = await Promise.all([b.enrolled('carol'), b.enrolled('dave')]);
  const events = new Events(dave);
  await dave.subscribeAsync('secure/after', { qos: 1 });
  await carol.publishAsync('secure/after', 'still here', { qos: 1 });
  const e = await events.next('the message for dave');
  assert.deepEqual(e.kind === 'message' ? e.text : e, 'still here');
});

test('after the broker goes, the next broker is served by a fresh trusted process with the same identity', async () => {
  const first = b.fingerprint;
  const exited = service.next('trusted process exited');
  await b.close();
  await exited;
  const started = service.next('broker connected: trusted process started');
  const again = await startCliBroker({ dataDir: brokerData, args: ['--tee-socket', socket] });
  try {
    assert.ok((await started).teePid !== undefined);
    assert.equal(again.fingerprint, first, 'same sealed identity from the service\'s state directory');
  } finally {
    await again.close();
  }
});
