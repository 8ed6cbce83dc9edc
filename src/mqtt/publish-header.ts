/**
 * The fixed and variable header of an outgoing PUBLISH without properties, written by hand: the
 * hot path of fan-out. The payload is not copied; the connection writes header and payload as two
 * buffers of one corked write. Packets with v5 properties go through mqtt-packet instead.
 */

/** Bytes a recipient gets in front of the payload; their layout belongs to whoever made them. */
export interface PayloadLead {
  readonly byteLength: number;
  writeTo(out: Uint8Array, at: number): void;
}

/**
 * Header bytes before the payload; `topic` is the UTF-8 topic name. A lead (a protected
 * recipient's envelope header, ~200 bytes) is written in behind the header and counts as the start
 * of the payload (`payloadLength` includes it): one buffer instead of two, as every buffer of a
 * write costs the socket more than copying these few bytes, and no buffer of its own per recipient.
 */
export function publishHeader(
  topic: Buffer,
  payloadLength: number,
  qos: 0 | 1 | 2,
  retain: boolean,
  dup: boolean,
  packetId: number,
  v5: boolean,
  lead?: PayloadLead,
): Buffer {
  const remaining = 2 + topic.length + (qos > 0 ? 2 : 0) + (v5 ? 1 : 0) + payloadLength;
  const lengthBytes = remaining < 128 ? 1 : remaining < 16384 ? 2 : remaining < 2097152 ? 3 : 4;
  const leadLength = lead === undefined ? 0 : lead.byteLength;
  const header = Buffer.allocUnsafe(1 + lengthBytes + remaining - payloadLength + leadLength);
  header[0] = 0x30 | (dup ? 0x08 : 0) | (qos << 1) | (retain ? 0x01 : 0);
  let at = 1;
  let n = remaining;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    header[at++] = byte;
  } while (n > 0);
  header.writeUInt16BE(topic.length, at);
  at += 2;
  topic.copy(header, at);
  at += topic.length;
  if (qos > 0) {
    header.writeUInt16BE(packetId, at);
    at += 2;
  }
  if (v5) header[at++] = 0; // property length 0
  if (lead !== undefined) lead.writeTo(header, at);
  return header;
}
