/**
 * mqtt-packet parsers lent to decoders only while they need one. A parser with its byte list (a
 * Duplex stream of its own) is ~2 KiB of heap; most connections are idle between whole packets, and
 * the decoder's fast path handles the common packets without one. A decoder borrows a parser for
 * what the fast path leaves, and gives it back as soon as the parser holds no partial packet.
 * Parsing is synchronous, so one parser serves any number of connections in turn.
 */
import { isUtf8 } from 'node:buffer';
import mqttPacket from 'mqtt-packet';
import type { Packet } from 'mqtt-packet';

/** The parser state mqtt-packet keeps but does not type. */
export interface ParserInternals {
  settings: { protocolVersion?: number };
  packet: { length: number };
  _list: { length: number; slice(start: number, end: number): Buffer };
  _pos: number;
  _stateCounter: number;
  _parseString(): string | null;
  _parseBuffer(): Buffer | null;
  _parseNum(): number;
  parse(chunk: Buffer): number;
}

/** Who a lent parser reports to. */
export interface ParserHolder {
  /** `fieldProblem`: a field of the packet is malformed in a way mqtt-packet lets through. */
  parsed(packet: Packet, fieldProblem: string | undefined): void;
  parseError(err: Error): void;
}

/** Idle parsers kept for reuse; more are left to the garbage collector. */
const MAX_IDLE = 64;

export class LentParser {
  readonly internals: ParserInternals;
  holder: ParserHolder | undefined;
  /** A string of the packet being parsed is not well-formed UTF-8 or has U+0000. */
  private badString = false;
  /**
   * A field of the packet being parsed runs past its end: mqtt-packet then gives a string or binary
   * field as null and a two-byte integer as -1, without an error (a user property of null crashed
   * the broker when the message was encoded for a subscriber; a packet id of -1 failed the PUBCOMP
   * or PUBACK that echoed it).
   */
  private cutField = false;

  constructor() {
    const parser = mqttPacket.parser();
    this.internals = parser as unknown as ParserInternals;
    this.checkStrings();
    parser.on('packet', (p: Packet) => {
      const problem = this.badString
        ? 'a string is not well-formed UTF-8 or contains U+0000 (MQTT-1.5.4-1/2)'
        : this.cutField
          ? 'a field runs past the end of its packet'
          : undefined;
      this.badString = this.cutField = false;
      this.holder?.parsed(p, problem);
    });
    parser.on('error', (err: Error) => {
      this.badString = this.cutField = false;
      this.holder?.parseError(err);
    });
  }

  /**
   * Wraps the parser's string, binary and two-byte integer readers: every UTF-8 string field's raw
   * bytes are validated, and a field cut short (null, -1) is caught, since the parser reads on
   * without an error.
   */
  private checkStrings(): void {
    const internals = this.internals;
    const { _parseString: parseString, _parseBuffer: parseBuffer, _parseNum: parseNum } = internals;
    if (typeof parseString !== 'function' || typeof parseBuffer !== 'function' || typeof parseNum !== 'function') {
      throw new Error('mqtt-packet parser has no _parseString, _parseBuffer or _parseNum: update LentParser.checkStrings');
    }
    internals._parseString = () => {
      const start = internals._pos + 2;
      const result = parseString.call(internals);
      if (result === null) this.cutField = true;
      else {
        const bytes = internals._list.slice(start, internals._pos);
        if (!isUtf8(bytes) || bytes.includes(0)) this.badString = true;
      }
      return result;
    };
    internals._parseBuffer = () => {
      const result = parseBuffer.call(internals);
      if (result === null) this.cutField = true;
      return result;
    };
    internals._parseNum = () => {
      const result = parseNum.call(internals);
      if (result === -1) this.cutField = true;
      return result;
    };
  }

  /** Holds nothing of a packet: may be given back. */
  get idle(): boolean {
    const i = this.internals;
    return i._stateCounter === 0 && i._list.length === 0 && i.packet.length === -1;
  }
}

const idle: LentParser[] = [];

// mqtt-packet only reads its settings (and replaces them at CONNECT): one object per version serves all
const NO_VERSION: ParserInternals['settings'] = Object.freeze({});
const BY_VERSION = new Map<number, ParserInternals['settings']>([3, 4, 5].map((v) => [v, Object.freeze({ protocolVersion: v })]));

/** mqtt-packet's settings for `protocolVersion` (undefined: until CONNECT says). */
export function parserSettings(protocolVersion: number | undefined): ParserInternals['settings'] {
  return (protocolVersion === undefined ? undefined : BY_VERSION.get(protocolVersion)) ?? NO_VERSION;
}

/** A parser for `holder`, set to parse `protocolVersion` (undefined: until CONNECT says). */
export function borrowParser(holder: ParserHolder, protocolVersion: number | undefined): LentParser {
  const p = idle.pop() ?? new LentParser();
  p.holder = holder;
  p.internals.settings = parserSettings(protocolVersion);
  return p;
}

/** Back to the pool: only an idle parser that parsed without error (a failed one is dropped). */
export function returnParser(p: LentParser): void {
  p.holder = undefined;
  // mqtt-packet keeps the last CONNECT as its settings: drop it with the connection's credentials
  p.internals.settings = NO_VERSION;
  if (idle.length < MAX_IDLE) idle.push(p);
}
