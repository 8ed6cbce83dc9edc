// Host-side storage of the trusted component's sealed blobs in SQLite (DATA/mqt-tz.db).
// The host keeps, loses or replays these bytes but cannot read or forge them: they are
// AES-256-GCM sealed inside the trusted component. It answers the component's storage requests
// (the tee-supplicant role): each key-cache miss costs exactly one get().
import Database from 'better-sqlite3';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

export interface SealedBlobStore {
  get(name: string): Uint8Array | undefined;
  put(name: string, blob: Uint8Array): void;
  delete(name: string): void;
  /** Every stored (name, blob), sorted by name: lets tests prove a refusal changed nothing. */
  snapshot(): Array<{ name: string; blob: Uint8Array }>;
  close(): void;
}

export const DATABASE_FILE = 'mqt-tz.db';

/** Opens (creating if needed) `<dataDir>/mqt-tz.db` and its `sealed_blobs` table. */
export function openSealedBlobStore(dataDir: string): SealedBlobStore {
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const db = new Database(join(dataDir, DATABASE_FILE));
  db.pragma('journal_mode = WAL');
  db.exec(`CREATE TABLE IF NOT EXISTS sealed_blobs (
    name TEXT PRIMARY KEY NOT NULL,
    blob BLOB NOT NULL,
    updated_at INTEGER NOT NULL
  ) STRICT`);
  const getStmt = db.prepare<[string], { blob: Buffer }>('SELECT blob FROM sealed_blobs WHERE name = ?');
  const putStmt = db.prepare<[string, Buffer, number]>(
    'INSERT INTO sealed_blobs (name, blob, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET blob = excluded.blob, updated_at = excluded.updated_at',
  );
  const deleteStmt = db.prepare<[string]>('DELETE FROM sealed_blobs WHERE name = ?');
  const allStmt = db.prepare<[], { name: string; blob: Buffer }>('SELECT name, blob FROM sealed_blobs ORDER BY name');
  const checkName = (name: string): void => {
    if (typeof name !== 'string' || name.length === 0 || name.length > 1024) throw new RangeError(`invalid sealed blob name ${JSON.stringify(name)}`);
  };
  return {
    get(name) {
      checkName(name);
      return getStmt.get(name)?.blob;
    },
    put(name, blob) {
      checkName(name);
      if (!(blob instanceof Uint8Array) || blob.length === 0) throw new RangeError(`sealed blob ${name} must be non-empty bytes`);
      putStmt.run(name, Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength), Date.now());
    },
    delete(name) {
      checkName(name);
      deleteStmt.run(name);
    },
    snapshot() {
      return allStmt.all().map((r) => ({ name: r.name, blob: Uint8Array.from(r.blob) }));
    },
    close() {
      db.close();
    },
  };
}
