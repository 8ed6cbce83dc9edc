/** DISCONNECT from the client (MQTT-3.14). */
import type { IDisconnectPacket } from 'mqtt-packet';
import { Reason } from '../../mqtt/reason-codes.js';
import type { Connection } from '../connection.js';
import { ProtocolViolation } from '../errors.js';

export function handleDisconnect(conn: Connection, packet: IDisconnectPacket): void {
  const session = conn.session;
  const expiry = packet.properties?.sessionExpiryInterval;
  if (expiry !== undefined && session) {
    // MQTT-3.14.2-2: a session that was to end with the connection cannot be extended here.
    if (session.expiryInterval === 0 && expiry !== 0) {
      throw new ProtocolViolation(Reason.ProtocolError, 'session expiry cannot be set on DISCONNECT when CONNECT set 0');
    }
    session.expiryInterval = Math.min(expiry, conn.broker.config.limits.maxSessionExpiry);
    conn.broker.journal?.sessionChanged(session);
  }
  // 0x04 "disconnect with will message" keeps the will; any other normal DISCONNECT discards it.
  if ((packet.reasonCode ?? 0) !== Reason.DisconnectWithWill) conn.will = undefined;
  conn.destroy();
}
