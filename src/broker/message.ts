/** What the router moves around: an immutable application message and a per-recipient delivery. */
import type { QoS, UserProperties } from 'mqtt-packet';
import type { PayloadLead } from '../mqtt/publish-header.js';

/** MQTT 5 PUBLISH properties that travel with a message from publisher to subscriber. */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  messageExpiryInterval?: number;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Buffer;
  userProperties?: UserProperties;
}

export interface Message {
  readonly topic: string;
  /**
   * Usually a view of the socket read that carried the PUBLISH (no copy on the way in); replaced
   * by a copy of its own when the message is kept beyond its delivery (see `settleMessage`).
   */
  payload: Buffer;
  readonly qos: QoS;
  readonly retain: boolean;
  /** Properties as published, minus the per-hop ones (topic alias, subscription ids, expiry). */
  readonly properties: MessageProperties | undefined;
  /** Epoch ms after which the message must not be delivered; 0 = never. */
  readonly expiresAt: number;
  /** Client id of the publisher ('' for messages the broker makes itself). */
  readonly origin: string;
  /** UTF-8 topic, encoded once for all recipients on first send. */
  topicBytes?: Buffer;
}

/** What a delivery stage put before one recipient's payload (a protected envelope's header). */
export interface DeliveryLead extends PayloadLead {
  /** This lead holding only memory of its own (see `settleDelivery`); itself when it already does. */
  settled(): DeliveryLead;
}

/** One message on its way to one session: queued, in flight, or waiting for PUBCOMP. */
export interface Delivery {
  message: Message;
  /**
   * Payload for this recipient: the message's, or — when a delivery stage re-protected it — a lead
   * of its own followed by `payload` (shared by every recipient, not copied). Always a suffix of
   * the message's payload (the whole of it, or a protected envelope's ciphertext).
   */
  payload: Buffer;
  /** Written before `payload`, when the delivery stage gave this recipient one. */
  lead: DeliveryLead | undefined;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | undefined;
  packetId: number;
  /** 'pubrel' once the subscriber's PUBREC arrived (QoS 2). */
  state: 'publish' | 'pubrel';
  /**
   * Queued for an offline session in the publisher's form: the delivery stage runs when the
   * session resumes, so a late subscriber is served under its key as it is then.
   */
  inPublisherForm: boolean;
  /** Its id in the durable store; 0 = not stored (QoS 0, a clean session, or persistence off). */
  storeId: number;
}

/**
 * Records made per message on the hot path (this one, the decoder's PUBLISH, a re-wrap batch entry,
 * a publisher's acknowledgement in its lane) are class instances, not object literals. V8 follows
 * each object literal as an allocation site, and once a scavenge finds 85 % of a site's objects
 * still alive it allocates that site's objects in the old generation from then on ("pretenuring";
 * it does not do so for `new`). A protected broker loaded within seconds of its start had exactly
 * these four sites pretenured (checked with %InYoungGeneration: 99 % born old, 0 % in a broker that
 * idled first). Each such record, dead but old, kept what it named alive until the next full
 * collection: the message, its payload and the 64 KiB socket read under it. External memory then
 * forced a full collection every ~150 ms, for good: ~30 % fewer messages at 1 -> 1. A Delivery stays
 * a literal: at high fan-out deliveries wait long for their acknowledgements, and made with `new`
 * they read 5-9 % lower at plain 1 -> 32 and 1 -> 128 QoS 1 in a trial (within the bench's noise).
 */
class MessageRecord implements Message {
  // declared, not class fields: assigned in one constructor, in this order, like the literal's
  // properties (a class field is first defined as undefined, which widens V8's field types)
  declare readonly topic: string;
  declare payload: Buffer;
  declare readonly qos: QoS;
  declare readonly retain: boolean;
  declare readonly properties: MessageProperties | undefined;
  declare readonly expiresAt: number;
  declare readonly origin: string;
  declare topicBytes: Buffer | undefined;

  constructor(topic: string, payload: Buffer, qos: QoS, retain: boolean, properties: MessageProperties | undefined, expiresAt: number, origin: string) {
    this.topic = topic;
    this.payload = payload;
    this.qos = qos;
    this.retain = retain;
    this.properties = properties;
    this.expiresAt = expiresAt;
    this.origin = origin;
    this.topicBytes = undefined;
  }
}

export function makeMessage(
  topic: string,
  payload: Buffer,
  qos: QoS,
  retain: boolean,
  properties: MessageProperties | undefined,
  origin: string,
  now = Date.now(),
): Message {
  const expiry = properties?.messageExpiryInterval;
  return new MessageRecord(topic, payload, qos, retain, properties, expiry !== undefined ? now + expiry * 1000 : 0, origin);
}

/** Seconds left before expiry (rounded up), 0 if expired, undefined if the message never expires. */
export function remainingExpiry(message: Message, now = Date.now()): number | undefined {
  if (message.expiresAt === 0) return undefined;
  const left = message.expiresAt - now;
  return left <= 0 ? 0 : Math.ceil(left / 1000);
}

/**
 * A payload may keep this many bytes of someone else's alive before it is copied: a view of a 64 KiB
 * socket read would otherwise hold the whole read (tens of other messages) for as long as it is kept.
 */
const SETTLE_SLACK = 4096;

function pinsOthers(view: Uint8Array): boolean {
  const others = view.buffer.byteLength - view.length;
  return others > SETTLE_SLACK && others > view.length;
}

/** A copy in memory of its own (not Node's shared pool, which would pin 8 KiB for it). */
function ownCopy(view: Uint8Array): Buffer {
  const copy = Buffer.allocUnsafeSlow(view.length);
  copy.set(view);
  return copy;
}

/** `view`, or a copy of it when it keeps more of someone else's bytes alive than a copy costs. */
export function ownBytes(view: Uint8Array): Uint8Array {
  return pinsOthers(view) ? ownCopy(view) : view;
}

/**
 * Gives a message that will be kept (retained, a will, queued for a session that is not
 * reading) a payload of its own, once: from then on it holds only its bytes, not the socket read
 * it arrived in. Deliveries made before keep their views and stay valid.
 */
export function settleMessage(m: Message): void {
  if (pinsOthers(m.payload)) m.payload = ownCopy(m.payload);
  const correlation = m.properties?.correlationData;
  if (correlation !== undefined && pinsOthers(correlation)) m.properties!.correlationData = ownCopy(correlation);
}

/** `settleMessage` for a kept delivery, its payload and lead re-pointed at memory of their own. */
export function settleDelivery(d: Delivery): void {
  const m = d.message;
  settleMessage(m);
  const p = d.payload;
  if (p.buffer !== m.payload.buffer && pinsOthers(p)) {
    // the payload is the message's or its tail (protected ciphertext): the same bytes in the copy
    d.payload = p.length <= m.payload.length ? m.payload.subarray(m.payload.length - p.length) : ownCopy(p);
  }
  if (d.lead !== undefined) d.lead = d.lead.settled();
}
