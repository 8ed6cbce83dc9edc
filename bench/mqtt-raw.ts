/**
 * A minimal MQTT 3.1.1 client over a raw socket for load generation: packets are encoded once with
 * mqtt-packet and written as Buffers; incoming bytes are parsed only as far as counting PUBLISHes,
 * reading the payload's send timestamp and answering PUBACKs needs.
 */
import { connect as netConnect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import type { QoS } from 'mqtt-packet';

const PUBLISH = 3;
const CONNACK = 2;
const PUBACK = 4;
const SUBACK = 9;

export function encodeConnect(clientId: string, keepalive = 60): Buffer {
  return mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId, keepalive });
}

export function encodeSubscribe(filter: string, qos: QoS, messageId = 1): Buffer {
  return mqttPacket.generate({ cmd: 'subscribe', messageId, subscriptions: [{ topic: filter, qos }] });
}

export function encodePublish(topic: string, payload: Buffer, qos: QoS, messageId = 1): Buffer {
  return mqttPacket.generate({ cmd: 'publish', topic, payload, qos, retain: false, dup: false, messageId: qos > 0 ? messageId : undefined });
}

const DISCONNECT = Buffer.from([0xe0, 0x00]);

/**
 * `count` copies of one PUBLISH back to back, with the offsets at which each copy's packet id
 * (QoS > 0) and payload start, so callers can stamp ids and timestamps into a copy.
 */
export interface PublishBatch {
  bytes: Buffer;
  packetLength: number;
  count: number;
  /** Offset of the first packet's packet id (-1 at QoS 0). */
  idOffset: number;
  /** Offset of the first packet's payload. */
  payloadOffset: number;
}

export function publishBatch(topic: string, payloadBytes: number, qos: QoS, count: number): PublishBatch {
  const packet = encodePublish(topic, Buffer.alloc(payloadBytes, 0x61), qos);
  const bytes = Buffer.allocUnsafe(packet.length * count);
  for (let i = 0; i < count; i++) packet.copy(bytes, i * packet.length);
  const payloadOffset = packet.length - payloadBytes;
  return { bytes, packetLength: packet.length, count, idOffset: qos > 0 ? payloadOffset - 2 : -1, payloadOffset };
}

export interface RawClientEvents {
  /** One PUBLISH received: its payload is `buf[start, end)`, valid only during the call. */
  publish?(buf: Buffer, start: number, end: number): void;
  /** PUBACKs received for our QoS 1 PUBLISHes (summed per chunk). */
  pubacks?(count: number): void;
  /** Called once per received chunk after its packets were handled. */
  chunk?(): void;
}

/**
 * One read buffer for every client (`onread`): a read is handled within its callback, before the
 * next one, so nothing is allocated per read. Node's default of a fresh 64 KiB chunk per read (and a
 * concat for every packet cut by the end of one) kept the generator's V8 in back-to-back major
 * collections, triggered by external memory, once a large pool of envelopes lived in the process.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** End offset of the packet starting at `from`, or -1 while its fixed header is incomplete. */
function packetEnd(buf: Buffer, from: number, to: number): number {
  let remaining = 0;
  let mul = 1;
  for (let p = from + 1; p < to && p <= from + 4; p++) {
    const b = buf[p]!;
    remaining += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return p + 1 + remaining;
    mul *= 128;
  }
  return -1;
}

/** A raw MQTT connection. `ready` resolves on CONNACK (rejects when refused or closed before). */
export class RawClient {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  /** The start of a packet cut by the end of a read (a copy: the read buffer is shared). */
  private cut = Buffer.alloc(0);
  private cutLength = 0;
  /** Per read: PUBACKs to send back (in ackScratch) and PUBACKs received. */
  private acks = 0;
  private pubacks = 0;
  private onConnack: ((ok: boolean) => void) | undefined;
  private onSuback: (() => void) | undefined;
  private readonly ackScratch = Buffer.allocUnsafe(4 * 1024);

  constructor(port: number, connectPacket: Buffer, private readonly events: RawClientEvents = {}) {
    this.socket = netConnect({
      port,
      host: '127.0.0.1',
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          this.onRead(buf as Buffer, n);
          return true;
        },
      },
    });
    this.ready = new Promise<void>((resolve, reject) => {
      this.onConnack = (ok) => (ok ? resolve() : reject(new Error('CONNACK refused')));
      this.socket.once('error', reject);
      this.socket.once('close', () => reject(new Error('closed before CONNACK')));
    });
    this.ready.catch(() => undefined);
    this.socket.on('error', () => undefined);
    this.socket.write(connectPacket);
  }

  subscribe(filter: string, qos: QoS): Promise<void> {
    return new Promise((resolve, reject) => {
      this.onSuback = resolve;
      this.socket.once('close', () => reject(new Error('closed before SUBACK')));
      this.socket.write(encodeSubscribe(filter, qos));
    });
  }

  /** Writes; false when the socket's buffer is full (wait for 'drain'). `done(buf)` once it was written out. */
  write(buf: Buffer, done?: (buf: Buffer) => void): boolean {
    return done === undefined ? this.socket.write(buf) : this.socket.write(buf, () => done(buf));
  }

  close(): void {
    if (!this.socket.destroyed) this.socket.end(DISCONNECT);
    setTimeout(() => this.socket.destroy(), 200).unref();
  }

  private onRead(buf: Buffer, n: number): void {
    this.acks = 0;
    this.pubacks = 0;
    let pos = 0;
    // first finish a packet the previous read cut, copying only its missing bytes
    while (this.cutLength > 0 && pos < n) {
      const end = packetEnd(this.cut, 0, this.cutLength);
      const want = end < 0 ? this.cutLength + 1 : end; // header still incomplete: one more byte
      this.reserveCut(want);
      const take = Math.min(want - this.cutLength, n - pos);
      buf.copy(this.cut, this.cutLength, pos, pos + take);
      this.cutLength += take;
      pos += take;
      if (end >= 0 && this.cutLength === end) {
        this.parse(this.cut, 0, end);
        this.cutLength = 0;
      }
    }
    const stop = this.parse(buf, pos, n);
    if (stop < n) {
      this.reserveCut(n - stop);
      buf.copy(this.cut, 0, stop, n);
      this.cutLength = n - stop;
    }
    if (this.acks > 0) this.flushAcks(this.acks);
    if (this.pubacks > 0) this.events.pubacks?.(this.pubacks);
    this.events.chunk?.();
  }

  private reserveCut(size: number): void {
    if (this.cut.length >= size) return;
    const grown = Buffer.allocUnsafe(Math.max(size, 2 * this.cut.length, 1024));
    this.cut.copy(grown, 0, 0, this.cutLength);
    this.cut = grown;
  }

  /** Handles every complete packet of buf[from, to); returns where the first incomplete one starts. */
  private parse(buf: Buffer, from: number, to: number): number {
    let pos = from;
    while (pos + 2 <= to) {
      const end = packetEnd(buf, pos, to);
      if (end < 0 || end > to) break;
      const first = buf[pos]!;
      let p = pos + 1; // past the remaining-length bytes (packetEnd saw them complete)
      while (buf[p]! & 0x80) p++;
      p++;
      const type = first >> 4;
      if (type === PUBLISH) {
        const qos = (first >> 1) & 3;
        let q = p + 2 + buf.readUInt16BE(p);
        if (qos > 0) {
          const id = buf.readUInt16BE(q);
          q += 2;
          if (this.acks * 4 + 4 > this.ackScratch.length) {
            this.flushAcks(this.acks);
            this.acks = 0;
          }
          const o = this.acks * 4;
          this.ackScratch[o] = 0x40;
          this.ackScratch[o + 1] = 2;
          this.ackScratch.writeUInt16BE(id, o + 2);
          this.acks++;
        }
        this.events.publish?.(buf, q, end);
      } else if (type === PUBACK) {
        this.pubacks++;
      } else if (type === CONNACK) {
        this.onConnack?.(buf[p + 1] === 0);
        this.onConnack = undefined;
      } else if (type === SUBACK) {
        this.onSuback?.();
        this.onSuback = undefined;
      }
      pos = end;
    }
    return pos;
  }

  private flushAcks(count: number): void {
    // the socket may hold on to what it is given: hand it a (pooled) copy of the scratch bytes
    this.socket.write(Buffer.from(this.ackScratch.subarray(0, count * 4)));
  }
}

/** Opens `count` clients with `concurrency` CONNECTs in flight; resolves when all are connected. */
export async function openClients(port: number, ids: string[], concurrency: number, events: (i: number) => RawClientEvents = () => ({}), keepalive = 60): Promise<RawClient[]> {
  const clients: RawClient[] = new Array<RawClient>(ids.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ids.length) {
      const i = next++;
      const c = new RawClient(port, encodeConnect(ids[i]!, keepalive), events(i));
      clients[i] = c;
      await c.ready;
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, ids.length) }, worker));
  return clients;
}
