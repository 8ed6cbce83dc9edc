/**
 * Protected topics with persistence on: the state files hold only the publishers' envelopes. The
 * database, its WAL and its shared-memory file are scanned for the plaintexts after protected
 * traffic to an online and an offline persistent subscriber and a protected retained message.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { STATE_FILE } from '../../src/persistence/sqlite-store.js';
import { startBroker } from '../../src/server.js';
import { connectProtected } from '../../src/client/index.js';
import { unique } from '../helpers/broker.js';
import { PROTECTED } from '../helpers/protected-broker.js';
import { Events, startProtectedBroker, type ProtectedBroker } from '../helpers/protected-broker.js';

let b: ProtectedBroker;
before(async () => {
  b = await startProtectedBroker('inline');
});
after(() => b.close());

/** The state files as they are on disk now (the WAL holds rows written and already deleted too). */
function stateFiles(): Buffer[] {
  return ['', '-wal', '-shm'].map((suffix) => join(b.dataDir, STATE_FILE + suffix)).filter(existsSync).map((f) => readFileSync(f));
}

test('the state files never hold a protected plaintext: online and queued deliveries and retained messages are stored as the sender sealed them', async () => {
  const reader = unique('reader');
  const secrets = { online: `online-secret-${reader}`, queued: `queued-secret-${reader}`, retained: `retained-secret-${reader}` };
  const persistent = { clean: false, properties: { sessionExpiryInterval: 600 } };
  const sub = await b.enrolled(reader, persistent);
  const events = new Events(sub);
  await sub.subscribeAsync(['secure/persist/#'], { qos: 1 });
  const pub = await b.enrolled(unique('writer'));
  await pub.publishAsync('secure/persist/online', secrets.online, { qos: 1 });
  const first = await events.next('the online message');
  assert.deepEqual(first.kind === 'message' && [first.text, first.protected], [secrets.online, true]);
  await sub.endAsync();
  await pub.publishAsync('secure/persist/queued', secrets.queued, { qos: 1 });
  await pub.publishAsync('secure/persist/retained', secrets.retained, { qos: 1, retain: true });

  const files = stateFiles();
  assert.ok(files.some((f) => f.includes('secure/persist/queued')), 'the scan sees the stored rows (their topic is in the files)');
  for (const [what, secret] of Object.entries(secrets)) {
    assert.ok(!files.some((f) => f.includes(secret)), `the ${what} plaintext is not in the state files`);
  }

  // and what was stored is still deliverable: the reader comes back and opens both
  const back = await b.client(reader, persistent);
  const later = new Events(back);
  const got = [await later.next('the queued message'), await later.next('the retained message')];
  assert.deepEqual(got.map((e) => e.kind === 'message' && e.text).sort(), [secrets.queued, secrets.retained].sort());
});

test('a protected message queued for an offline subscriber survives a restart and is re-wrapped for that subscriber when it resumes', async () => {
  const reader = unique('restart-reader');
  const secret = `after-restart-${reader}`;
  const persistent = { clean: false, properties: { sessionExpiryInterval: 600 } };
  const sub = await b.enrolled(reader, persistent);
  await sub.subscribeAsync(['secure/restart/#'], { qos: 1 });
  await sub.endAsync();
  const pub = await b.enrolled(unique('restart-writer'));
  await pub.publishAsync('secure/restart/a', secret, { qos: 1 });
  await pub.endAsync(true);
  // the same data folder (state, sealed keys), a new broker and trusted component
  await b.running.close();
  const again = await startBroker(b.config);
  try {
    const back = await connectProtected(`mqtt://127.0.0.1:${again.port('tcp')}`, { identity: reader, teeFingerprint: b.fingerprint, keyFile: b.keyFile(reader), protectedTopics: [PROTECTED], reconnectPeriod: 0, ...persistent });
    const events = new Events(back);
    const got = await events.next('the queued message after the restart');
    assert.deepEqual(got.kind === 'message' && [got.topic, got.text, got.protected], ['secure/restart/a', secret, true]);
    await back.endAsync(true);
  } finally {
    await again.close();
  }
});
