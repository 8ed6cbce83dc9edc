/**
 * What a durable store keeps and the one way it changes: an ordered batch of changes committed
 * together. The broker never reads the store while it runs (its state lives in memory); it loads
 * everything once at start. That keeps the interface small enough for other backends (a Redis
 * implementation maps a batch to one MULTI/EXEC and `load` to scans of its keys).
 */
import type { QoS } from 'mqtt-packet';
import type { MessageProperties } from '../broker/message.js';
import type { SubscriptionOptions } from '../broker/subscriptions.js';

/** A message as stored: for protected topics `payload` is the publisher's envelope, never a re-wrap. */
export interface StoredMessage {
  topic: string;
  payload: Buffer;
  qos: QoS;
  retain: boolean;
  properties: MessageProperties | undefined;
  /** Epoch ms after which the message is not delivered; 0 = never (absolute, so expiry keeps counting across a restart). */
  expiresAt: number;
  origin: string;
}

export interface StoredSubscription {
  /** The filter as subscribed (with any `$share/{group}/` prefix). */
  key: string;
  filter: string;
  group: string | undefined;
  options: SubscriptionOptions;
}

export interface StoredSession {
  clientId: string;
  /** Seconds; 0xFFFFFFFF = never. */
  expiryInterval: number;
  /** Epoch ms at which the offline session ends; 0 = connected when written, or never expires. */
  expiresAt: number;
  subscriptions: StoredSubscription[];
}

/** Outgoing delivery state: not sent yet, sent and unacknowledged, or PUBREC received (QoS 2). */
export const enum DeliveryState {
  Queued = 0,
  Published = 1,
  Released = 2,
}

/** One message for one session; `id` orders a session's deliveries (queue and in flight). */
export interface StoredDelivery {
  id: number;
  clientId: string;
  message: StoredMessage;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | undefined;
  /** 0 while queued. */
  packetId: number;
  state: DeliveryState;
}

export interface StoredWill {
  clientId: string;
  message: StoredMessage;
  /** Epoch ms at which it is published. */
  publishAt: number;
}

export type Change =
  | { kind: 'session'; session: StoredSession }
  /** The session and every row of it (deliveries, incoming ids, will) are gone. */
  | { kind: 'session-end'; clientId: string }
  | { kind: 'delivery'; delivery: StoredDelivery }
  | { kind: 'delivery-state'; id: number; packetId: number; state: DeliveryState }
  | { kind: 'delivery-done'; id: number }
  /** An incoming QoS 2 packet id acknowledged with PUBREC (`waiting`) or released by PUBREL. */
  | { kind: 'incoming'; clientId: string; packetId: number; waiting: boolean }
  | { kind: 'retained'; topic: string; message: StoredMessage | null }
  | { kind: 'will'; clientId: string; will: StoredWill | null };

export interface LoadedState {
  sessions: StoredSession[];
  /** Ordered by id. */
  deliveries: StoredDelivery[];
  incoming: { clientId: string; packetId: number }[];
  retained: StoredMessage[];
  wills: StoredWill[];
  /** The largest delivery id ever stored (new ones continue above it). */
  lastDeliveryId: number;
}

export interface DurableStore {
  /** Everything stored; expired sessions (and their rows) and expired retained messages are removed first. */
  load(now: number): Promise<LoadedState>;
  /** Applies `changes` in order, all or nothing; resolves once they are as durable as the store promises. */
  commit(changes: readonly Change[]): Promise<void>;
  /** Housekeeping between commits (checkpoint, reclaim free pages); may do nothing. */
  maintain(): void;
  close(): Promise<void>;
}
