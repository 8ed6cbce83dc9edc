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

/** A raw MQTT connection. `ready` resolves on CONNACK (rejects when refused or closed before). */
export class RawClient {
  readonly socket: Socket;
  readonly ready: Promise<void>;
  private rest: Buffer | undefined;
  private onConnack: ((ok: boolean) => void) | undefined;
  private onSuback: (() => void) | undefined;
  private readonly ackScratch = Buffer.allocUnsafe(4 * 1024);

  constructor(port: number, connectPacket: Buffer, private readonly events: RawClientEvents = {}) {
    this.socket = netConnect({ port, host: '127.0.0.1', noDelay: true });
    this.ready = new Promise<void>((resolve, reject) => {
      this.onConnack = (ok) => (ok ? resolve() : reject(new Error('CONNACK refused')));
      this.socket.once('error', reject);
      this.socket.once('close', () => reject(new Error('closed before CONNACK')));
    });
    this.ready.catch(() => undefined);
    this.socket.on('error', () => undefined);
    this.socket.write(connectPacket);
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
  }

  subscribe(filter: string, qos: QoS): Promise<void> {
    return new Promise((resolve, reject) => {
      this.onSuback = resolve;
      this.socket.once('close', () => reject(new Error('closed before SUBACK')));
      this.socket.write(encodeSubscribe(filter, qos));
    });
  }

  /** Writes; false when the socket's buffer is full (wait for 'drain'). */
  write(buf: Buffer): boolean {
    return this.socket.write(buf);
  }

  close(): void {
    if (!this.socket.destroyed) this.socket.end(DISCONNECT);
    setTimeout(() => this.socket.destroy(), 200).unref();
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.rest) {
      buf = Buffer.concat([this.rest, chunk]);
      this.rest = undefined;
    }
    const len = buf.length;
    let pos = 0;
    let acks = 0;
    let pubacks = 0;
    while (pos + 2 <= len) {
      const first = buf[pos]!;
      // remaining length: up to 4 bytes of 7 bits
      let remaining = 0;
      let mul = 1;
      let p = pos + 1;
      let complete = false;
      while (p < len && p <= pos + 4) {
        const b = buf[p++]!;
        remaining += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
        mul *= 128;
      }
      if (!complete) break;
      const end = p + remaining;
      if (end > len) break;
      const type = first >> 4;
      if (type === PUBLISH) {
        const qos = (first >> 1) & 3;
        let q = p + 2 + buf.readUInt16BE(p);
        if (qos > 0) {
          const id = buf.readUInt16BE(q);
          q += 2;
          if (acks * 4 + 4 > this.ackScratch.length) {
            this.flushAcks(acks);
            acks = 0;
          }
          const o = acks * 4;
          this.ackScratch[o] = 0x40;
          this.ackScratch[o + 1] = 2;
          this.ackScratch.writeUInt16BE(id, o + 2);
          acks++;
        }
        this.events.publish?.(buf, q, end);
      } else if (type === PUBACK) {
        pubacks++;
      } else if (type === CONNACK) {
        this.onConnack?.(buf[p + 1] === 0);
        this.onConnack = undefined;
      } else if (type === SUBACK) {
        this.onSuback?.();
        this.onSuback = undefined;
      }
      pos = end;
    }
    if (pos < len) this.rest = buf.subarray(pos);
    if (acks > 0) this.flushAcks(acks);
    if (pubacks > 0) this.events.pubacks?.(pubacks);
    this.events.chunk?.();
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
