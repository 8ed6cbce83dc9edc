/**
 * The embedded durable store: SQLite through better-sqlite3, WAL, one transaction per batch.
 *
 * Its own file (`DATA/broker-state.db`), not the sealed-blob database `mqt-tz.db`: WAL allows one
 * writer per database, and this one commits every event-loop turn under load while the trusted
 * component's key store writes at enrolment; the broker's state can also be removed (a fresh
 * start) without losing enrolled keys.
 *
 * One row per delivery, the message inline: the target scenario (many publishers to one persistent
 * subscriber) has one recipient per message, so a shared message row would double the writes there
 * (a message row and a queue row, each inserted and deleted) to save payload copies only in fan-out
 * to several persistent sessions.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { QoS } from 'mqtt-packet';
import { encodeBatch, Op, type EncodedBatch } from './batch.js';
import { decodeProperties } from './properties.js';
import type { Change, DeliveryState, DurableStore, LoadedState, StoredDelivery, StoredMessage, StoredSession, StoredSubscription, StoredWill } from './store.js';

export const STATE_FILE = 'broker-state.db';

export type SyncLevel = 'normal' | 'full';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sessions (
  client_id TEXT PRIMARY KEY NOT NULL,
  expiry_interval INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  subscriptions TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  flags INTEGER NOT NULL,
  properties TEXT,
  expires_at INTEGER NOT NULL,
  origin TEXT NOT NULL,
  subscription_ids TEXT,
  packet_id INTEGER NOT NULL,
  state INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS deliveries_by_client ON deliveries (client_id);
CREATE TABLE IF NOT EXISTS incoming_qos2 (
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  PRIMARY KEY (client_id, packet_id)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained (
  topic TEXT PRIMARY KEY NOT NULL,
  payload BLOB NOT NULL,
  qos INTEGER NOT NULL,
  properties TEXT,
  expires_at INTEGER NOT NULL,
  origin TEXT NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS wills (
  client_id TEXT PRIMARY KEY NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  flags INTEGER NOT NULL,
  properties TEXT,
  expires_at INTEGER NOT NULL,
  origin TEXT NOT NULL,
  publish_at INTEGER NOT NULL
) STRICT;
`;

/** Free pages reclaimed per `maintain` call (4 KiB each): bounded work between commits. */
const VACUUM_PAGES = 2048;

/** A delivery row as `DELIVERY_COLUMNS` lists it (raw mode: an array, no object per row). */
type DeliveryTuple = [
  id: number, clientId: string, topic: string, payload: Buffer, flags: number, properties: string | null,
  expiresAt: number, origin: string, subscriptionIds: string | null, packetId: number, state: number,
];
const DELIVERY_COLUMNS = 'id, client_id, topic, payload, flags, properties, expires_at, origin, subscription_ids, packet_id, state';
/** Distinct strings shared while loading deliveries; beyond it (every topic unique) new ones are kept as read. */
const MAX_SHARED_STRINGS = 100_000;

function messageOf(topic: string, payload: Buffer, flags: number, properties: string | null, expiresAt: number, origin: string): StoredMessage {
  return { topic, payload, qos: (flags & 3) as QoS, retain: (flags & 4) !== 0, properties: decodeProperties(properties), expiresAt, origin };
}

/** JSON leaves out undefined members: put them back, so restored subscriptions have the shape of new ones. */
function subscriptionOf(s: StoredSubscription): StoredSubscription {
  const o = s.options;
  return {
    key: s.key,
    filter: s.filter,
    group: s.group ?? undefined,
    options: { qos: o.qos, noLocal: o.noLocal, retainAsPublished: o.retainAsPublished, retainHandling: o.retainHandling, subscriptionId: o.subscriptionId ?? undefined },
  };
}

export function openSqliteStore(dataDir: string, sync: SyncLevel, file = STATE_FILE): SqliteStore {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  return new SqliteStore(new Database(join(dataDir, file)), sync);
}

export class SqliteStore implements DurableStore {
  private readonly apply: (batch: EncodedBatch) => void;
  private readonly statements;

  constructor(private readonly db: Database.Database, sync: SyncLevel) {
    // must precede the first table: a database's vacuum mode is fixed once it has content
    db.pragma('auto_vacuum = INCREMENTAL');
    db.pragma('journal_mode = WAL');
    // NORMAL: a commit is in the WAL before it returns (survives a process crash); FULL also fsyncs it (power loss).
    db.pragma(`synchronous = ${sync === 'full' ? 'FULL' : 'NORMAL'}`);
    // the WAL is truncated back to this after a checkpoint, so a burst does not leave it large
    db.pragma('journal_size_limit = 67108864');
    db.exec(SCHEMA);
    this.statements = {
      session: db.prepare<[string, number, number, string]>(
        'INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT(client_id) DO UPDATE SET expiry_interval = excluded.expiry_interval, expires_at = excluded.expires_at, subscriptions = excluded.subscriptions',
      ),
      endSession: db.prepare<[string]>('DELETE FROM sessions WHERE client_id = ?'),
      endDeliveries: db.prepare<[string]>('DELETE FROM deliveries WHERE client_id = ?'),
      endIncoming: db.prepare<[string]>('DELETE FROM incoming_qos2 WHERE client_id = ?'),
      endWill: db.prepare<[string]>('DELETE FROM wills WHERE client_id = ?'),
      delivery: db.prepare<[number, string, string, Buffer, number, string | null, number, string, string | null, number, number]>(
        'INSERT OR REPLACE INTO deliveries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      deliveryState: db.prepare<[number, number, number]>('UPDATE deliveries SET packet_id = ?, state = ? WHERE id = ?'),
      deliveryDone: db.prepare<[number]>('DELETE FROM deliveries WHERE id = ?'),
      incomingAdd: db.prepare<[string, number]>('INSERT OR IGNORE INTO incoming_qos2 VALUES (?, ?)'),
      incomingDelete: db.prepare<[string, number]>('DELETE FROM incoming_qos2 WHERE client_id = ? AND packet_id = ?'),
      retain: db.prepare<[string, Buffer, number, string | null, number, string]>('INSERT OR REPLACE INTO retained VALUES (?, ?, ?, ?, ?, ?)'),
      unretain: db.prepare<[string]>('DELETE FROM retained WHERE topic = ?'),
      will: db.prepare<[string, string, Buffer, number, string | null, number, string, number]>('INSERT OR REPLACE INTO wills VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
    };
    this.apply = db.transaction((batch: EncodedBatch) => this.applyBatch(batch));
  }

  async load(now: number): Promise<LoadedState> {
    const db = this.db;
    db.transaction(() => {
      const expired = db.prepare<[number], { client_id: string }>('SELECT client_id FROM sessions WHERE expires_at != 0 AND expires_at <= ?').all(now);
      for (const { client_id } of expired) this.endSession(client_id);
      db.prepare<[number]>('DELETE FROM retained WHERE expires_at != 0 AND expires_at <= ?').run(now);
    })();
    const sessions = db
      .prepare<[], { client_id: string; expiry_interval: number; expires_at: number; subscriptions: string }>('SELECT * FROM sessions')
      .all()
      .map((r): StoredSession => ({
        clientId: r.client_id,
        expiryInterval: r.expiry_interval,
        expiresAt: r.expires_at,
        subscriptions: (JSON.parse(r.subscriptions) as StoredSubscription[]).map(subscriptionOf),
      }));
    const deliveries: StoredDelivery[] = [];
    // a queue repeats a few client ids, topics and origins: one string each, not one per row
    // (1 000 000 queued messages held ~3 million copies, and the collector's time with them)
    const strings = new Map<string, string>();
    const shared = (text: string): string => {
      const known = strings.get(text);
      if (known !== undefined) return known;
      if (strings.size < MAX_SHARED_STRINGS) strings.set(text, text);
      return text;
    };
    const rows = db.prepare<[], DeliveryTuple>(`SELECT ${DELIVERY_COLUMNS} FROM deliveries ORDER BY id`).raw(true);
    for (const [id, clientId, topic, payload, flags, properties, expiresAt, origin, subscriptionIds, packetId, state] of rows.iterate()) {
      deliveries.push({
        id,
        clientId: shared(clientId),
        message: messageOf(shared(topic), payload, flags, properties, expiresAt, shared(origin)),
        qos: ((flags >> 3) & 3) as QoS,
        retain: (flags & 32) !== 0,
        subscriptionIds: subscriptionIds === null ? undefined : (JSON.parse(subscriptionIds) as number[]),
        packetId,
        state: state as DeliveryState,
      });
    }
    const incoming = db
      .prepare<[], { client_id: string; packet_id: number }>('SELECT * FROM incoming_qos2')
      .all()
      .map((r) => ({ clientId: r.client_id, packetId: r.packet_id }));
    const retained = db
      .prepare<[], { topic: string; payload: Buffer; qos: number; properties: string | null; expires_at: number; origin: string }>('SELECT * FROM retained')
      .all()
      .map((r) => messageOf(r.topic, r.payload, r.qos | 4, r.properties, r.expires_at, r.origin));
    const wills = db
      .prepare<[], { client_id: string; topic: string; payload: Buffer; flags: number; properties: string | null; expires_at: number; origin: string; publish_at: number }>('SELECT * FROM wills')
      .all()
      .map((r): StoredWill => ({ clientId: r.client_id, message: messageOf(r.topic, r.payload, r.flags, r.properties, r.expires_at, r.origin), publishAt: r.publish_at }));
    const last = db.prepare<[], { id: number | null }>('SELECT max(id) AS id FROM deliveries').get();
    // ids only order the rows present, so starting again above the largest one left is enough
    return { sessions, deliveries, incoming, retained, wills, lastDeliveryId: last?.id ?? 0 };
  }

  async commit(changes: readonly Change[]): Promise<void> {
    this.apply(encodeBatch(changes));
  }

  /** Runs synchronously: a batch encoded elsewhere (another thread), in one transaction. */
  commitEncoded(batch: EncodedBatch): void {
    this.apply(batch);
  }

  maintain(): void {
    this.db.pragma(`incremental_vacuum(${VACUUM_PAGES})`);
    this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  async close(): Promise<void> {
    if (!this.db.open) return;
    this.db.pragma('wal_checkpoint(TRUNCATE)');
    this.db.close();
  }

  private endSession(clientId: string): void {
    const s = this.statements;
    s.endSession.run(clientId);
    s.endDeliveries.run(clientId);
    s.endIncoming.run(clientId);
    s.endWill.run(clientId);
  }

  private applyBatch({ ops, payloads }: EncodedBatch): void {
    const s = this.statements;
    const all = Buffer.from(payloads);
    const str = (i: number): string => ops[i] as string;
    const int = (i: number): number => ops[i] as number;
    const text = (i: number): string | null => ops[i] as string | null;
    const bytes = (i: number): Buffer => all.subarray(int(i), int(i) + int(i + 1));
    for (let i = 0; i < ops.length; ) {
      switch (ops[i] as Op) {
        case Op.Session:
          s.session.run(str(i + 1), int(i + 2), int(i + 3), str(i + 4));
          i += 5;
          break;
        case Op.SessionEnd:
          this.endSession(str(i + 1));
          i += 2;
          break;
        case Op.Delivery:
          s.delivery.run(int(i + 1), str(i + 2), str(i + 3), bytes(i + 4), int(i + 6), text(i + 7), int(i + 8), str(i + 9), text(i + 10), int(i + 11), int(i + 12));
          i += 13;
          break;
        case Op.DeliveryState:
          s.deliveryState.run(int(i + 1), int(i + 2), int(i + 3));
          i += 4;
          break;
        case Op.DeliveryDone:
          s.deliveryDone.run(int(i + 1));
          i += 2;
          break;
        case Op.IncomingAdd:
          s.incomingAdd.run(str(i + 1), int(i + 2));
          i += 3;
          break;
        case Op.IncomingDelete:
          s.incomingDelete.run(str(i + 1), int(i + 2));
          i += 3;
          break;
        case Op.Retain:
          s.retain.run(str(i + 1), bytes(i + 2), int(i + 4), text(i + 5), int(i + 6), str(i + 7));
          i += 8;
          break;
        case Op.Unretain:
          s.unretain.run(str(i + 1));
          i += 2;
          break;
        case Op.Will:
          s.will.run(str(i + 1), str(i + 2), bytes(i + 3), int(i + 5), text(i + 6), int(i + 7), str(i + 8), int(i + 9));
          i += 10;
          break;
        case Op.WillGone:
          s.endWill.run(str(i + 1));
          i += 2;
          break;
        default:
          throw new Error(`durable store: unknown operation ${String(ops[i])} in a batch`);
      }
    }
  }
}
