/**
 * The store's own thread: opens the SQLite store and commits the batches the broker's thread sends,
 * one after another, answering each by its sequence number (with the error's message if it failed).
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { EncodedBatch } from './batch.js';
import { openSqliteStore, type SyncLevel } from './sqlite-store.js';

export interface StoreThreadData {
  dataDir: string;
  sync: SyncLevel;
  file: string;
}

export type StoreCommand = { type: 'commit'; batch: EncodedBatch } | { type: 'maintain' } | { type: 'close' };
export type StoreRequest = StoreCommand & { seq: number };

export interface StoreReply {
  seq: number;
  error?: string;
}

const port = parentPort;
if (port === null) throw new Error('store-thread runs as a worker thread');
const data = workerData as StoreThreadData;
const store = openSqliteStore(data.dataDir, data.sync, data.file);
port.on('message', (r: StoreRequest) => {
  void handle(r).then((reply) => {
    port.postMessage(reply);
    if (r.type === 'close') port.close();
  });
});

async function handle(r: StoreRequest): Promise<StoreReply> {
  try {
    if (r.type === 'commit') store.commitEncoded(r.batch);
    else if (r.type === 'maintain') store.maintain();
    else await store.close();
    return { seq: r.seq };
  } catch (err) {
    return { seq: r.seq, error: err instanceof Error ? err.message : String(err) };
  }
}
