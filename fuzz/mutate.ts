// Byte-level mutations of well-formed packets: what reaches the parser once the generator has
// produced a structurally valid packet (or a whole session of them).
import type { Prng } from './prng.js';

/** MQTT Remaining Length: 1-4 bytes, 7 bits each, low first. */
export function encodeVarint(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0 && out.length < 4);
  return Buffer.from(out);
}

/** The Remaining Length field of a packet: its value and the bytes it takes (undefined if cut short). */
export function readVarint(packet: Buffer, at = 1): { value: number; bytes: number } | undefined {
  let value = 0;
  for (let i = 0; i < 4 && at + i < packet.length; i++) {
    const b = packet[at + i]!;
    value += (b & 0x7f) * 128 ** i;
    if ((b & 0x80) === 0) return { value, bytes: i + 1 };
  }
  return undefined;
}

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x3f, 0x40];

export type Mutation = (p: Prng, packet: Buffer, other: Buffer) => Buffer;

export const mutations: Record<string, Mutation> = {
  bitFlip(p, packet) {
    const out = Buffer.from(packet);
    for (let n = p.range(1, 4); n > 0 && out.length > 0; n--) out[p.int(out.length)]! ^= 1 << p.int(8);
    return out;
  },
  interestingByte(p, packet) {
    const out = Buffer.from(packet);
    if (out.length > 0) out[p.int(out.length)] = p.pick(INTERESTING);
    return out;
  },
  truncate(p, packet) {
    return packet.subarray(0, p.int(packet.length));
  },
  /** The Remaining Length says more or less than follows, or never ends (5 continuation bytes). */
  lengthLie(p, packet) {
    const field = readVarint(packet);
    if (field === undefined) return packet;
    const body = packet.subarray(1 + field.bytes);
    const lie = p.pick([
      () => Buffer.from([0xff, 0xff, 0xff, 0xff, 0x7f]),
      () => encodeVarint(268_435_455),
      () => encodeVarint(0),
      () => encodeVarint(field.value + p.range(1, 64)),
      () => encodeVarint(Math.max(0, field.value - p.range(1, 16))),
      () => Buffer.from([0x80 | p.int(128), 0x00]), // over-long encoding of a small value
    ])();
    return Buffer.concat([packet.subarray(0, 1), lie, body]);
  },
  /** A 16-bit length inside the packet (topic, client id, property) claims another size. */
  innerLengthLie(p, packet) {
    if (packet.length < 4) return packet;
    const out = Buffer.from(packet);
    out.writeUInt16BE(p.pick([0, 1, 0x7fff, 0xffff, p.int(0x10000)]), p.int(out.length - 1));
    return out;
  },
  splice(p, packet, other) {
    return Buffer.concat([packet.subarray(0, p.int(packet.length + 1)), other.subarray(p.int(other.length + 1))]);
  },
  insertBytes(p, packet) {
    const at = p.int(packet.length + 1);
    return Buffer.concat([packet.subarray(0, at), p.bytes(p.range(1, 16)), packet.subarray(at)]);
  },
  deleteBytes(p, packet) {
    const at = p.int(packet.length);
    return Buffer.concat([packet.subarray(0, at), packet.subarray(at + p.range(1, 8))]);
  },
  /** Another packet type or flags in the first byte (reserved flags, QoS 3, types 0 and 15). */
  packetType(p, packet) {
    const out = Buffer.from(packet);
    if (out.length > 0) out[0] = p.chance(0.5) ? (p.int(16) << 4) | (out[0]! & 0x0f) : (out[0]! & 0xf0) | p.int(16);
    return out;
  },
};

const NAMES = Object.keys(mutations);

/** One to three mutations, each picked at random; `other` feeds splicing. */
export function mutate(p: Prng, packet: Buffer, other: Buffer): Buffer {
  let out = packet;
  for (let n = p.chance(0.7) ? 1 : p.range(2, 3); n > 0; n--) out = mutations[p.pick(NAMES)]!(p, out, other);
  return out;
}
