/** An MQTT client on a raw socket: every packet the broker sends is visible, nothing is automatic. */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import type { IConnackPacket, IConnectPacket, ISubackPacket, ISubscribePacket, ISubscription, Packet, PacketCmd, QoS } from 'mqtt-packet';
import { WAIT_MS, withTimeout } from './wait.js';

export type PacketOf<C extends PacketCmd> = Extract<Packet, { cmd: C }>;

/** Each packet as [cmd, reason or return code]: compact to compare in assertions. */
export function codes(packets: Packet[]): [string, number | undefined][] {
  return packets.map((p) => [p.cmd, 'reasonCode' in p ? p.reasonCode : 'returnCode' in p ? p.returnCode : undefined]);
}

export class RawClient {
  private readonly parser: mqttPacket.Parser;
  private readonly received: Packet[] = [];
  private read = 0;
  private lastId = 0;
  private wake: (() => void) | undefined;
  /** Resolves once the socket is closed (by either side). */
  readonly closed: Promise<void>;
  isClosed = false;

  private constructor(
    readonly socket: Socket,
    readonly version: 4 | 5,
  ) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: Packet) => {
      this.received.push(p);
      this.wake?.();
    });
    this.parser.on('error', (err: Error) => {
      this.received.push({ cmd: 'auth', reasonCode: -1, properties: { reasonString: `unparsable bytes from the broker: ${err.message}` } });
      this.wake?.();
    });
    socket.on('data', (chunk: Buffer) => this.parser.parse(chunk));
    // A reset after the broker closed the connection is expected by the tests that provoke it.
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.once('close', () => {
        this.isClosed = true;
        this.wake?.();
        resolve();
      }),
    );
  }

  /** `localAddress`: the source address to connect from (any 127.x.y.z works on Linux loopback). */
  static async open(port: number, version: 4 | 5 = 4, host = '127.0.0.1', localAddress?: string): Promise<RawClient> {
    const socket = connect({ host, port, localAddress });
    await withTimeout(
      new Promise<void>((resolve, reject) => {
        socket.once('connect', resolve);
        socket.once('error', reject);
      }),
      WAIT_MS,
      `a TCP connection to ${host}:${port}`,
    );
    return new RawClient(socket, version);
  }

  send(packet: Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  write(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Sends CONNECT (defaults: empty client id, clean, no keep alive) and returns the CONNACK. */
  async connect(fields: Partial<IConnectPacket> = {}): Promise<IConnackPacket> {
    this.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: this.version, clientId: '', clean: true, keepalive: 0, ...fields });
    return this.expect('connack');
  }

  /** SUBSCRIBE to one filter (or several) and return the SUBACK. */
  async subscribe(
    filters: string | ISubscription[],
    qos: QoS = 0,
    properties?: ISubscribePacket['properties'],
  ): Promise<ISubackPacket> {
    const subscriptions = typeof filters === 'string' ? [{ topic: filters, qos }] : filters;
    const messageId = this.packetId();
    this.send({ cmd: 'subscribe', messageId, subscriptions, properties });
    const suback = await this.expect('suback');
    assert.equal(suback.messageId, messageId);
    return suback;
  }

  /** A fresh packet identifier for packets this client sends. */
  packetId(): number {
    this.lastId = (this.lastId % 65535) + 1;
    return this.lastId;
  }

  /** The next packet from the broker; fails if the connection closes or nothing comes in `ms`. */
  async next(what = 'a packet', ms = WAIT_MS): Promise<Packet> {
    if (this.read >= this.received.length) {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          if (this.isClosed) reject(new Error(`connection closed while waiting for ${what}`));
          this.wake = () => (this.read < this.received.length ? resolve() : this.isClosed && reject(new Error(`connection closed while waiting for ${what}`)));
        }),
        ms,
        what,
      ).finally(() => (this.wake = undefined));
    }
    return this.received[this.read++]!;
  }

  /** The next packet, which must be a `cmd`. */
  async expect<C extends PacketCmd>(cmd: C, ms = WAIT_MS): Promise<PacketOf<C>> {
    const p = await this.next(cmd.toUpperCase(), ms);
    assert.equal(p.cmd, cmd, `expected ${cmd.toUpperCase()}, got ${JSON.stringify(p)}`);
    return p as PacketOf<C>;
  }

  /** Waits until the broker closes the connection; returns the packets not yet read. */
  async closedByBroker(ms = WAIT_MS): Promise<Packet[]> {
    await withTimeout(this.closed, ms, 'the broker to close the connection');
    const rest = this.received.slice(this.read);
    this.read = this.received.length;
    return rest;
  }

  destroy(): void {
    this.socket.destroy();
  }
}
