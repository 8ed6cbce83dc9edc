/** CONNECT (MQTT-3.1): authenticate, take over or start the session, negotiate, CONNACK. */
import { randomUUID } from 'node:crypto';
import type { IConnackPacket, IConnectPacket, QoS } from 'mqtt-packet';
import type { AuthenticateResult } from '../../auth/hooks.js';
import type { BrokerConfig } from '../../config.js';
import { connackCodeV3, Reason } from '../../mqtt/reason-codes.js';
import { isValidTopicName } from '../../mqtt/topic.js';
import type { ProtocolVersion } from '../../mqtt/codec.js';
import type { Connection } from '../connection.js';
import { makeMessage, settleMessage, type MessageProperties } from '../message.js';

const FOREVER = 0xffffffff;

export function handleConnect(conn: Connection, packet: IConnectPacket): void {
  const version = (packet.protocolVersion ?? 4) as ProtocolVersion;
  // Set before anything else: packets pipelined behind CONNECT must be decoded as this version.
  conn.setProtocolVersion(version);
  const broker = conn.broker;
  if (conn.overLimit) {
    // MQTT 5 has a reason for it; a v3.1.1 client just sees the connection closed (no code fits)
    broker.refusedAtLimit(conn.transport.remoteAddress);
    if (version === 5) refuse(conn, Reason.QuotaExceeded, false);
    else conn.destroy();
    return;
  }
  // 0x9F, not 0x8A Banned: the ban is temporary and comes from the client's own connect rate, not an administrator
  if (broker.abuse.connect(packet.clientId.length > 0 ? packet.clientId : undefined, conn.transport.remoteAddress) !== undefined) {
    refuse(conn, Reason.ConnectionRateExceeded, false);
    return;
  }
  if (version === 5 && packet.properties?.authenticationMethod !== undefined) {
    refuse(conn, Reason.BadAuthenticationMethod);
    return;
  }
  // MQTT-3.1.2: a Receive Maximum or Maximum Packet Size of 0 is a Protocol Error (0 would also
  // stall every QoS 1/2 delivery, or every packet, to this client).
  if (version === 5 && (packet.properties?.receiveMaximum === 0 || packet.properties?.maximumPacketSize === 0)) {
    refuse(conn, Reason.ProtocolError);
    return;
  }
  let clientId = packet.clientId;
  let assigned = false;
  if (clientId.length === 0) {
    // MQTT-3.1.3-8: v3.1.1 may assign an id only to a clean session; v3.1 never.
    if (version === 3 || (version === 4 && !packet.clean)) {
      refuse(conn, Reason.ClientIdentifierNotValid);
      return;
    }
    clientId = `auto-${randomUUID()}`;
    assigned = version === 5;
  }
  if (packet.will && !isValidTopicName(packet.will.topic, broker.config.limits.maxTopicLevels)) {
    refuse(conn, Reason.TopicNameInvalid);
    return;
  }
  conn.clientId = clientId;
  conn.username = packet.username;
  conn.connecting = true;
  conn.holdPackets();
  const result = broker.auth.authenticate({
    clientId,
    username: packet.username,
    password: packet.password,
    certificateIdentity: conn.certificateIdentity,
    transport: conn.transport,
  });
  const willCheck = packet.will ? broker.auth.authorizePublish(conn, packet.will.topic) : true;
  if (typeof result === 'object' && !(result instanceof Promise) && typeof willCheck === 'boolean') {
    accept(conn, packet, result, willCheck, assigned);
  } else {
    Promise.all([result, willCheck])
      .then(
        ([r, w]) => accept(conn, packet, r, w, assigned),
        (err: unknown) => {
          broker.log.error({ err }, 'authenticate hook failed');
          refuse(conn, Reason.ServerUnavailable);
        },
      )
      // outside the packet handler's try/catch: a failure here must close this connection, not reject unhandled
      .catch((err: unknown) => conn.handlerFailed(err, 'CONNECT failed after authentication'));
  }
}

/**
 * The identity other layers (the trusted component above all) know a client by: its client id by
 * default, or the authenticated username or certificate identity when configured; '' if absent.
 */
function identityOf(
  from: BrokerConfig['identityFrom'],
  clientId: string,
  authenticated: string | undefined,
  username: string | undefined,
  certificate: string | undefined,
): string {
  switch (from) {
    case 'client-id': return clientId;
    case 'username': return authenticated ?? username ?? '';
    case 'certificate': return certificate ?? '';
  }
}

/** CONNACK with `reason` and close; `log` false where the caller logs once per burst instead. */
function refuse(conn: Connection, reason: number, log = true): void {
  const packet: IConnackPacket =
    conn.version === 5
      ? { cmd: 'connack', sessionPresent: false, reasonCode: reason }
      : { cmd: 'connack', sessionPresent: false, returnCode: connackCodeV3(reason) };
  if (log) conn.broker.log.info({ clientId: conn.clientId, remote: conn.transport.remoteAddress, reason }, 'connection refused');
  conn.send(packet);
  conn.destroy();
}

function accept(conn: Connection, packet: IConnectPacket, auth: AuthenticateResult, willAllowed: boolean, assigned: boolean): void {
  if (conn.closed) return;
  conn.connecting = false;
  if (!auth.ok) {
    refuse(conn, auth.reason === 'bad-credentials' ? Reason.BadUserNameOrPassword : Reason.NotAuthorized);
    return;
  }
  if (!willAllowed) {
    refuse(conn, Reason.NotAuthorized);
    return;
  }
  const broker = conn.broker;
  const limits = broker.config.limits;
  const v5 = conn.version === 5;
  const props = v5 ? packet.properties : undefined;
  const clientId = conn.clientId;
  conn.identity = identityOf(broker.config.identityFrom, clientId, auth.identity, conn.username, conn.certificateIdentity);

  // MQTT-3.1.4-3: a second connection with the same client id takes the session over.
  const previous = broker.clients.get(clientId);
  if (previous && previous !== conn) previous.close(Reason.SessionTakenOver, 'session taken over');

  let session = broker.sessions.get(clientId);
  if (session && packet.clean) {
    broker.endSession(session);
    session = undefined;
  }
  const sessionPresent = session !== undefined;
  if (session) broker.reviveSession(session);
  else session = broker.newSession(clientId);

  const requestedExpiry = v5 ? (props?.sessionExpiryInterval ?? 0) : packet.clean ? 0 : FOREVER;
  session.expiryInterval = Math.min(requestedExpiry, limits.maxSessionExpiry);

  if (v5) {
    conn.receiveMaximum = Math.min(props?.receiveMaximum ?? 65535, limits.maxInflight);
    conn.maxPacketSize = props?.maximumPacketSize ?? Infinity;
    conn.topicAliasMaximum = props?.topicAliasMaximum ?? 0;
    conn.requestProblemInformation = props?.requestProblemInformation ?? true;
  } else {
    conn.receiveMaximum = limits.maxInflight;
  }

  let keepalive = packet.keepalive ?? 0;
  let serverKeepAlive: number | undefined;
  if (v5 && (keepalive === 0 || keepalive > limits.maxKeepalive)) {
    keepalive = limits.maxKeepalive;
    serverKeepAlive = keepalive;
  }
  conn.keepalive = keepalive;

  if (packet.will) {
    const w = packet.will;
    const { willDelayInterval, ...willProps } = w.properties ?? {};
    const payload = typeof w.payload === 'string' ? Buffer.from(w.payload) : w.payload;
    const messageProps: MessageProperties | undefined = Object.keys(willProps).length > 0 ? willProps : undefined;
    const message = makeMessage(w.topic, payload, (w.qos ?? 0) as QoS, w.retain ?? false, messageProps, clientId);
    // kept for the whole connection: not as a view of a read that may carry its first PUBLISHes too
    settleMessage(message);
    conn.will = { message, delay: willDelayInterval ?? 0 };
  }

  session.identity = conn.identity;
  conn.session = session;
  conn.connected = true;
  broker.clients.set(clientId, conn);

  const connack: IConnackPacket = v5
    ? {
        cmd: 'connack',
        sessionPresent,
        reasonCode: Reason.Success,
        properties: {
          receiveMaximum: limits.receiveMaximum,
          maximumPacketSize: limits.maxPacketSize,
          topicAliasMaximum: limits.topicAliasMaximum,
          retainAvailable: true,
          wildcardSubscriptionAvailable: true,
          subscriptionIdentifiersAvailable: true,
          sharedSubscriptionAvailable: true,
          ...(assigned ? { assignedClientIdentifier: clientId } : {}),
          ...(serverKeepAlive !== undefined ? { serverKeepAlive } : {}),
          ...(session.expiryInterval !== requestedExpiry ? { sessionExpiryInterval: session.expiryInterval } : {}),
          ...(props?.requestResponseInformation ? { responseInformation: `response/${clientId}` } : {}),
        },
      }
    : { cmd: 'connack', sessionPresent, returnCode: 0 };
  conn.send(connack);
  broker.log.info(
    { clientId, identity: conn.identity, version: conn.version, transport: conn.transport.transport, remote: conn.transport.remoteAddress, sessionPresent },
    'client connected',
  );
  broker.resumeSession(session, conn);
  conn.releasePackets();
}
