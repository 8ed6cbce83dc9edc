/** Acknowledgements from a subscriber for messages the broker sent it (outgoing QoS 1/2 flows). */
import type { IPubackPacket, IPubcompPacket, IPubrecPacket } from 'mqtt-packet';
import type { Connection } from '../connection.js';

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
  if (session.received(id) || !session.inflight.has(id)) {
    // Unknown ids still get a PUBREL so the client can finish its side (v5: 0x92).
    conn.send(
      session.inflight.has(id)
        ? { cmd: 'pubrel', messageId: id }
        : { cmd: 'pubrel', messageId: id, reasonCode: conn.version === 5 ? 0x92 : undefined },
    );
  }
}

export function handlePubcomp(conn: Connection, packet: IPubcompPacket): void {
  conn.session?.complete(packet.messageId ?? 0);
}
