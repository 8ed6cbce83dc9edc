/** What the router moves around: an immutable application message and a per-recipient delivery. */
import type { QoS, UserProperties } from 'mqtt-packet';

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
  readonly payload: Buffer;
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

/** One message on its way to one session: queued, in flight, or waiting for PUBCOMP. */
export interface Delivery {
  message: Message;
  /**
   * Payload for this recipient: the message's, or — when a delivery stage re-protected it — a lead
   * of its own followed by `payload` (shared by every recipient, not copied).
   */
  payload: Buffer;
  /** The staged lead, `u16 length || leadShared || leadOwn`: shared by the message's recipients, then this one's. */
  leadShared: Uint8Array | undefined;
  leadOwn: Uint8Array | undefined;
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
  staged: boolean;
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
  return {
    topic,
    payload,
    qos,
    retain,
    properties,
    expiresAt: expiry !== undefined ? now + expiry * 1000 : 0,
    origin,
  };
}

/** Seconds left before expiry (rounded up), 0 if expired, undefined if the message never expires. */
export function remainingExpiry(message: Message, now = Date.now()): number | undefined {
  if (message.expiresAt === 0) return undefined;
  const left = message.expiresAt - now;
  return left <= 0 ? 0 : Math.ceil(left / 1000);
}
