/**
 * Glue around mqtt-packet: one decoder per connection, encoding per protocol version.
 *
 * The decoder drives mqtt-packet's parser through state the library keeps but does not document
 * (`_list`, `_pos`, `_stateCounter`, `packet.length`, `settings`, and wrappers around
 * `_parseString`, `_parseBuffer`, `_parseNum`; see parser-pool.ts): to hand the parser back between
 * packets, to take over again after a packet it finished, to refuse an oversized packet from its
 * header, and to catch what it lets through (malformed UTF-8, fields cut short). Measured against
 * a decoder using the public API only (one parser per connection, `parse` and its events, no fast
 * path), four interleaved `npm run bench -- --quick --only fan-out,fan-in --brokers mqt-tz` rounds
 * each on one shared 2-core host: the public-API decoder delivered 0.49x (fan-out 1x1, 64 B),
 * 0.58x (8 subscribers, QoS 1, 4 KiB), 0.87x (128 subscribers) and 0.41x (fan-in, 16 publishers)
 * as many messages per second, at 1.9-2.5x the broker CPU per message (the 128-subscriber row is
 * bound by sending, 1.05x). So the internals stay, and package.json pins mqtt-packet's exact
 * version; test/mqtt/mqtt-packet-internals.test.ts fails when an update changes what is relied on.
 */
import { isUtf8 } from 'node:buffer';
import mqttPacket from 'mqtt-packet';
import type { IPubackPacket, IPublishPacket, Packet, QoS } from 'mqtt-packet';
import { Reason } from './reason-codes.js';
import { borrowParser, parserSettings, returnParser, type LentParser, type ParserHolder } from './parser-pool.js';
import { decodePlainConnect } from './connect-fast.js';

export type ProtocolVersion = 3 | 4 | 5;

/** A PUBLISH read by the fast path: a class, not an object literal (see MessageRecord in src/broker/message.ts). */
class FastPublish implements IPublishPacket {
  // declared, not class fields (see MessageRecord): the literal's properties, in its order
  declare cmd: 'publish';
  declare retain: boolean;
  declare qos: QoS;
  declare dup: boolean;
  declare length: number;
  declare topic: string;
  declare payload: Buffer;
  declare messageId: number | undefined;

  constructor(retain: boolean, qos: QoS, dup: boolean, length: number, topic: string, payload: Buffer, messageId: number | undefined) {
    this.cmd = 'publish';
    this.retain = retain;
    this.qos = qos;
    this.dup = dup;
    this.length = length;
    this.topic = topic;
    this.payload = payload;
    this.messageId = messageId;
  }
}

/** Longest topic the decoder's fast path remembers (longer ones are decoded every time). */
const LAST_TOPIC_BYTES = 256;

// mqtt-packet's encoder otherwise keeps a 2-byte Buffer for each of the 65 536 packet ids: ~130 000
// objects that every major collection marks again (a fifth of the broker's GC time measured under
// load). Ids are written into each packet instead (mqtt-packet's documented switch).
(mqttPacket.writeToStream as unknown as { cacheNumbers: boolean }).cacheNumbers = false;

export interface DecoderEvents {
  onPacket(packet: Packet): void;
  /**
   * A malformed byte sequence (reason 0x81) or a packet that breaks a rule of its form (0x82, with
   * the packet: a v5 CONNECT must be refused in a v5 CONNACK); the connection must be closed.
   */
  onMalformed(message: string, reason: number, packet?: Packet): void;
  /** A packet announced a length above the limit; nothing of it is buffered further. */
  onTooLarge(length: number): void;
}

/**
 * One connection's decoder: whole PUBLISH, PUBACK and plain CONNECT packets by hand (the fast path), the rest with
 * an mqtt-packet parser borrowed for as long as it holds part of a packet (see parser-pool.ts).
 */
export class Decoder implements ParserHolder {
  private lent: LentParser | undefined;
  private failed = false;
  /** Negotiated by CONNECT; undefined before. */
  private version: ProtocolVersion | undefined;
  /** MQTT 5 PUBLISHes carry a properties length the fast path must read. */
  private v5 = false;
  /**
   * The fast path's last topic, as bytes and as the string made from them: a publisher mostly
   * repeats its topic, and reusing the string skips the UTF-8 check and decode, and lets every Map
   * keyed by topic find the hash the string already carries.
   */
  private lastTopicBytes: Buffer | undefined; // made at the first PUBLISH: most connections never send one
  private lastTopicLength = -1;
  private lastTopic = '';

  constructor(private readonly maxPacketSize: number, private readonly events: DecoderEvents) {}

  /** @internal (LentParser) a packet from the borrowed parser. */
  parsed(p: Packet, fieldProblem: string | undefined): void {
    if (this.failed) return;
    const total = totalPacketSize(p.length ?? 0);
    if (total > this.maxPacketSize) {
      this.fail();
      this.events.onTooLarge(total);
      return;
    }
    // mqtt-packet decodes strings leniently, reads on past a field cut short, and lets DUP through
    // on QoS 0: all malformed.
    const problem = fieldProblem !== undefined
      ? fieldProblem
      : p.cmd === 'publish' && p.qos === 0 && p.dup
        ? 'DUP flag set on a QoS 0 PUBLISH (MQTT-3.3.1-2)'
        : undefined;
    if (problem !== undefined) {
      this.fail();
      this.events.onMalformed(problem, Reason.MalformedPacket);
      return;
    }
    const repeated = repeatedProperty(p);
    if (repeated !== undefined) {
      this.fail();
      this.events.onMalformed(`property ${repeated} appears more than once (MQTT-2.2.2.2)`, Reason.ProtocolError, p);
      return;
    }
    const misplaced = misplacedProperty(p);
    if (misplaced !== undefined) {
      this.fail();
      this.events.onMalformed(`property ${misplaced} is not allowed in ${p.cmd.toUpperCase()} (MQTT-2.2.2.2)`, Reason.MalformedPacket, p);
      return;
    }
    this.events.onPacket(p);
  }

  /** @internal (LentParser) */
  parseError(err: Error): void {
    if (this.failed) return;
    this.fail();
    this.events.onMalformed(err.message, Reason.MalformedPacket);
  }

  /** Nothing more is decoded; a borrowed parser is dropped with whatever state it is in. */
  private fail(): void {
    this.failed = true;
    if (this.lent) this.lent.holder = undefined;
    this.lent = undefined;
  }

  /** Switches the parser to the version negotiated by CONNECT (v5 packets carry properties). */
  setProtocolVersion(version: ProtocolVersion): void {
    this.version = version;
    this.v5 = version === 5;
    if (this.lent) this.lent.internals.settings = parserSettings(version);
  }

  /** Bytes of a partial packet held (0 between whole packets). */
  get buffered(): number {
    return this.lent?.internals._list.length ?? 0;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    let lent = this.lent;
    if (lent !== undefined) {
      const internals = lent.internals;
      // The parser holds the start of a packet whose length it has read (state 2: payload pending):
      // give it just the rest of that packet, so the fast path takes over again at the next one
      // (with large payloads almost every chunk ends inside a packet).
      if (internals._stateCounter === 2 && internals.packet.length >= 0) {
        const need = internals.packet.length - internals._list.length;
        if (need > 0 && need < chunk.length) {
          internals.parse(chunk.subarray(0, need));
          if (this.failed) return;
          chunk = chunk.subarray(need);
          if (lent.idle) lent = this.giveBack();
        }
      }
    }
    if (lent === undefined) {
      const at = this.fastPath(chunk);
      if (at === chunk.length || this.failed) return;
      if (at > 0) chunk = chunk.subarray(at);
      lent = this.lent = borrowParser(this, this.version);
    }
    lent.internals.parse(chunk);
    if (this.failed) return;
    // A packet still being assembled whose announced length is over the limit: refuse it as soon
    // as its header is read, before any of its body (up to 256 MB) arrives.
    const length = lent.internals.packet.length;
    if (length >= 0 && totalPacketSize(length) > this.maxPacketSize) {
      this.fail();
      this.events.onTooLarge(length);
      return;
    }
    if (lent.idle) this.giveBack();
  }

  private giveBack(): undefined {
    returnParser(this.lent!);
    this.lent = undefined;
    return undefined;
  }

  /**
   * The hot packets, decoded by hand while whole ones lie in the chunk and the parser holds nothing:
   * a PUBLISH without v5 properties, a 2-byte PUBACK, and a CONNECT in its plain form (see
   * connect-fast.ts). The payload is a view of the chunk, as
   * mqtt-packet's own is. Anything else, incomplete, unusual or malformed stops the fast path and
   * goes to mqtt-packet from that byte on, so errors are still named by one parser.
   * Returns how many bytes were consumed.
   */
  private fastPath(chunk: Buffer): number {
    let at = 0;
    while (chunk.length - at >= 2 && !this.failed) {
      const b0 = chunk[at]!;
      const type = b0 >> 4;
      if (type !== 3 && b0 !== 0x40 && b0 !== 0x10) return at;
      // remaining length, at most 4 bytes (longer is malformed: leave it to the parser)
      let remaining = 0;
      let i = at + 1;
      // (a multiplier, not 2 ** shift: V8 calls its generic pow for that on every packet)
      for (let scale = 1; ; scale *= 128) {
        if (i >= chunk.length || scale > 2097152) return at;
        const b = chunk[i++]!;
        remaining += (b & 0x7f) * scale;
        if (b < 0x80) break;
      }
      const end = i + remaining;
      if (end > chunk.length || totalPacketSize(remaining) > this.maxPacketSize) return at;
      if (type === 1) {
        const connect = decodePlainConnect(chunk, i, end, remaining);
        if (connect === undefined) return at;
        at = end;
        // as mqtt-packet does: the packets behind a CONNECT are decoded in its version
        this.setProtocolVersion(connect.protocolVersion as ProtocolVersion);
        this.events.onPacket(connect);
        continue;
      }
      if (type === 4) {
        if (remaining !== 2) return at;
        // the same fields mqtt-packet's Packet carries
        const ack = { cmd: 'puback', retain: false, qos: 0, dup: false, length: 2, messageId: chunk.readUInt16BE(i) } as IPubackPacket;
        if (this.v5) ack.reasonCode = 0;
        at = end;
        this.events.onPacket(ack);
        continue;
      }
      const qos = (b0 >> 1) & 3;
      const dup = (b0 & 8) !== 0;
      if (qos === 3 || (qos === 0 && dup) || remaining < 2) return at;
      const topicEnd = i + 2 + chunk.readUInt16BE(i);
      let pos = topicEnd + (qos > 0 ? 2 : 0);
      if (pos > end) return at;
      const topic = this.topicAt(chunk, i + 2, topicEnd);
      if (topic === undefined) return at;
      if (this.v5) {
        if (pos >= end || chunk[pos] !== 0) return at; // properties present: the parser reads them
        pos++;
      }
      const packet = new FastPublish((b0 & 1) !== 0, qos as QoS, dup, remaining, topic, chunk.subarray(pos, end), qos > 0 ? chunk.readUInt16BE(topicEnd) : undefined);
      at = end;
      this.events.onPacket(packet);
    }
    return at;
  }

  /** The topic at chunk[from, end): the last one's string when the bytes are the same; undefined if not valid UTF-8 or has U+0000. */
  private topicAt(chunk: Buffer, from: number, end: number): string | undefined {
    const n = end - from;
    const last = this.lastTopicBytes;
    if (n === this.lastTopicLength && last !== undefined) {
      let i = 0;
      while (i < n && chunk[from + i] === last[i]) i++;
      if (i === n) return this.lastTopic;
    }
    const bytes = chunk.subarray(from, end);
    if (!isUtf8(bytes) || bytes.includes(0)) return undefined;
    const topic = bytes.toString();
    if (n <= LAST_TOPIC_BYTES) {
      bytes.copy((this.lastTopicBytes ??= Buffer.alloc(LAST_TOPIC_BYTES)), 0);
      this.lastTopicLength = n;
      this.lastTopic = topic;
    }
    return topic;
  }
}

/**
 * The first v5 property that a packet (or its will) carries more than once. Only User Property may
 * repeat in what a client sends (a Subscription Identifier only in the server's PUBLISH); mqtt-packet
 * turns any other repeat into an array, a value none of the packet's declared types allows, so it
 * must not get past the decoder (a correlation-data array once reached a session queue and crashed
 * the broker when it was settled).
 */
export function repeatedProperty(packet: Packet): string | undefined {
  const lists = [(packet as { properties?: object }).properties];
  if (packet.cmd === 'connect') lists.push(packet.will?.properties);
  for (const properties of lists) {
    if (properties === undefined) continue;
    for (const [name, value] of Object.entries(properties)) {
      if (name !== 'userProperties' && Array.isArray(value)) return name;
    }
  }
  return undefined;
}

const ACK_PROPERTIES = ['reasonString', 'userProperties'];

/**
 * The properties a client may send in each packet (MQTT 5 table 2-4; a will's are those of its
 * CONNECT's Will Properties). mqtt-packet decodes any property in any packet: a PUBLISH carrying,
 * say, a Session Expiry Interval was forwarded as it came, malformed, to every subscriber.
 */
const ALLOWED_PROPERTIES: Partial<Record<Packet['cmd'] | 'will', ReadonlySet<string>>> = {
  connect: new Set(['sessionExpiryInterval', 'receiveMaximum', 'maximumPacketSize', 'topicAliasMaximum', 'requestResponseInformation', 'requestProblemInformation', 'userProperties', 'authenticationMethod', 'authenticationData']),
  will: new Set(['willDelayInterval', 'payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties']),
  // a Subscription Identifier from a client is refused later, as a Protocol Error (MQTT-3.3.4-6)
  publish: new Set(['payloadFormatIndicator', 'messageExpiryInterval', 'topicAlias', 'responseTopic', 'correlationData', 'userProperties', 'subscriptionIdentifier', 'contentType']),
  puback: new Set(ACK_PROPERTIES),
  pubrec: new Set(ACK_PROPERTIES),
  pubrel: new Set(ACK_PROPERTIES),
  pubcomp: new Set(ACK_PROPERTIES),
  subscribe: new Set(['subscriptionIdentifier', 'userProperties']),
  unsubscribe: new Set(['userProperties']),
  disconnect: new Set(['sessionExpiryInterval', 'reasonString', 'userProperties', 'serverReference']),
  auth: new Set(['authenticationMethod', 'authenticationData', 'reasonString', 'userProperties']),
};

/** The first property a client's packet (or its will) carries that its kind of packet does not allow. */
export function misplacedProperty(packet: Packet): string | undefined {
  const check = (properties: object | undefined, allowed: ReadonlySet<string> | undefined): string | undefined => {
    if (properties === undefined) return undefined;
    for (const name in properties) if (!allowed?.has(name)) return name;
    return undefined;
  };
  const own = check((packet as { properties?: object }).properties, ALLOWED_PROPERTIES[packet.cmd]);
  if (own !== undefined || packet.cmd !== 'connect') return own;
  return check(packet.will?.properties, ALLOWED_PROPERTIES.will);
}

export function encode(packet: Packet, version: ProtocolVersion): Buffer {
  // every connection gets one CONNACK: the MQTT 3.1/3.1.1 form is four bytes, no encoder needed
  if (packet.cmd === 'connack' && version !== 5 && typeof packet.returnCode === 'number') {
    return Buffer.from([0x20, 0x02, packet.sessionPresent ? 1 : 0, packet.returnCode & 0xff]);
  }
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** Fixed header + remaining length: what MQTT 5 "Maximum Packet Size" counts. */
export function totalPacketSize(remainingLength: number): number {
  const lengthBytes = remainingLength < 128 ? 1 : remainingLength < 16384 ? 2 : remainingLength < 2097152 ? 3 : 4;
  return 1 + lengthBytes + remainingLength;
}
