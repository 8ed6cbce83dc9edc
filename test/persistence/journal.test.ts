/** The group-commit journal in front of the SQLite store: batching, acknowledgement order, failures. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Session } from '../../src/broker/session.js';
import { makeMessage, type Delivery } from '../../src/broker/message.js';
import { GroupCommitJournal } from '../../src/persistence/journal.js';
import { openSqliteStore, type SqliteStore } from '../../src/persistence/sqlite-store.js';
import type { Change, DurableStore, LoadedState } from '../../src/persistence/store.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** The real store, with every batch it was given kept for the test to read. */
class RecordingStore implements DurableStore {
  readonly batches: Change[][] = [];
  failNext = false;
  constructor(private readonly inner: SqliteStore) {}
  load(now: number): Promise<LoadedState> {
    return this.inner.load(now);
  }
  async commit(changes: readonly Change[]): Promise<void> {
    this.batches.push([...changes]);
    if (this.failNext) {
      this.failNext = false;
      throw new Error('disk full');
    }
    await this.inner.commit(changes);
  }
  maintain(): void {
    this.inner.maintain();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

function setup(): { store: RecordingStore; journal: GroupCommitJournal; session: Session; errors: unknown[] } {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-journal-test-'));
  dirs.push(dir);
  const store = new RecordingStore(openSqliteStore(dir, 'normal'));
  const errors: unknown[] = [];
  const journal = new GroupCommitJournal(store, 0, (err) => errors.push(err));
  const session = new Session('c1', { maxQueuedMessages: 0, maxQueuedBytes: 0 }, { dropped: 0 }, undefined, journal);
  session.expiryInterval = 60;
  return { store, journal, session, errors };
}

/** A QoS 1 delivery of a message published by `origin`. */
function delivery(text: string, origin = 'p'): Delivery {
  const message = makeMessage('t', Buffer.from(text), 1, false, undefined, origin);
  return { message, payload: message.payload, lead: undefined, qos: 1, retain: false, subscriptionIds: undefined, packetId: 0, state: 'publish', inPublisherForm: false, storeId: 0 };
}

const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

test('changes of one turn go to the store as one batch, and acknowledgements waiting on them run after it, in order', async () => {
  const { store, journal, session } = setup();
  journal.sessionChanged(session);
  session.deliver(delivery('a'));
  session.deliver(delivery('b'));
  const order: string[] = [];
  journal.afterCommit((ok) => order.push(`first ${ok} after ${store.batches.length} batch`));
  journal.afterCommit((ok) => order.push(`second ${ok}`));
  assert.deepEqual(order, [], 'nothing runs before the commit');
  await tick();
  assert.deepEqual(store.batches.map((b) => b.map((c) => c.kind)), [['session', 'delivery', 'delivery']]);
  assert.deepEqual(order, ['first true after 1 batch', 'second true']);
  const state = await store.load(Date.now());
  assert.deepEqual(state.deliveries.map((d) => d.message.payload.toString()), ['a', 'b']);
});

test('a delivery queued and completed before its batch is committed is never written', async () => {
  const { store, journal, session } = setup();
  journal.sessionChanged(session);
  await tick();
  const link = { receiveMaximum: 10, sendPublish: () => true, sendPubrel: () => {} };
  session.resume(link);
  session.deliver(delivery('short-lived'));
  assert.equal(session.complete(1), true);
  session.deliver(delivery('kept'));
  await tick();
  assert.deepEqual(store.batches.slice(1).map((b) => b.map((c) => (c.kind === 'delivery' ? c.delivery.message.payload.toString() : c.kind))), [['kept']]);
});

test('a clean session (expiry 0) records nothing, and with nothing pending an acknowledgement runs at once', async () => {
  const { store, journal, session } = setup();
  session.expiryInterval = 0;
  journal.sessionChanged(session);
  session.deliver(delivery('x'));
  let ran = false;
  journal.afterCommit(() => (ran = true));
  assert.equal(ran, true);
  await tick();
  assert.deepEqual(store.batches, []);
});

test('a failed commit is reported and the acknowledgements waiting on it are told so; the next batch commits', async () => {
  const { store, journal, session, errors } = setup();
  journal.sessionChanged(session);
  store.failNext = true;
  const results: boolean[] = [];
  journal.afterCommit((ok) => results.push(ok));
  await tick();
  assert.deepEqual(results, [false]);
  assert.equal((errors[0] as Error).message, 'disk full');
  journal.sessionChanged(session);
  journal.afterCommit((ok) => results.push(ok));
  await tick();
  assert.deepEqual(results, [false, true]);
  assert.equal((await store.load(Date.now())).sessions.length, 1);
});

test("a client's own new QoS 1 copy leaves with the commit of its row; another publisher's leaves at once, and a queued row committed earlier too", async () => {
  const { journal, session } = setup();
  journal.sessionChanged(session);
  await tick();
  const sent: string[] = [];
  const link = { receiveMaximum: 10, sendPublish: (d: Delivery) => sent.push(String(d.payload)) > 0, sendPubrel: () => {} };
  session.deliver(delivery('queued while offline'));
  await tick();
  session.resume(link);
  assert.deepEqual(sent, ['queued while offline'], 'its row was committed before: no wait');
  session.deliver(delivery('from another publisher'));
  assert.deepEqual(sent, ['queued while offline', 'from another publisher'], 'a new row of another publisher: no wait');
  session.deliver(delivery('own copy', 'c1'));
  session.deliver(delivery('behind the own copy'));
  assert.deepEqual(sent, ['queued while offline', 'from another publisher'], 'its own copy not before its row is committed, later ones behind it');
  await tick();
  assert.deepEqual(sent, ['queued while offline', 'from another publisher', 'own copy', 'behind the own copy']);
});