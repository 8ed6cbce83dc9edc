/** Glue around mqtt-packet: one decoder per connection, encoding per protocol version. */
import mqttPacket from 'mqtt-packet';
import type { Packet } from 'mqtt-packet';

export type ProtocolVersion = 3 | 4 | 5;

/** The parser state mqtt-packet keeps but does not type. */
interface ParserInternals {
  settings: { protocolVersion?: number };
  packet: { length: number };
  _list: { length: number };
}

export interface DecoderEvents {
  packet(packet: Packet): void;
  /** A malformed byte sequence; the connection must be closed. */
  malformed(message: string): void;
  /** A packet announced a length above the limit; nothing of it is buffered further. */
  tooLarge(length: number): void;
}

export class Decoder {
  private readonly parser = mqttPacket.parser();
  private failed = false;

  constructor(private readonly maxPacketSize: number, private readonly events: DecoderEvents) {
    this.parser.on('packet', (p: Packet) => {
      if (this.failed) return;
      const total = totalPacketSize(p.length ?? 0);
      if (total > this.maxPacketSize) {
        this.failed = true;
        this.events.tooLarge(total);
        return;
      }
      this.events.packet(p);
    });
    this.parser.on('error', (err: Error) => {
      if (this.failed) return;
      this.failed = true;
      this.events.malformed(err.message);
    });
  }

  /** Switches the parser to the version negotiated by CONNECT (v5 packets carry properties). */
  setProtocolVersion(version: ProtocolVersion): void {
    (this.parser as unknown as ParserInternals).settings.protocolVersion = version;
  }

  push(chunk: Buffer): void {
    if (this.failed) return;
    this.parser.parse(chunk);
    if (this.failed) return;
    // A packet still being assembled whose announced length is over the limit: refuse it now
    // instead of buffering up to 256 MB of it.
    const internals = this.parser as unknown as ParserInternals;
    const length = internals.packet.length;
    if (length >= 0 && totalPacketSize(length) > this.maxPacketSize && internals._list.length > 0) {
      this.failed = true;
      this.events.tooLarge(length);
    }
  }
}

export function encode(packet: Packet, version: ProtocolVersion): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** Fixed header + remaining length: what MQTT 5 "Maximum Packet Size" counts. */
export function totalPacketSize(remainingLength: number): number {
  const lengthBytes = remainingLength < 128 ? 1 : remainingLength < 16384 ? 2 : remainingLength < 2097152 ? 3 : 4;
  return 1 + lengthBytes + remainingLength;
}
