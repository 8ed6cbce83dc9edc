// `mqt-tz tee serve` as users start it (its own process, through the CLI) and a CLI broker that uses
// it with --tee-socket: a protected exchange through the service, the socket closed to other users,
// one broker at a time, and the state directory fixed by the service, not by the broker.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, test } from 'node:test';
import { withTimeout, WAIT_MS } from '../helpers/broker.js';
import { exchange } from '../helpers/protected-broker.js';
import { MAIN, startCliBroker, type CliBroker } from '../helpers/cli-broker.js';
import { BROKER_USER, connectAs, ensureSystemGroup, ensureSystemUser, openAs, RUNNING_AS_ROOT, TEE_USER, uidOf, type Ids } from '../helpers/os-users.js';

interface Service {
  process: ChildProcess;
  next(msg: string): Promise<{ teePid?: number }>;
}

/** `mqt-tz tee serve`, run through `prefix` (e.g. setpriv to start it as another user). */
async function startService(stateDir: string, socket: string, extra: readonly string[] = [], prefix: readonly string[] = []): Promise<Service> {
  const command = [...prefix, process.execPath, MAIN, 'tee', 'serve', '--data', stateDir, '--socket', socket, ...extra];
  const child = spawn(command[0]!, command.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, MQT_TZ_LOG_FORMAT: 'json' } });
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

async function stopService(service: Service | undefined): Promise<void> {
  if (service === undefined || service.process.exitCode !== null) return;
  const exited = new Promise((resolve) => service.process.once('exit', resolve));
  service.process.kill('SIGTERM');
  await exited;
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
  await stopService(service);
  rmSync(dir, { recursive: true, force: true });
});

test('a broker started with --tee-socket relays a protected exchange through the service, and spawns no trusted child of its own', async () => {
  assert.deepEqual(b.children().filter((c) => /tee\/main\.js/.test(c.command)), [], 'no trusted child under the broker');
  const topic = `secure/ward-${randomBytes(4).toString('hex')}`;
  const e = await exchange(b, 'alice', 'bob', topic, 'heart rate 61');
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
  const e = await exchange(b, 'carol', 'dave', 'secure/after', 'still here');
  assert.deepEqual(e.kind === 'message' ? e.text : e, 'still here');
});

test('a broker reconnects to a service restarted under it, and protected messages flow again', async () => {
  const lost = b.logs('trusted component lost: protected messages are refused until it is started again');
  const back = b.logs('trusted component started again');
  await stopService(service);
  await lost;
  service = await startService(stateDir, socket);
  await back;
  const e = await exchange(b, 'erin', 'frank', 'secure/after-restart', 'back again');
  // (the clients pin the fingerprint the broker logged at its start: enrolling proves the same keys)
  assert.deepEqual(e.kind === 'message' ? [e.text, e.sender] : e, ['back again', 'erin']);
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

describe('as deployed: the service as its own user, the socket open to the broker\'s group only', { skip: RUNNING_AS_ROOT ? false : 'needs root: it creates system users and starts the service and the broker as them' }, () => {
  const CLIENTS_GROUP = 'mqttz-tee-ci-clients';
  let teeIds: Ids;
  let brokerIds: Ids;
  let clientsGid: number;
  let root: string;
  let teeDir: string;
  let svc: Service;
  let broker: CliBroker;
  let teePid: number;
  before(async () => {
    teeIds = ensureSystemUser(TEE_USER);
    brokerIds = ensureSystemUser(BROKER_USER);
    clientsGid = ensureSystemGroup(CLIENTS_GROUP, [BROKER_USER]);
    root = mkdtempSync(join(tmpdir(), 'mqt-tz-tee-users-'));
    chmodSync(root, 0o711);
    teeDir = join(root, 'tee'); // as systemd's RuntimeDirectory: the service's, others may pass through
    mkdirSync(teeDir, { mode: 0o711 });
    chownSync(teeDir, teeIds.uid, teeIds.gid);
    const setpriv = ['setpriv', '--reuid', String(teeIds.uid), '--regid', String(teeIds.gid), '--groups', String(clientsGid), '--'];
    svc = await startService(join(teeDir, 'state'), join(teeDir, 'tee.sock'), ['--socket-group', CLIENTS_GROUP], setpriv);
    broker = await startCliBroker({ dataDir: join(root, 'broker'), args: ['--user', BROKER_USER, '--tee-socket', join(teeDir, 'tee.sock')] });
    // setpriv execs the service, so its pid is the service's; the trusted process serving this broker is its one child
    const children = readFileSync(`/proc/${svc.process.pid}/task/${svc.process.pid}/children`, 'utf8').trim().split(' ');
    assert.equal(children.length, 1, `one trusted process: ${children.join(' ')}`);
    teePid = Number(children[0]);
  });
  after(async () => {
    await broker?.close();
    await stopService(svc);
    if (root !== undefined) rmSync(root, { recursive: true, force: true });
  });

  test('the socket is mode 0660 in the clients group, and a user outside it cannot connect', () => {
    const st = statSync(join(teeDir, 'tee.sock'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [teeIds.uid, clientsGid, 0o660]);
    assert.equal(connectAs({ uid: 65534, gid: 65534 }, join(teeDir, 'tee.sock')), 'EACCES', 'nobody is refused by the file mode');
  });

  test('the broker runs as its user and the trusted process as the service\'s; the broker\'s user opens neither its memory nor its state', () => {
    assert.equal(uidOf(broker.pid), brokerIds.uid);
    assert.equal(uidOf(teePid), teeIds.uid);
    const stateDir = join(teeDir, 'state');
    const st = statSync(stateDir);
    assert.deepEqual([st.uid, st.mode & 0o777], [teeIds.uid, 0o700]);
    const files = readdirSync(stateDir).map((f) => join(stateDir, f));
    assert.equal(files.length, 2, 'device secret and counter');
    const mem = `/proc/${teePid}/mem`;
    const asBroker = openAs(brokerIds, [mem, stateDir, ...files]);
    assert.deepEqual(Object.values(asBroker), [mem, stateDir, ...files].map(() => 'EACCES'), JSON.stringify(asBroker));
    assert.deepEqual(Object.values(openAs(teeIds, files)), files.map(() => 'ok'), 'control: the service\'s user reads its state');
  });

  test('a protected exchange works through the service', async () => {
    const e = await exchange(broker, 'alice', 'bob', 'secure/ward', 'heart rate 61');
    assert.deepEqual(e.kind === 'message' ? [e.text, e.sender] : e, ['heart rate 61', 'alice']);
  });
});
