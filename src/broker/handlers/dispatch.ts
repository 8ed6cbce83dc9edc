/** Routes each decoded packet to its handler (mosquitto's handle_*.c, one file per packet type). */
import type { Packet } from 'mqtt-packet';
import { Reason } from '../../mqtt/reason-codes.js';
import type { Connection } from '../connection.js';
import { ProtocolViolation } from '../errors.js';
import { handleConnect } from './connect.js';
import { handlePublish, handlePubrel } from './publish.js';
import { handlePuback, handlePubcomp, handlePubrec } from './acks.js';
import { handleSubscribe } from './subscribe.js';
import { handleUnsubscribe } from './unsubscribe.js';
import { handleDisconnect } from './disconnect.js';

const NEEDS_PACKET_ID = new Set<Packet['cmd']>(['publish', 'puback', 'pubrec', 'pubrel', 'pubcomp', 'subscribe', 'unsubscribe']);

export function dispatch(conn: Connection, packet: Packet): void {
  if (!conn.connected) {
    if (packet.cmd !== 'connect' || conn.connecting) {
      throw new ProtocolViolation(Reason.ProtocolError, `expected CONNECT, got ${packet.cmd.toUpperCase()}`);
    }
    handleConnect(conn, packet);
    return;
  }
  // MQTT-2.2.1-3: SUBSCRIBE, UNSUBSCRIBE, PUBLISH with QoS > 0 and their acknowledgements carry a non-zero packet id.
  if (NEEDS_PACKET_ID.has(packet.cmd) && (packet.cmd !== 'publish' || packet.qos > 0) && !packet.messageId) {
    throw new ProtocolViolation(Reason.ProtocolError, `${packet.cmd.toUpperCase()} with packet identifier 0`);
  }
  switch (packet.cmd) {
    case 'publish': return handlePublish(conn, packet);
    case 'puback': return handlePuback(conn, packet);
    case 'pubrec': return handlePubrec(conn, packet);
    case 'pubrel': return handlePubrel(conn, packet);
    case 'pubcomp': return handlePubcomp(conn, packet);
    case 'subscribe': return handleSubscribe(conn, packet);
    case 'unsubscribe': return handleUnsubscribe(conn, packet);
    case 'pingreq': return conn.send({ cmd: 'pingresp' });
    case 'disconnect': return handleDisconnect(conn, packet);
    case 'connect':
      throw new ProtocolViolation(Reason.ProtocolError, 'second CONNECT on one connection');
    case 'auth':
      throw new ProtocolViolation(Reason.ProtocolError, 'AUTH without an authentication method');
    default:
      throw new ProtocolViolation(Reason.ProtocolError, `a client may not send ${packet.cmd.toUpperCase()}`);
  }
}
