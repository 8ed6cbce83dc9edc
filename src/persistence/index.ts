/** Durable broker state: opens the store, hands the broker its journal, restores what was stored. */
import type { Logger } from 'pino';
import type { Broker } from '../broker/broker.js';
import type { StateJournal } from '../broker/journal.js';
import type { RetainedStore } from '../store/retained.js';
import type { PersistenceConfig } from '../config.js';
import { GroupCommitJournal } from './journal.js';
import { JournaledRetainedStore } from './retained.js';
import { restoreState } from './restore.js';
import { ThreadedSqliteStore } from './threaded-store.js';
import type { DurableStore, LoadedState } from './store.js';

/** Housekeeping period: checkpoint the WAL and give free pages back to the file system. */
const MAINTAIN_MS = 10_000;

export class Persistence {
  readonly journal: GroupCommitJournal;
  readonly retained: JournaledRetainedStore;
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    private readonly store: DurableStore,
    private readonly state: LoadedState,
    private readonly log: Logger,
  ) {
    this.journal = new GroupCommitJournal(store, state.lastDeliveryId, (err) => log.error({ err }, 'durable store commit failed: acknowledgements withheld, their connections closed'));
    this.retained = new JournaledRetainedStore(this.journal);
    this.timer = setInterval(() => this.maintain(), MAINTAIN_MS);
    this.timer.unref();
  }

  /** Opens `store` and reads it (expired sessions and retained messages are dropped on the way). */
  static async open(store: DurableStore, log: Logger): Promise<Persistence> {
    const state = await store.load(Date.now());
    return new Persistence(store, state, log);
  }

  /** The broker's constructor options for it. */
  get brokerOptions(): { journal: StateJournal; retained: RetainedStore } {
    return { journal: this.journal, retained: this.retained };
  }

  /** Puts the loaded state into `broker` (after its delivery stage is attached: protected messages go through it on resume). */
  restore(broker: Broker): void {
    const started = performance.now();
    const counts = restoreState(broker, this.state, this.journal, this.retained);
    // the loaded rows are the broker's now; nothing else needs them
    this.state.deliveries.length = 0;
    this.log.info({ ...counts, ms: Math.round(performance.now() - started) }, 'durable state restored');
  }

  /** Commits what is left and closes the store. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.journal.flush();
    await this.store.close();
  }

  private maintain(): void {
    try {
      this.store.maintain();
    } catch (err) {
      this.log.warn({ err }, 'durable store housekeeping failed');
    }
  }
}

/** The embedded store: SQLite in the data folder, written on a thread of its own. */
export function openPersistence(dataDir: string, config: PersistenceConfig, log: Logger): Promise<Persistence> {
  const store = new ThreadedSqliteStore(dataDir, config.sync, (err) => log.warn({ err }, 'durable store housekeeping failed'));
  return Persistence.open(store, log);
}
