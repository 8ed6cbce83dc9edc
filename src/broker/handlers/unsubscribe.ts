/** UNSUBSCRIBE (MQTT-3.10). */
import type { IUnsubscribePacket } from 'mqtt-packet';
import { Reason } from '../../mqtt/reason-codes.js';
import type { Connection } from '../connection.js';
import { ProtocolViolation } from '../errors.js';

export function handleUnsubscribe(conn: Connection, packet: IUnsubscribePacket): void {
  const session = conn.session!;
  const broker = conn.broker;
  if (packet.unsubscriptions.length === 0) throw new ProtocolViolation(Reason.ProtocolError, 'UNSUBSCRIBE without topic filters');
  const granted: number[] = [];
  for (const key of packet.unsubscriptions) {
    const sub = session.removeSubscription(key);
    if (!sub) {
      granted.push(Reason.NoSubscriptionExisted);
      continue;
    }
    broker.subscriptions.remove(session.clientId, sub.filter, sub.group);
    granted.push(Reason.Success);
  }
  if (session.durable) broker.journal!.sessionChanged(session);
  if (conn.version === 5) conn.send({ cmd: 'unsuback', messageId: packet.messageId, granted });
  else conn.send({ cmd: 'unsuback', messageId: packet.messageId, granted: [] });
}
