/** Session state (MQTT-4.1): subscriptions, QoS 1/2 flows in both directions, the offline queue. */
import type { Delivery, Message } from './message.js';
import type { SubscriptionOptions } from './subscriptions.js';
import { remainingExpiry, settleDelivery } from './message.js';
import { Fifo } from './queue.js';
import { InflightTable } from './inflight.js';
import type { Deadline } from './deadline.js';
import type { Logger } from '../log.js';
import type { StateJournal } from './journal.js';

/** What a session needs from the connection that currently carries it. */
export interface SessionLink {
  readonly receiveMaximum: number;
  /** Writes a PUBLISH; false if it could not be sent (e.g. above the client's maximum packet size). */
  sendPublish(delivery: Delivery, dup: boolean): boolean;
  sendPubrel(packetId: number): void;
}

export interface StoredSubscription {
  /** The filter without any `$share/{group}/` prefix. */
  filter: string;
  group: string | undefined;
  options: SubscriptionOptions;
}

export interface SessionCounters {
  /** QoS 1/2 deliveries dropped because a session's queue was full. */
  dropped: number;
}

/**
 * Bounds on what waits in a session's queue, i.e. beyond the in-flight window (as mosquitto's
 * max_queued_messages / max_queued_bytes): a delivery is dropped when the queue already holds
 * `maxQueuedMessages` messages or `maxQueuedBytes` payload bytes. 0 = no such bound.
 */
export interface QueueLimits {
  readonly maxQueuedMessages: number;
  readonly maxQueuedBytes: number;
}

const NO_SUBSCRIPTIONS: ReadonlyMap<string, StoredSubscription> = new Map();

/*
 * The Maps and Sets of a session are made at first use: an idle connection's session would
 * otherwise hold ~1 KiB of empty hash tables (most sessions never use most of them).
 */
export class Session {
  private subscriptionsByKey: Map<string, StoredSubscription> | undefined;
  /** Outgoing QoS 1/2 messages sent and not yet completed, by packet id. */
  readonly inflight = new InflightTable();
  /** Incoming QoS 2 packet ids acknowledged with PUBREC and awaiting PUBREL; undefined until the first. */
  incomingQoS2: Set<number> | undefined;
  readonly queue = new Fifo<Delivery>();
  /** Payload bytes of the messages in `queue` (each counted by its message's payload as published). */
  queuedBytes = 0;
  /**
   * Packet ids of in-flight deliveries not yet resent on the current connection, oldest first:
   * a client that resumes with a smaller Receive Maximum gets them as acknowledgements free slots.
   */
  private held: Set<number> | undefined;
  /** The first `settledQueued` deliveries of `queue` hold memory of their own (see `settleWaiting`). */
  private settledQueued = 0;
  /** Acknowledgements that completed a flow, and their count at the last `settleWaiting`. */
  private completions = 0;
  private completionsAtSettle = 0;
  /** Set at the first drop of a burst (logged once), cleared when the queue has drained. */
  private dropping = false;
  link: SessionLink | null = null;
  /** Scratch of the TargetCollector: the routing round that last made this session a target, and where. */
  targetRound = 0;
  targetIndex = 0;
  /** Identity of the client that owns the session (what the trusted component knows it by). */
  identity = '';
  /**
   * Set while queued deliveries are being prepared (re-protected) for a resuming client: nothing
   * is sent before they are, so order is kept.
   */
  preparing = false;
  /** Seconds the session outlives its connection; 0xFFFFFFFF = forever. */
  expiryInterval = 0;
  expiryTimer: Deadline | undefined;
  /** A will waiting for its delay (or the session's end) after the connection was lost. */
  pendingWill: { message: Message; timer: Deadline } | undefined;
  private nextPacketId = 1;
  /** PUBLISHes waiting for the commit of their rows (see `sendNew`). */
  private sendsAfterCommit = 0;

  constructor(
    readonly clientId: string,
    private readonly limits: QueueLimits,
    private readonly counters: SessionCounters,
    private readonly log?: Pick<Logger, 'warn'>,
    private readonly journal?: StateJournal,
  ) {}

  /** Keyed by the filter exactly as subscribed (shared ones keep their `$share/` prefix). */
  get subscriptions(): ReadonlyMap<string, StoredSubscription> {
    return this.subscriptionsByKey ?? NO_SUBSCRIPTIONS;
  }

  /** Adds or replaces a subscription; true if one with that key existed. */
  setSubscription(key: string, sub: StoredSubscription): boolean {
    const subs = (this.subscriptionsByKey ??= new Map());
    const existed = subs.has(key);
    subs.set(key, sub);
    return existed;
  }

  /** Removes a subscription and returns it (undefined if there was none). */
  removeSubscription(key: string): StoredSubscription | undefined {
    const sub = this.subscriptionsByKey?.get(key);
    if (sub) this.subscriptionsByKey!.delete(key);
    return sub;
  }

  clearSubscriptions(): void {
    this.subscriptionsByKey = undefined;
  }

  /** Its state goes to the durable store: persistence is on and the session outlives its connection. */
  get durable(): boolean {
    return this.journal !== undefined && this.expiryInterval > 0;
  }

  /** Hands a delivery to the client now, or queues it (QoS > 0) for later. */
  deliver(d: Delivery): void {
    const link = this.preparing ? null : this.link;
    if (d.qos === 0) {
      if (link) link.sendPublish(d, false);
      return;
    }
    if (link && this.queue.length === 0 && (this.held === undefined || this.held.size === 0) && this.inflight.size < link.receiveMaximum) {
      if (this.durable) this.journal!.deliveryAdded(this, d);
      this.sendNew(link, d);
      return;
    }
    const { maxQueuedMessages, maxQueuedBytes } = this.limits;
    if ((maxQueuedMessages !== 0 && this.queue.length >= maxQueuedMessages) || (maxQueuedBytes !== 0 && this.queuedBytes >= maxQueuedBytes)) {
      this.drop();
      return;
    }
    if (this.durable) this.journal!.deliveryAdded(this, d);
    // nobody reads this session now: the delivery must not hold the socket read it came in
    if (this.link === null) settleDelivery(d);
    this.queue.push(d);
    this.queuedBytes += d.message.payload.length;
  }

  /**
   * Deliveries waiting on a client are views of the socket reads their messages came in (tens of
   * other messages each): gives the queued ones, and the in-flight ones of a client that completed
   * no flow since the last call, memory of their own. The broker calls it when a session goes
   * offline and once a second for connected ones, so a stalled or slow consumer holds what its
   * queue counts (`maxQueuedBytes`), not the reads behind it; a delivery is settled once.
   */
  settleWaiting(): void {
    for (let i = this.settledQueued; i < this.queue.length; i++) settleDelivery(this.queue.at(i)!);
    this.settledQueued = this.queue.length;
    if (this.inflight.size > 0 && (this.link === null || this.completions === this.completionsAtSettle)) {
      for (const [, d] of this.inflight.inOrder()) settleDelivery(d);
    }
    this.completionsAtSettle = this.completions;
  }

  /** PUBACK, PUBCOMP, or an error PUBREC: the outgoing flow of `packetId` is over. */
  complete(packetId: number): boolean {
    const d = this.inflight.get(packetId);
    if (d === undefined) return false;
    this.inflight.delete(packetId);
    if (d.storeId !== 0) this.journal!.deliveryDone(d);
    this.completions++;
    this.held?.delete(packetId);
    this.drain();
    return true;
  }

  /** PUBREC (success): from now on the message is acknowledged; PUBREL follows. */
  received(packetId: number): boolean {
    const d = this.inflight.get(packetId);
    if (!d || d.qos !== 2) return false;
    d.state = 'pubrel';
    this.held?.delete(packetId);
    if (d.storeId !== 0) this.journal!.deliveryChanged(d);
    return true;
  }

  /**
   * A (re)connected client takes over: resend what was in flight, oldest first and with the original
   * packet ids (PUBREL for flows past PUBREC, PUBLISH with DUP otherwise), then drain the queue. At
   * most the client's Receive Maximum of flows are unacknowledged at once (MQTT-4.9), those awaiting
   * PUBCOMP included: further PUBLISHes are held and resent as acknowledgements free slots.
   */
  resume(link: SessionLink): void {
    this.link = link;
    this.held = undefined;
    const now = Date.now();
    let unacknowledged = 0;
    const inflight = this.inflight.inOrder();
    for (const [, d] of inflight) if (d.state === 'pubrel') unacknowledged++;
    for (const [id, d] of inflight) {
      if (d.state === 'pubrel') {
        link.sendPubrel(id);
      } else if (remainingExpiry(d.message, now) === 0) {
        this.forget(d);
      } else if (unacknowledged >= link.receiveMaximum) {
        (this.held ??= new Set()).add(id);
      } else if (link.sendPublish(d, true)) {
        unacknowledged++;
      } else {
        this.forget(d);
      }
    }
    this.drain();
  }

  drain(): void {
    const link = this.link;
    if (!link || this.preparing) return;
    const now = Date.now();
    if (this.held !== undefined && this.held.size > 0) {
      this.resendHeld(link, this.held, now);
      // queued messages go out behind the held ones, never before
      if (this.held.size > 0) return;
    }
    while (this.queue.length > 0 && this.inflight.size < link.receiveMaximum) {
      const d = this.queue.shift()!;
      if (this.settledQueued > 0) this.settledQueued--;
      this.queuedBytes -= d.message.payload.length;
      if (remainingExpiry(d.message, now) === 0) {
        if (d.storeId !== 0) this.journal!.deliveryDone(d);
        continue;
      }
      this.sendNew(link, d);
    }
    if (this.queue.length === 0) this.dropping = false;
  }

  /** Takes the given deliveries out of the queue and the in-flight table, keeping the order of the rest. */
  removeQueued(deliveries: ReadonlySet<Delivery>): void {
    for (const d of deliveries) {
      if (d.packetId !== 0 && this.inflight.get(d.packetId) === d) this.forget(d);
      else if (d.storeId !== 0) this.journal!.deliveryDone(d);
    }
    const kept = [...this.queue].filter((d) => !deliveries.has(d));
    this.queue.clear();
    this.queuedBytes = 0;
    this.settledQueued = 0;
    for (const d of kept) {
      this.queue.push(d);
      this.queuedBytes += d.message.payload.length;
    }
  }

  /** Forgets all message state (clean start / session end). */
  clearMessages(): void {
    this.inflight.clear();
    this.held = undefined;
    this.incomingQoS2 = undefined;
    this.queue.clear();
    this.queuedBytes = 0;
    this.settledQueued = 0;
    this.dropping = false;
  }

  /** Sends held in-flight deliveries (DUP, original packet ids, oldest first) while slots are free. */
  private resendHeld(link: SessionLink, held: Set<number>, now: number): void {
    for (const id of held) {
      if (this.inflight.size - held.size >= link.receiveMaximum) return;
      held.delete(id);
      const d = this.inflight.get(id);
      if (!d) continue;
      if (remainingExpiry(d.message, now) === 0 || !link.sendPublish(d, true)) this.forget(d);
    }
  }

  /** Puts back a delivery loaded from the durable store: in flight if it had a packet id, else queued. */
  restore(d: Delivery): void {
    if (d.packetId === 0) {
      this.queue.push(d);
      this.queuedBytes += d.message.payload.length;
      return;
    }
    this.inflight.set(d.packetId, d);
    this.nextPacketId = d.packetId === 65535 ? 1 : d.packetId + 1;
  }

  /** An incoming QoS 2 message was accepted (PUBREC): its packet id waits for PUBREL. */
  holdIncoming(packetId: number): void {
    (this.incomingQoS2 ??= new Set()).add(packetId);
    if (this.durable) this.journal!.incomingQoS2(this, packetId, true);
  }

  /** PUBREL: false if the packet id was not waiting. */
  releaseIncoming(packetId: number): boolean {
    if (this.incomingQoS2?.delete(packetId) !== true) return false;
    if (this.durable) this.journal!.incomingQoS2(this, packetId, false);
    return true;
  }

  /** An in-flight delivery ends without an acknowledgement (expired, or the client cannot take it). */
  private forget(d: Delivery): void {
    this.inflight.delete(d.packetId);
    if (d.storeId !== 0) this.journal!.deliveryDone(d);
  }

  /** A full queue: count every dropped delivery, log once per burst (until the queue drains). */
  private drop(): void {
    this.counters.dropped++;
    if (this.dropping) return;
    this.dropping = true;
    this.log?.warn(
      {
        clientId: this.clientId,
        queued: this.queue.length,
        queuedBytes: this.queuedBytes,
        maxQueuedMessages: this.limits.maxQueuedMessages,
        maxQueuedBytes: this.limits.maxQueuedBytes,
        online: this.link !== null,
      },
      'session queue full: dropping QoS 1/2 messages for this client until its queue drains',
    );
  }

  private sendNew(link: SessionLink, d: Delivery): void {
    d.packetId = this.allocatePacketId();
    this.inflight.set(d.packetId, d);
    if (d.storeId !== 0) this.journal!.deliveryChanged(d);
    // A delivery to a persistent session leaves once what it needs is committed, later ones
    // behind it in order:
    // - QoS 2, its packet id: the client keeps an id it answered with PUBREC until PUBREL; had a
    //   crash lost that the id was used, a restarted broker could give it to another message,
    //   which the client would discard as a repeat.
    // - QoS 1, the client's own copy of a message it published at QoS 1/2, when its row is new:
    //   the publisher's PUBACK/PUBREC waits for the same commit, so the client gets it no later
    //   than its copy (same write, copy first), as from a broker that does not persist. Clients
    //   that stop reading once the copy arrives (Paho's test client) would otherwise miss it.
    //   Other QoS 1 deliveries leave at once: one acknowledged before the commit is never
    //   written (the journal drops a row inserted and completed in one batch).
    if (this.sendsAfterCommit > 0 || (d.storeId !== 0 && (d.qos === 2 || this.ownCopyUncommitted(d)))) {
      this.sendsAfterCommit++;
      this.journal!.afterCommit(() => {
        this.sendsAfterCommit--;
        if (this.link === link && this.inflight.get(d.packetId) === d && !link.sendPublish(d, false)) this.forget(d);
      });
      return;
    }
    // A message the client cannot take (too large) is discarded as if delivered (MQTT-3.1.2-25).
    if (!link.sendPublish(d, false)) this.forget(d);
  }

  /** A copy of a message this client published with an acknowledgement, its row not yet committed. */
  private ownCopyUncommitted(d: Delivery): boolean {
    return d.message.qos > 0 && d.message.origin === this.clientId && !this.journal!.isCommitted(d);
  }

  private allocatePacketId(): number {
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}
