/**
 * The SQLite store with its writes on a thread of their own. better-sqlite3 runs each statement on
 * the calling thread: committing on the broker's event loop stopped it for the whole transaction
 * (~15 µs per stored delivery), and a subscriber's window of unacknowledged messages (32 by
 * default) then refilled only once per such turn. Here the loop encodes a batch (copying its
 * payloads once), posts it and goes on; the acknowledgements that wait for it go out when the
 * thread answers. The store is read once, at start, on the calling thread, before the thread opens it.
 */
import { Worker } from 'node:worker_threads';
import { encodeBatch } from './batch.js';
import { openSqliteStore, STATE_FILE, type SyncLevel } from './sqlite-store.js';
import type { StoreCommand, StoreReply, StoreRequest, StoreThreadData } from './store-thread.js';
import type { Change, DurableStore, LoadedState } from './store.js';

/**
 * The thread's V8 heap. Node's flags are the process's, so without limits of its own the thread
 * gets the broker's `--min-semi-space-size=16`: a young generation of 2 x 16 MB for a loop that
 * allocates a few objects per batch. It touches those pages slowly, so they became resident over
 * minutes of traffic and the broker's RSS crept up with them (fuzz runs, after the broker's first
 * full collection: the process's V8 pages at 57-59 MB with the inherited size, 21 MB with this one).
 * 6 MB of young generation (2 x 2 MB semi-spaces) is plenty for what a batch leaves between scavenges.
 */
const STORE_THREAD_LIMITS = { maxYoungGenerationSizeMb: 6 };

export class ThreadedSqliteStore implements DurableStore {
  private worker: Worker | undefined;
  private seq = 0;
  private readonly pending = new Map<number, { resolve(): void; reject(err: Error): void }>();
  /** Set once the thread is gone: every later request fails with it. */
  private dead: Error | undefined;

  /** `maintenanceFailed` hears of housekeeping errors (no caller waits for those). */
  constructor(
    private readonly dataDir: string,
    private readonly sync: SyncLevel,
    private readonly maintenanceFailed: (err: Error) => void = () => {},
    private readonly file = STATE_FILE,
  ) {}

  async load(now: number): Promise<LoadedState> {
    const reader = openSqliteStore(this.dataDir, this.sync, this.file);
    let state: LoadedState;
    try {
      state = await reader.load(now);
    } finally {
      await reader.close();
    }
    this.start();
    return state;
  }

  commit(changes: readonly Change[]): Promise<void> {
    const batch = encodeBatch(changes);
    return this.request({ type: 'commit', batch }, [batch.payloads]);
  }

  maintain(): void {
    this.request({ type: 'maintain' }).catch((err: Error) => this.maintenanceFailed(err));
  }

  async close(): Promise<void> {
    if (this.worker === undefined || this.dead !== undefined) return;
    await this.request({ type: 'close' });
    this.dead = new Error('the durable store is closed');
    await this.worker.terminate();
  }

  private start(): void {
    const workerData: StoreThreadData = { dataDir: this.dataDir, sync: this.sync, file: this.file };
    const worker = new Worker(new URL('./store-thread.js', import.meta.url), { workerData, resourceLimits: STORE_THREAD_LIMITS });
    // only requests in progress keep the process alive (see request)
    worker.unref();
    worker.on('message', (r: StoreReply) => {
      const p = this.pending.get(r.seq);
      this.pending.delete(r.seq);
      if (this.pending.size === 0) worker.unref();
      if (r.error === undefined) p?.resolve();
      else p?.reject(new Error(r.error));
    });
    const gone = (err: Error): void => {
      this.dead ??= err;
      for (const p of this.pending.values()) p.reject(this.dead);
      this.pending.clear();
    };
    worker.on('error', gone);
    worker.on('exit', (code) => gone(new Error(`the durable store's thread exited (code ${code})`)));
    this.worker = worker;
  }

  private request(r: StoreCommand, transfer: ArrayBuffer[] = []): Promise<void> {
    const worker = this.worker;
    if (worker === undefined) return Promise.reject(new Error('the durable store is not loaded yet'));
    if (this.dead !== undefined) return Promise.reject(this.dead);
    const seq = ++this.seq;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      worker.ref();
      const message: StoreRequest = { ...r, seq };
      worker.postMessage(message, transfer);
    });
  }
}
