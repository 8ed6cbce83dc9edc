/** PUBLISH and PUBREL from a client (incoming QoS 0/1/2 flows, MQTT-3.3 and 4.3). */
import { isUtf8 } from 'node:buffer';
import type { IPublishPacket, IPubrelPacket } from 'mqtt-packet';
import { Reason } from '../../mqtt/reason-codes.js';
import { isValidTopicName, isSysTopic } from '../../mqtt/topic.js';
import type { Connection } from '../connection.js';
import { ProtocolViolation } from '../errors.js';
import { makeMessage, type Message, type MessageProperties } from '../message.js';
import type { Broker } from '../broker.js';
import { whenStored, type StateJournal } from '../journal.js';
import { ROUTE } from '../extension.js';

/**
 * An incoming PUBLISH, step by step (as mosquitto's handle__publish). A protocol violation closes
 * the connection (thrown); a message the broker will not route leaves by `refuseMessage` alone.
 */
export function handlePublish(conn: Connection, packet: IPublishPacket): void {
  const topic = topicOf(conn, packet);
  if (packet.qos === 2 && isRetransmission(conn, packet)) return;
  const payload = typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload;
  if (packet.properties?.payloadFormatIndicator && conn.version === 5 && !isUtf8(payload)) {
    refuseMessage(conn, packet, Reason.PayloadFormatInvalid);
    return;
  }
  countReceived(conn.broker, packet, topic);
  // $SYS is the broker's own (its statistics): clients read it, never write it, as in mosquitto
  const allowed = isSysTopic(topic) ? false : conn.broker.auth.authorizePublish(conn, topic);
  // An asynchronous hook must not let a later message overtake this one.
  if (typeof allowed === 'boolean' && !conn.busy) authorized(conn, packet, topic, payload, allowed);
  else conn.serially(() => Promise.resolve(allowed).then((ok) => authorized(conn, packet, topic, payload, ok)));
}

/** The topic name, its alias resolved (v5); checked, as is the absence of a subscription identifier. */
function topicOf(conn: Connection, packet: IPublishPacket): string {
  const limits = conn.broker.config.limits;
  const props = conn.version === 5 ? packet.properties : undefined;
  let topic = packet.topic;
  if (props?.topicAlias !== undefined) {
    const alias = props.topicAlias;
    if (alias === 0 || alias > limits.topicAliasMaximum) {
      throw new ProtocolViolation(Reason.TopicAliasInvalid, `topic alias ${alias} outside 1..${limits.topicAliasMaximum}`);
    }
    if (topic.length > 0) (conn.inboundAliases ??= new Map()).set(alias, topic);
    else {
      const known = conn.inboundAliases?.get(alias);
      if (known === undefined) throw new ProtocolViolation(Reason.ProtocolError, `topic alias ${alias} was never set`);
      topic = known;
    }
  }
  if (!isValidTopicName(topic, limits.maxTopicLevels)) {
    throw new ProtocolViolation(Reason.TopicNameInvalid, `invalid topic name ${JSON.stringify(topic)}`);
  }
  if (props?.subscriptionIdentifier !== undefined) {
    throw new ProtocolViolation(Reason.ProtocolError, 'a client may not send a subscription identifier');
  }
  return topic;
}

/** A QoS 2 message already acknowledged with PUBREC is acknowledged again, not routed again. */
function isRetransmission(conn: Connection, packet: IPublishPacket): boolean {
  const id = packet.messageId ?? 0;
  const session = conn.session!;
  if (session.incomingQoS2?.has(id)) {
    conn.send({ cmd: 'pubrec', messageId: id });
    return true;
  }
  const max = conn.broker.config.limits.receiveMaximum;
  if ((session.incomingQoS2?.size ?? 0) >= max) {
    throw new ProtocolViolation(Reason.ReceiveMaximumExceeded, `more than ${max} unacknowledged QoS 2 messages`);
  }
  return false;
}

function countReceived(broker: Broker, packet: IPublishPacket, topic: string): void {
  broker.counters.messagesReceived++;
  broker.counters.publishReceived[packet.qos]++;
  broker.topicSample.seen(topic);
}

/** Once the auth hook answered: the extension decides, then the message is retained and routed. */
function authorized(conn: Connection, packet: IPublishPacket, topic: string, payload: Buffer, allowed: boolean): void {
  if (conn.closed) return;
  const broker = conn.broker;
  if (!allowed) {
    broker.log.debug({ clientId: conn.clientId, topic }, 'publish refused by authorization');
    refuseMessage(conn, packet, Reason.NotAuthorized);
    return;
  }
  const props = conn.version === 5 ? packet.properties : undefined;
  const message = makeMessage(topic, payload, packet.qos, packet.retain, props && messageProperties(props), conn.clientId);
  const decision = broker.extension.onPublish?.(conn, message) ?? ROUTE;
  if (decision.action === 'refuse') {
    refuseMessage(conn, packet, decision.reason);
    return;
  }
  if (decision.action === 'consume') {
    acknowledge(conn, packet, Reason.Success);
    return;
  }
  retainAndRoute(conn, packet, message, decision.parsed);
}

function retainAndRoute(conn: Connection, packet: IPublishPacket, message: Message, parsed: unknown): void {
  const broker = conn.broker;
  const journal = broker.journal;
  const changes = journal?.changes ?? 0;
  if (packet.retain) broker.retain(message);
  const recipients = broker.route(message, undefined, parsed);
  const reason = recipients === 0 ? Reason.NoMatchingSubscribers : Reason.Success;
  if (journal === undefined || packet.qos === 0) acknowledge(conn, packet, reason);
  else acknowledgeDurably(conn, packet, reason, journal, changes);
}

/** The one way out for a message that is not routed (v5: its reason code in PUBACK/PUBREC). */
function refuseMessage(conn: Connection, packet: IPublishPacket, reason: number): void {
  acknowledge(conn, packet, reason);
}

/** Per-hop properties (alias, subscription ids) do not travel with the message. */
function messageProperties(p: NonNullable<IPublishPacket['properties']>): MessageProperties | undefined {
  const { topicAlias: _alias, subscriptionIdentifier: _ids, ...rest } = p;
  for (const _ in rest) return rest;
  return undefined;
}

/**
 * PUBACK / PUBREC for QoS 1 / 2. v3.1.1 has no negative acknowledgement: a refused message is
 * acknowledged and dropped, as mosquitto does.
 */
function acknowledge(conn: Connection, packet: IPublishPacket, reason: number): void {
  if (packet.qos === 0) return;
  if (packet.qos === 2 && reason < 0x80) conn.session!.holdIncoming(packet.messageId ?? 0);
  sendAcknowledgement(conn, packet, reason);
}

function sendAcknowledgement(conn: Connection, packet: IPublishPacket, reason: number): void {
  const reasonCode = conn.version === 5 && reason !== Reason.Success ? reason : undefined;
  conn.send({ cmd: packet.qos === 1 ? 'puback' : 'pubrec', messageId: packet.messageId, reasonCode });
}

/**
 * The acknowledgement once what the message changed in persistent sessions and retained messages
 * is committed (`changes` = the journal's count before routing), and after every acknowledgement
 * already waiting, so they leave in the order the PUBLISHes came. Messages still in the delivery
 * stage reach their sessions later: the acknowledgement waits for them first.
 */
function acknowledgeDurably(conn: Connection, packet: IPublishPacket, reason: number, journal: StateJournal, changes: number): void {
  if (packet.qos === 2 && reason < 0x80) conn.session!.holdIncoming(packet.messageId ?? 0);
  // nothing to wait for (clean sessions only, nothing in the stage, nothing pending): no closures either
  if (journal.changes === changes && !journal.waiting && !conn.broker.inStage(conn.clientId)) {
    sendAcknowledgement(conn, packet, reason);
    return;
  }
  conn.broker.whenDelivered(conn.clientId, () => whenStored(journal, changes, () => sendAcknowledgement(conn, packet, reason), () => unstored(conn)));
}

/** The store failed: without an acknowledgement the client sends the message again on its next connection. */
export function unstored(conn: Connection): void {
  conn.close(Reason.ImplementationSpecificError, 'the broker could not store the session state');
}

export function handlePubrel(conn: Connection, packet: IPubrelPacket): void {
  const id = packet.messageId ?? 0;
  const journal = conn.broker.journal;
  const changes = journal?.changes ?? 0;
  const known = conn.session!.releaseIncoming(id);
  const pubcomp = (): void =>
    conn.send({
      cmd: 'pubcomp',
      messageId: id,
      reasonCode: known || conn.version !== 5 ? undefined : Reason.PacketIdentifierNotFound,
    });
  // the released id is forgotten on disk before the client may use it for a new message
  whenStored(journal, changes, pubcomp, () => unstored(conn));
}
