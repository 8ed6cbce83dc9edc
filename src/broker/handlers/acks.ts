/** Acknowledgements from a subscriber for messages the broker sent it (outgoing QoS 1/2 flows). */
import type { IPubackPacket, IPubcompPacket, IPubrecPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';
import { whenStored } from '../journal.js';
import { unstored } from './publish.js';

export function handlePuback(conn: Connection, packet: IPubackPacket): void {
  conn.session?.complete(packet.messageId ?? 0);
}

export function handlePubrec(conn: Connection, packet: IPubrecPacket): void {
  const session = conn.session;
  const id = packet.messageId ?? 0;
  if (!session) return;
  // An error PUBREC ends the flow (MQTT-4.3.3); a success one moves it to PUBREL.
  if ((packet.reasonCode ?? 0) >= 0x80) {
    session.complete(id);
    return;
  }
  const journal = conn.broker.journal;
  const changes = journal?.changes ?? 0;
  if (session.received(id)) {
    // PUBREL only once the PUBREC is committed: a restart must not send this message again
    whenStored(journal, changes, () => conn.send({ cmd: 'pubrel', messageId: id }), () => unstored(conn));
    return;
  }
  // Unknown ids still get a PUBREL so the client can finish its side (v5: 0x92).
  if (!session.inflight.has(id)) conn.send({ cmd: 'pubrel', messageId: id, reasonCode: conn.version === 5 ? 0x92 : undefined });
}

export function handlePubcomp(conn: Connection, packet: IPubcompPacket): void {
  conn.session?.complete(packet.messageId ?? 0);
}
