/** Session state (MQTT-4.1): subscriptions, QoS 1/2 flows in both directions, the offline queue. */
import type { Delivery, Message } from './message.js';
import type { SubscriptionOptions } from './subscriptions.js';
import { remainingExpiry } from './message.js';
import { Fifo } from './queue.js';
import type { Deadline } from './deadline.js';

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
  dropped: number;
}

export class Session {
  /** Keyed by the filter exactly as subscribed (shared ones keep their `$share/` prefix). */
  readonly subscriptions = new Map<string, StoredSubscription>();
  /** Outgoing QoS 1/2 messages sent and not yet completed, by packet id. */
  readonly inflight = new Map<number, Delivery>();
  /** Incoming QoS 2 packet ids acknowledged with PUBREC and awaiting PUBREL. */
  readonly incomingQoS2 = new Set<number>();
  readonly queue = new Fifo<Delivery>();
  link: SessionLink | null = null;
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

  constructor(
    readonly clientId: string,
    private readonly maxQueued: number,
    private readonly counters: SessionCounters,
  ) {}

  /** Hands a delivery to the client now, or queues it (QoS > 0) for later. */
  deliver(d: Delivery): void {
    const link = this.preparing ? null : this.link;
    if (d.qos === 0) {
      if (link) link.sendPublish(d, false);
      return;
    }
    if (link && this.queue.length === 0 && this.inflight.size < link.receiveMaximum) {
      this.sendNew(link, d);
      return;
    }
    if (this.queue.length >= this.maxQueued) {
      this.counters.dropped++;
      return;
    }
    this.queue.push(d);
  }

  /** PUBACK, PUBCOMP, or an error PUBREC: the outgoing flow of `packetId` is over. */
  complete(packetId: number): boolean {
    if (!this.inflight.delete(packetId)) return false;
    this.drain();
    return true;
  }

  /** PUBREC (success): from now on the message is acknowledged; PUBREL follows. */
  received(packetId: number): boolean {
    const d = this.inflight.get(packetId);
    if (!d || d.qos !== 2) return false;
    d.state = 'pubrel';
    return true;
  }

  /** A (re)connected client takes over: resend what was in flight, then drain the queue. */
  resume(link: SessionLink): void {
    this.link = link;
    const now = Date.now();
    for (const [id, d] of this.inflight) {
      if (d.state === 'pubrel') {
        link.sendPubrel(id);
      } else if (remainingExpiry(d.message, now) === 0) {
        this.inflight.delete(id);
      } else if (!link.sendPublish(d, true)) {
        this.inflight.delete(id);
      }
    }
    this.drain();
  }

  drain(): void {
    const link = this.link;
    if (!link || this.preparing) return;
    const now = Date.now();
    while (this.queue.length > 0 && this.inflight.size < link.receiveMaximum) {
      const d = this.queue.shift()!;
      if (remainingExpiry(d.message, now) === 0) continue;
      this.sendNew(link, d);
    }
  }

  /** Takes the given deliveries out of the queue, keeping the order of the rest. */
  removeQueued(deliveries: ReadonlySet<Delivery>): void {
    const kept = [...this.queue].filter((d) => !deliveries.has(d));
    this.queue.clear();
    for (const d of kept) this.queue.push(d);
  }

  /** Forgets all message state (clean start / session end). */
  clearMessages(): void {
    this.inflight.clear();
    this.incomingQoS2.clear();
    this.queue.clear();
  }

  private sendNew(link: SessionLink, d: Delivery): void {
    d.packetId = this.allocatePacketId();
    this.inflight.set(d.packetId, d);
    // A message the client cannot take (too large) is discarded as if delivered (MQTT-3.1.2-25).
    if (!link.sendPublish(d, false)) this.inflight.delete(d.packetId);
  }

  private allocatePacketId(): number {
    for (;;) {
      const id = this.nextPacketId;
      this.nextPacketId = id === 65535 ? 1 : id + 1;
      if (!this.inflight.has(id)) return id;
    }
  }
}
