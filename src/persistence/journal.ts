/**
 * Group commit: the broker's state changes of one event-loop turn go to the store as one batch,
 * written after the turn's I/O (setImmediate); acknowledgements that wait for them go out when it
 * is committed. While one batch is being committed the next one collects.
 */
import { LatencyHistogram } from '../latency-histogram.js';
import type { StateJournal } from '../broker/journal.js';
import type { Delivery, Message } from '../broker/message.js';
import type { Session } from '../broker/session.js';
import type { Change, DeliveryState, DurableStore, StoredDelivery, StoredSession } from './store.js';

const FOREVER = 0xffffffff;

/**
 * Commits start at most this often: under load a turn of the event loop carries only a few dozen
 * messages, and each transaction has a fixed cost (the WAL frame of every page it touched), so
 * waiting for a few turns writes fewer pages per message; an idle broker commits at the turn's end.
 */
const MIN_COMMIT_INTERVAL_MS = 4;

/** The store's state of an outgoing delivery. */
function stateOf(d: Delivery): DeliveryState {
  return d.packetId === 0 ? 0 : d.state === 'pubrel' ? 2 : 1;
}

export function storedSession(session: Session, now: number): StoredSession {
  const offline = session.link === null && session.expiryInterval !== FOREVER;
  return {
    clientId: session.clientId,
    expiryInterval: session.expiryInterval,
    expiresAt: offline ? now + session.expiryInterval * 1000 : 0,
    subscriptions: [...session.subscriptions].map(([key, s]) => ({ key, filter: s.filter, group: s.group, options: s.options })),
  };
}

export class GroupCommitJournal implements StateJournal {
  changes = 0;
  /** Client ids with a session row (written or loaded): a clean session is never deleted needlessly. */
  private readonly stored = new Set<string>();
  /** This batch; a delivery inserted and completed in the same batch leaves a hole (never written). */
  private batch: (Change | undefined)[] = [];
  /** Where in `batch` each delivery inserted in it is, by id: later changes edit that row instead. */
  private fresh = new Map<number, Extract<Change, { kind: 'delivery' }> & { index: number }>();
  private callbacks: ((committed: boolean) => void)[] = [];
  /** How long each commit that wrote something took (read by the metrics). */
  readonly commitLatency = new LatencyHistogram();
  private scheduled = false;
  private committing = false;
  private lastCommit = -Infinity;
  private idle: (() => void) | undefined;
  /** Delivery ids up to this one have their rows committed (ids grow; restored rows are committed). */
  private committedThrough: number;

  constructor(
    private readonly store: DurableStore,
    private nextDeliveryId: number,
    private readonly failed: (err: unknown) => void,
  ) {
    this.committedThrough = nextDeliveryId;
  }

  get waiting(): boolean {
    return this.callbacks.length > 0 || this.committing;
  }

  /** A session loaded from the store. */
  known(clientId: string): void {
    this.stored.add(clientId);
  }

  sessionChanged(session: Session): void {
    if (session.expiryInterval === 0) {
      // no longer outlives its connection: what was stored must not come back after a restart
      if (this.stored.delete(session.clientId)) this.record({ kind: 'session-end', clientId: session.clientId });
      return;
    }
    this.stored.add(session.clientId);
    this.record({ kind: 'session', session: storedSession(session, Date.now()) });
  }

  sessionEnded(session: Session): void {
    if (this.stored.delete(session.clientId)) this.record({ kind: 'session-end', clientId: session.clientId });
  }

  deliveryAdded(session: Session, d: Delivery): void {
    const id = ++this.nextDeliveryId;
    d.storeId = id;
    const delivery: StoredDelivery = {
      id,
      clientId: session.clientId,
      // the message as published: for a protected topic the sender's envelope, never a re-wrap
      message: d.message,
      qos: d.qos,
      retain: d.retain,
      subscriptionIds: d.subscriptionIds,
      packetId: d.packetId,
      state: stateOf(d),
    };
    const change = { kind: 'delivery' as const, delivery, index: this.batch.length };
    this.fresh.set(id, change);
    this.record(change);
  }

  deliveryChanged(d: Delivery): void {
    const fresh = this.fresh.get(d.storeId);
    if (fresh !== undefined) {
      fresh.delivery.packetId = d.packetId;
      fresh.delivery.state = stateOf(d);
      this.changes++;
      return;
    }
    this.record({ kind: 'delivery-state', id: d.storeId, packetId: d.packetId, state: stateOf(d) });
  }

  isCommitted(d: Delivery): boolean {
    return d.storeId <= this.committedThrough;
  }

  deliveryDone(d: Delivery): void {
    const id = d.storeId;
    d.storeId = 0;
    const fresh = this.fresh.get(id);
    if (fresh !== undefined) {
      this.batch[fresh.index] = undefined;
      this.fresh.delete(id);
      this.changes++;
      return;
    }
    this.record({ kind: 'delivery-done', id });
  }

  incomingQoS2(session: Session, packetId: number, waiting: boolean): void {
    this.record({ kind: 'incoming', clientId: session.clientId, packetId, waiting });
  }

  willScheduled(session: Session, message: Message, publishAt: number): void {
    if (session.durable) this.record({ kind: 'will', clientId: session.clientId, will: { clientId: session.clientId, message, publishAt } });
  }

  willGone(session: Session): void {
    if (this.stored.has(session.clientId)) this.record({ kind: 'will', clientId: session.clientId, will: null });
  }

  retained(topic: string, message: Message | null): void {
    this.record({ kind: 'retained', topic, message });
  }

  afterCommit(fn: (committed: boolean) => void): void {
    if (this.batch.length === 0 && !this.waiting) {
      fn(true);
      return;
    }
    this.callbacks.push(fn);
    this.schedule();
  }

  /** Commits what is recorded and waits for every commit in progress. */
  async flush(): Promise<void> {
    while (this.batch.length > 0 || this.callbacks.length > 0 || this.committing) {
      if (this.committing) await new Promise<void>((resolve) => (this.idle = resolve));
      else await this.commit();
    }
  }

  private record(change: Change): void {
    this.changes++;
    this.batch.push(change);
    this.schedule();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    const wait = this.lastCommit + MIN_COMMIT_INTERVAL_MS - performance.now();
    if (wait > 0) setTimeout(this.onTurnEnd, wait);
    else setImmediate(this.onTurnEnd);
  }

  private readonly onTurnEnd = (): void => {
    this.scheduled = false;
    if (!this.committing) void this.commit();
  };

  private async commit(): Promise<void> {
    const changes = this.batch.filter((c): c is Change => c !== undefined);
    const callbacks = this.callbacks;
    const through = this.nextDeliveryId;
    this.batch = [];
    this.fresh = new Map();
    this.callbacks = [];
    this.committing = true;
    this.lastCommit = performance.now();
    let committed = true;
    try {
      if (changes.length > 0) {
        await this.store.commit(changes);
        this.commitLatency.observe(performance.now() - this.lastCommit);
      }
      this.committedThrough = through;
    } catch (err) {
      committed = false;
      this.failed(err);
    }
    this.committing = false;
    for (const fn of callbacks) fn(committed);
    const idle = this.idle;
    this.idle = undefined;
    idle?.();
    // what collected meanwhile goes in the next batch
    if (this.batch.length > 0 || this.callbacks.length > 0) this.schedule();
  }
}
