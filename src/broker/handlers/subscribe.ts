/** SUBSCRIBE (MQTT-3.8): validate, authorize, store, answer, then send retained messages. */
import type { ISubscribePacket, ISubscription, QoS } from 'mqtt-packet';
import { Reason } from '../../mqtt/reason-codes.js';
import { isValidTopicFilter, parseSharedFilter } from '../../mqtt/topic.js';
import type { Connection } from '../connection.js';
import { ProtocolViolation } from '../errors.js';
import { whenStored } from '../journal.js';
import { unstored } from './publish.js';
import type { SubscriptionOptions } from '../subscriptions.js';

interface Accepted {
  key: string;
  filter: string;
  group: string | undefined;
  options: SubscriptionOptions;
}

export function handleSubscribe(conn: Connection, packet: ISubscribePacket): void {
  const broker = conn.broker;
  const limits = broker.config.limits;
  const subscriptionId = conn.version === 5 ? packet.properties?.subscriptionIdentifier : undefined;
  if (subscriptionId === 0) throw new ProtocolViolation(Reason.ProtocolError, 'subscription identifier 0');
  if (packet.subscriptions.length === 0) throw new ProtocolViolation(Reason.ProtocolError, 'SUBSCRIBE without topic filters');

  // Whatever refuses the whole packet is found before any hook is asked: a hook's promise started
  // for an earlier filter would otherwise be left without a handler, and its rejection (a trusted
  // component that cannot answer) ended the process.
  const parsed = packet.subscriptions.map((s) => {
    const shared = parseSharedFilter(s.topic);
    const filter = shared ? shared.filter : s.topic;
    const valid = shared !== null && isValidTopicFilter(filter, limits.maxTopicLevels);
    if (valid && shared && s.nl) throw new ProtocolViolation(Reason.ProtocolError, 'no local on a shared subscription');
    return { s, shared, filter, valid };
  });
  const codes: number[] = [];
  const accepted: (Accepted | undefined)[] = [];
  const checks: (boolean | Promise<boolean>)[] = [];
  for (const { s, shared, filter, valid } of parsed) {
    if (!valid) {
      codes.push(conn.version === 5 ? Reason.TopicFilterInvalid : 0x80);
      accepted.push(undefined);
      checks.push(false);
      continue;
    }
    codes.push(Math.min(s.qos, 2));
    accepted.push({ key: s.topic, filter, group: shared?.group, options: optionsOf(s, subscriptionId) });
    checks.push(broker.authorizeSubscribe(conn, s.topic));
  }
  if (checks.some((c) => c instanceof Promise)) {
    Promise.all(checks).then(
      (allowed) => finish(conn, packet, codes, accepted, allowed),
      (err: unknown) => {
        broker.log.error({ err }, 'authorizeSubscribe hook failed');
        conn.close(Reason.ImplementationSpecificError);
      },
    );
  } else {
    finish(conn, packet, codes, accepted, checks as boolean[]);
  }
}

function optionsOf(s: ISubscription, subscriptionId: number | undefined): SubscriptionOptions {
  return {
    qos: Math.min(s.qos, 2) as QoS,
    noLocal: s.nl ?? false,
    retainAsPublished: s.rap ?? false,
    retainHandling: (s.rh ?? 0) as 0 | 1 | 2,
    subscriptionId,
  };
}

function finish(conn: Connection, packet: ISubscribePacket, codes: number[], accepted: (Accepted | undefined)[], allowed: boolean[]): void {
  if (conn.closed) return;
  const broker = conn.broker;
  const session = conn.session!;
  const retainedToSend: [Accepted, boolean][] = [];
  const changes = broker.journal?.changes ?? 0;
  for (let i = 0; i < codes.length; i++) {
    const a = accepted[i];
    if (!a) continue;
    if (!allowed[i]) {
      codes[i] = conn.version === 5 ? broker.config.subscribeDeniedReason : 0x80;
      broker.log.debug({ clientId: conn.clientId, filter: a.key }, 'subscription refused by authorization');
      continue;
    }
    const existed = session.setSubscription(a.key, { filter: a.filter, group: a.group, options: a.options });
    broker.subscriptions.add(session.clientId, a.filter, a.options, a.group);
    retainedToSend.push([a, existed]);
  }
  if (retainedToSend.length > 0 && session.durable) broker.journal!.sessionChanged(session);
  // a persistent session's subscriptions are committed before the SUBACK says they exist
  whenStored(broker.journal, changes, () => acknowledge(conn, packet, codes, retainedToSend), () => unstored(conn));
}

function acknowledge(conn: Connection, packet: ISubscribePacket, codes: number[], retainedToSend: [Accepted, boolean][]): void {
  if (conn.closed) return;
  const broker = conn.broker;
  const session = conn.session!;
  conn.send({ cmd: 'suback', messageId: packet.messageId, granted: codes });
  for (const [a, existed] of retainedToSend) {
    // Shared subscriptions never get retained messages (MQTT-4.8.2); retain handling 1/2 (MQTT-3.3.1-9/10).
    const rh = a.options.retainHandling;
    if (a.group !== undefined || rh === 2 || (rh === 1 && existed)) continue;
    const messages = broker.retained.match(a.filter);
    if (messages.length > 0) broker.deliverRetained(session, messages, a.options);
  }
}
