/**
 * CONNECT in its plain form decoded by hand: MQTT 3.1.1 or 5, no will, no v5 properties, any
 * username and password. Every connection sends one CONNECT, and decoding it with mqtt-packet's
 * parser cost ~6 KB of short-lived allocations per connection (its debug calls, buffer-list copies),
 * much of which a burst of connects promoted to the old generation. Anything else, including every
 * malformed form, is left to mqtt-packet, so errors are still named by one parser.
 */
import { isUtf8 } from 'node:buffer';
import type { IConnectPacket } from 'mqtt-packet';

const USERNAME = 0x80;
const PASSWORD = 0x40;
const CLEAN = 0x02;
/** Will retain, will QoS, will flag and the reserved bit: all 0 in the plain form. */
const WILL_OR_RESERVED = 0x3d;

/**
 * The CONNECT whose variable header and payload are `chunk[from, end)`, with remaining length
 * `length`; undefined when it is not in the plain form (mqtt-packet then decodes it).
 */
export function decodePlainConnect(chunk: Buffer, from: number, end: number, length: number): IConnectPacket | undefined {
  // protocol name "MQTT" (00 04 4d 51 54 54), level, flags, keep alive
  if (end - from < 10 || chunk[from] !== 0 || chunk[from + 1] !== 4 || chunk[from + 2] !== 0x4d || chunk[from + 3] !== 0x51 || chunk[from + 4] !== 0x54 || chunk[from + 5] !== 0x54) {
    return undefined;
  }
  const level = chunk[from + 6]!;
  const flags = chunk[from + 7]!;
  if ((level !== 4 && level !== 5) || (flags & WILL_OR_RESERVED) !== 0) return undefined;
  const keepalive = chunk.readUInt16BE(from + 8);
  let at = from + 10;
  if (level === 5) {
    if (at >= end || chunk[at] !== 0) return undefined; // properties: left to mqtt-packet
    at++;
  }
  const clientIdEnd = stringEnd(chunk, at, end);
  if (clientIdEnd < 0) return undefined;
  const packet = {
    cmd: 'connect',
    retain: false,
    qos: 0,
    dup: false,
    length,
    topic: null,
    payload: null,
    protocolId: 'MQTT',
    protocolVersion: level,
    clean: (flags & CLEAN) !== 0,
    keepalive,
    clientId: chunk.toString('utf8', at + 2, clientIdEnd),
  } as IConnectPacket;
  at = clientIdEnd;
  if ((flags & USERNAME) !== 0) {
    const usernameEnd = stringEnd(chunk, at, end);
    if (usernameEnd < 0) return undefined;
    packet.username = chunk.toString('utf8', at + 2, usernameEnd);
    at = usernameEnd;
  }
  if ((flags & PASSWORD) !== 0) {
    if (at + 2 > end) return undefined;
    const passwordEnd = at + 2 + chunk.readUInt16BE(at);
    if (passwordEnd > end) return undefined;
    // a copy: a view would keep the whole read buffer alive for as long as the password is held
    packet.password = Buffer.from(chunk.subarray(at + 2, passwordEnd));
    at = passwordEnd;
  }
  return at === end ? packet : undefined;
}

/** End of the well-formed UTF-8 string (no U+0000) whose length prefix is at `at`; -1 if none. */
function stringEnd(chunk: Buffer, at: number, end: number): number {
  if (at + 2 > end) return -1;
  const stop = at + 2 + chunk.readUInt16BE(at);
  if (stop > end) return -1;
  const bytes = chunk.subarray(at + 2, stop);
  return isUtf8(bytes) && !bytes.includes(0) ? stop : -1;
}
