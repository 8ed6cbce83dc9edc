/** One client network connection: decoding, dispatch, keep alive, v5 negotiation, sending. */
import type { Duplex } from 'node:stream';
import type { IPublishPacket, Packet } from 'mqtt-packet';
import { Decoder, encode, totalPacketSize, type DecoderEvents, type ProtocolVersion } from '../mqtt/codec.js';
import { publishHeader } from '../mqtt/publish-header.js';
import { Reason } from '../mqtt/reason-codes.js';
import type { TransportInfo } from '../transport/types.js';
import type { ClientInfo } from '../auth/hooks.js';
import type { Delivery, DeliveryLead, Message } from './message.js';
import { remainingExpiry } from './message.js';
import type { Session, SessionLink } from './session.js';
import type { Broker } from './broker.js';
import { dispatch } from './handlers/dispatch.js';
import { ProtocolViolation } from './errors.js';
import type { Pausable, PublishThrottle } from '../limits/abuse.js';
import type { PublishingClient } from './extension.js';

/*
 * The stream's listeners and the uncork callback are functions shared by every connection (the
 * stream carries its connection), not closures per connection: at 10 000 idle connections every
 * few hundred bytes per connection count (docs/benchmarks.md, "Memory per idle connection").
 */
const CONNECTION = Symbol('connection');
type Carrier = Duplex & { [CONNECTION]: Connection };

function onStreamData(this: Carrier, chunk: Buffer): void {
  this[CONNECTION].received(chunk);
}

function onStreamError(this: Carrier, err: Error): void {
  const conn = this[CONNECTION];
  conn.broker.log.debug({ err: err.message, clientId: conn.clientId }, 'connection error');
}

function onStreamClose(this: Carrier): void {
  this[CONNECTION].streamClosed();
}

function uncork(conn: Connection): void {
  conn.uncorkNow();
}

/** First byte of PUBACK, PUBREC, PUBREL (flags 0b0010) and PUBCOMP. */
const ACK_TYPES: Partial<Record<Packet['cmd'], number>> = { puback: 0x40, pubrec: 0x50, pubrel: 0x62, pubcomp: 0x70 };

export interface Will {
  message: Message;
  /** Seconds after the connection is lost before the will is published (v5 Will Delay Interval). */
  delay: number;
}

export class Connection implements SessionLink, ClientInfo, Pausable, DecoderEvents, PublishingClient {
  version: ProtocolVersion = 4;
  clientId = '';
  username: string | undefined;
  /** The identity other layers (ACLs, the trusted component) know this client by. */
  identity = '';
  session: Session | null = null;
  will: Will | undefined;
  /** CONNECT accepted; `connecting` while an asynchronous authenticate hook runs. */
  connected = false;
  connecting = false;
  closed = false;
  /** Taken past `limits.maxConnections`: its CONNECT is refused (v5: CONNACK 0x97). */
  overLimit = false;
  /** Not read while over its publish budget (its keep alive is not held against it meanwhile). */
  throttled = false;
  keepalive = 0;
  lastActivity = Date.now();
  readonly openedAt = Date.now();

  // negotiated with a v5 client
  receiveMaximum = 65535;
  maxPacketSize = Infinity;
  topicAliasMaximum = 0;
  requestProblemInformation = true;
  /** Made at first use, as most clients use no aliases. */
  inboundAliases: Map<number, string> | undefined;
  private outboundAliases: Map<string, number> | undefined;

  /** Tail of the work that must finish, in order, before the next incoming message is handled. */
  private chain: Promise<void> | undefined;

  /** Packets that arrived while CONNECT was still being processed. */
  private pending: Packet[] | undefined;
  private readonly decoder: Decoder;
  /** Only when a publish rate or byte rate is configured. */
  private readonly throttle: PublishThrottle | undefined;

  constructor(
    readonly broker: Broker,
    private readonly stream: Duplex,
    readonly transport: TransportInfo,
  ) {
    this.decoder = new Decoder(broker.config.limits.maxPacketSize, this);
    this.throttle = broker.abuse.publishThrottle();
    (stream as Carrier)[CONNECTION] = this;
    stream.on('data', onStreamData);
    stream.on('error', onStreamError);
    stream.on('close', onStreamClose);
  }

  /** @internal (stream listener) */
  received(chunk: Buffer): void {
    this.lastActivity = Date.now();
    this.broker.counters.bytesReceived += chunk.length;
    this.decoder.push(chunk);
  }

  /** @internal (stream listener) */
  streamClosed(): void {
    this.onClosed();
  }

  get certificateIdentity(): string | undefined {
    return this.transport.certificateIdentity;
  }

  setProtocolVersion(version: ProtocolVersion): void {
    this.version = version;
    this.decoder.setProtocolVersion(version);
  }

  get busy(): boolean {
    return this.chain !== undefined;
  }

  pauseReading(): void {
    this.stream.pause();
  }

  resumeReading(): void {
    if (this.closed) return;
    // the pause was the broker's doing, not the client's silence
    this.lastActivity = Date.now();
    this.throttled = false;
    this.releasePackets();
    if (this.pending === undefined) this.stream.resume();
  }

  /** Runs `task` after all earlier serial work of this connection. */
  serially(task: () => Promise<void>): void {
    const next = (this.chain ?? Promise.resolve()).then(task).catch((err: unknown) => this.handlerFailed(err, 'asynchronous handler failed'));
    this.chain = next;
    void next.then(() => {
      if (this.chain === next) this.chain = undefined;
    });
  }

  /** Holds incoming packets until an asynchronous CONNECT completes. */
  holdPackets(): void {
    this.pending = [];
  }

  releasePackets(): void {
    const pending = this.pending;
    this.pending = undefined;
    if (pending) for (const p of pending) this.onPacket(p);
  }

  /** @internal (Decoder) */
  onPacket(packet: Packet): void {
    if (this.closed) return;
    if (this.pending) {
      this.pending.push(packet);
      return;
    }
    if (this.throttle !== undefined && packet.cmd === 'publish') {
      const ms = this.throttle.admit(totalPacketSize(packet.length ?? 0));
      if (ms > 0) {
        // over budget: this PUBLISH and what follows it wait, and nothing more is read meanwhile
        this.pending = [packet];
        this.throttled = true;
        this.throttle.pause(this, ms);
        this.broker.abuse.paused(this.clientId, ms);
        return;
      }
    }
    try {
      dispatch(this, packet);
    } catch (err) {
      if (err instanceof ProtocolViolation) {
        this.broker.log.debug({ clientId: this.clientId, reason: err.reason }, err.message);
        this.close(err.reason, err.message);
      } else {
        this.handlerFailed(err, `handler failed on ${packet.cmd.toUpperCase()}`);
      }
    }
  }

  /**
   * Work for this connection failed (a bug, not the client's fault): counted, logged, and this
   * connection alone is closed (v5: DISCONNECT 0x83 first); the broker goes on.
   */
  handlerFailed(err: unknown, what: string): void {
    this.broker.counters.handlerFailures++;
    this.broker.log.error({ err, clientId: this.clientId }, what);
    this.close(Reason.ImplementationSpecificError, 'internal error');
  }

  /** @internal (Decoder) */
  onTooLarge(size: number): void {
    this.broker.counters.oversizedPackets++;
    this.close(Reason.PacketTooLarge, `packet of ${size} bytes exceeds the maximum of ${this.broker.config.limits.maxPacketSize}`);
  }

  /** @internal (Decoder) */
  onMalformed(message: string, reason: number, packet?: Packet): void {
    this.broker.counters.malformedPackets++;
    // a v5 CONNECT that breaks a rule is refused in a v5 CONNACK (MQTT-3.2.2.2)
    if (!this.connected && packet?.cmd === 'connect' && packet.protocolVersion === 5) this.setProtocolVersion(5);
    this.broker.log.debug({ clientId: this.clientId, remote: this.transport.remoteAddress }, `malformed packet: ${message}`);
    if (!this.connected && message === 'Invalid protocol version') {
      // MQTT-3.1.2-2: answer an unknown protocol level with CONNACK 0x01 (v3.1.1 layout) and close.
      this.write(Buffer.from([0x20, 0x02, 0x00, 0x01]));
      this.destroy();
      return;
    }
    this.close(reason, message);
  }

  send(packet: Packet): void {
    if (this.closed) return;
    // The acknowledgements of every QoS 1/2 message: four bytes, no encoder needed when they
    // carry no reason code or properties (any version; v5 omits a success reason, MQTT-3.4.2.1).
    const ackType = ACK_TYPES[packet.cmd];
    if (ackType !== undefined && !(packet as { reasonCode?: number }).reasonCode && !(packet as { properties?: object }).properties) {
      const id = packet.messageId ?? 0;
      const buf = Buffer.allocUnsafe(4);
      buf[0] = ackType;
      buf[1] = 2;
      buf[2] = id >> 8;
      buf[3] = id & 0xff;
      this.write(buf);
      return;
    }
    let buf = encode(packet, this.version);
    if (buf.length > this.maxPacketSize && 'properties' in packet && packet.properties && packet.cmd !== 'publish') {
      // MQTT-3.1.2-25: drop the optional reason string and user properties before giving up.
      const props = { ...packet.properties } as Record<string, unknown>;
      delete props.reasonString;
      delete props.userProperties;
      buf = encode({ ...packet, properties: props } as Packet, this.version);
    }
    if (buf.length > this.maxPacketSize) return;
    this.write(buf);
  }

  write(buf: Buffer): void {
    if (this.closed) return;
    this.broker.counters.bytesSent += buf.length;
    // Everything written in one turn of the event loop leaves in one system call.
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(uncork, this);
    }
    this.stream.write(buf);
  }

  private corked = false;

  /** @internal (nextTick after the first write of a turn) */
  uncorkNow(): void {
    this.corked = false;
    this.stream.uncork();
  }

  sendPublish(d: Delivery, dup: boolean): boolean {
    if (this.closed) return false;
    const m = d.message;
    const v5 = this.version === 5;
    if (!v5 || (m.properties === undefined && m.expiresAt === 0 && d.subscriptionIds === undefined && this.topicAliasMaximum === 0)) {
      return this.sendPlainPublish(d, dup, v5);
    }
    const packet: IPublishPacket = {
      cmd: 'publish',
      topic: m.topic,
      payload: d.lead !== undefined ? withLead(d, d.lead) : d.payload,
      qos: d.qos,
      retain: d.retain,
      dup,
      messageId: d.qos > 0 ? d.packetId : undefined,
    };
    let newAlias = 0;
    if (this.version === 5) {
      const props: NonNullable<IPublishPacket['properties']> = m.properties ? { ...m.properties } : {};
      const left = remainingExpiry(m);
      if (left !== undefined) {
        if (left === 0) return false;
        props.messageExpiryInterval = left;
      }
      if (d.subscriptionIds) props.subscriptionIdentifier = d.subscriptionIds.length === 1 ? d.subscriptionIds[0]! : d.subscriptionIds;
      if (this.topicAliasMaximum > 0) {
        const aliases = (this.outboundAliases ??= new Map());
        const alias = aliases.get(m.topic);
        if (alias !== undefined) {
          props.topicAlias = alias;
          packet.topic = '';
        } else if (aliases.size < this.topicAliasMaximum) {
          newAlias = aliases.size + 1;
          props.topicAlias = newAlias;
        }
      }
      packet.properties = props;
    }
    const buf = encode(packet, this.version);
    if (buf.length > this.maxPacketSize) return false;
    // Only an alias the client has actually been told about may be used later.
    if (newAlias !== 0) this.outboundAliases!.set(m.topic, newAlias);
    this.write(buf);
    this.broker.counters.publishSent[d.qos]++;
    return true;
  }

  /** PUBLISH without properties: hand-encoded header, payload written as is (no copy). */
  private sendPlainPublish(d: Delivery, dup: boolean, v5: boolean): boolean {
    const m = d.message;
    const topic = (m.topicBytes ??= Buffer.from(m.topic));
    const lead = d.lead;
    const length = (lead === undefined ? 0 : lead.byteLength) + d.payload.length;
    const header = publishHeader(topic, length, d.qos, d.retain, dup, d.packetId, v5, lead);
    if (header.length + d.payload.length > this.maxPacketSize) return false;
    this.write(header);
    if (d.payload.length > 0) this.write(d.payload);
    this.broker.counters.publishSent[d.qos]++;
    return true;
  }

  /** Routes `message` to this client's session alone, whether or not it is still connected. */
  reply(message: Message): void {
    this.broker.route(message, this.clientId);
  }

  sendPubrel(packetId: number): void {
    this.send({ cmd: 'pubrel', messageId: packetId });
  }

  /** Closes the connection; v5 clients first get a DISCONNECT with `reason`. */
  close(reason: number, reasonString?: string): void {
    if (this.closed) return;
    if (this.version === 5 && this.connected) {
      const properties = reasonString && this.requestProblemInformation ? { reasonString } : undefined;
      this.send({ cmd: 'disconnect', reasonCode: reason, properties });
    } else if (this.version === 5 && !this.connected && reason >= 0x80 && reason !== Reason.MalformedPacket) {
      // Before CONNACK a v5 failure is reported in a CONNACK.
      this.send({ cmd: 'connack', sessionPresent: false, reasonCode: reason });
    }
    this.destroy();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.stream.end();
    // give the final packet a moment to leave, then make sure the socket is gone
    setTimeout(() => this.stream.destroy(), 100).unref();
    this.onClosed();
  }

  private onClosed(): void {
    this.closed = true;
    this.throttle?.stop();
    this.broker.connectionClosed(this);
  }
}

/** A delivery's lead and payload in one buffer (the encoder's path, v5 properties). */
function withLead(d: Delivery, lead: DeliveryLead): Buffer {
  const out = Buffer.allocUnsafe(lead.byteLength + d.payload.length);
  lead.writeTo(out, 0);
  d.payload.copy(out, lead.byteLength);
  return out;
}
