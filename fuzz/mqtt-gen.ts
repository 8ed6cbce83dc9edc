// Structurally valid MQTT packets (3.1, 3.1.1, 5.0) chosen at random from small pools of ids,
// topics and filters, so that sessions of one case meet: shared subscriptions, takeovers,
// retained messages, protected topics and `$tee/` requests. mqtt-packet encodes them.
import mqttPacket, { type Packet, type QoS } from 'mqtt-packet';
import type { Prng } from './prng.js';

export type Version = 3 | 4 | 5;

/** Identities the harness enrols, so their envelopes pass the broker's checks and reach the trusted component. */
export const ENROLLED = ['fz-a', 'fz-b', 'fz-c'] as const;
export const SECURE_TOPICS = ['secure/a', 'secure/b/1', 'secure/c'] as const;

const CLIENT_IDS = [...ENROLLED, 'fz-d', 'fz-e', '', 'fz-é', `fz-${'l'.repeat(300)}`];
const PLAIN_TOPICS = ['a', 'a/b', 'a/b/c', 'fz/1', 'fz/2', '$SYS/x', '/', 'a//b', 'ü/ñ', `l/${'x'.repeat(200)}`];
const BAD_TOPICS = ['a/+', '#', 'a\u0000b', '$share/g/a', ''];
const TEE_TOPICS = ['$tee/info/request', '$tee/enrol/request', '$tee/rotate/request', '$tee/policy/request', '$tee/revoke/request', '$tee/x', '$tee/response/fz-a'];
const FILTERS = [
  '#', '+', 'a/#', 'a/+/c', 'fz/+', 'secure/#', 'secure/+', '$share/g/a/#', '$share/g/secure/#', '$share/h/#', '$share/g/fz/1',
  '$tee/response/#', '$tee/#', '$SYS/#', '+/+/+', 'a/#/b', '$share//a', '$share/g', 'secure/b/#',
];

/** Valid envelopes sealed by each enrolled identity for each secure topic (see broker-target.ts). */
export type EnvelopePool = ReadonlyMap<string, ReadonlyMap<string, readonly Buffer[]>>;

export interface GenContext {
  version: Version;
  clientId: string;
  envelopes: EnvelopePool;
  /** The next packet identifier this connection uses. */
  nextId: number;
}

function packetId(p: Prng, ctx: GenContext): number {
  if (p.chance(0.05)) return p.pick([0, 1, 65535]);
  ctx.nextId = (ctx.nextId % 65535) + 1;
  return ctx.nextId;
}

/** A property value, sometimes given twice (mqtt-packet writes an array as repeated properties). */
function maybeTwice<T>(p: Prng, value: T, other: T): T | T[] {
  return p.chance(0.08) ? [value, other] : value;
}

function userProperties(p: Prng): Record<string, string | string[]> {
  return p.chance(0.5) ? { k: p.pick(['v', '', 'é']) } : { k: ['1', '2'], [`x${p.int(3)}`]: 'y' };
}

function payload(p: Prng): Buffer {
  const size = p.pick([0, 1, 8, 64, 512, 2048, p.chance(0.1) ? 70_000 : 100]);
  return p.bytes(size);
}

function qos(p: Prng): QoS {
  return p.pick([0, 1, 1, 2, 2] as const);
}

export function topic(p: Prng, ctx: GenContext): string {
  const r = p.int(100);
  if (r < 45) return p.pick(PLAIN_TOPICS);
  if (r < 70) return p.pick(SECURE_TOPICS);
  if (r < 85) return p.pick(TEE_TOPICS);
  if (r < 93) return p.pick(BAD_TOPICS);
  return `${p.pick(PLAIN_TOPICS)}/${ctx.clientId.slice(0, 8)}`;
}

export function clientId(p: Prng): string {
  return p.pick(CLIENT_IDS);
}

/** A payload for `topicName`: a valid envelope of an enrolled sender when there is one, else random bytes. */
function payloadFor(p: Prng, ctx: GenContext, topicName: string): Buffer {
  if (!topicName.startsWith('secure/') || p.chance(0.2)) return payload(p);
  const sender = p.chance(0.8) && ctx.envelopes.has(ctx.clientId) ? ctx.clientId : p.pick(ENROLLED);
  const pool = ctx.envelopes.get(sender)?.get(topicName) ?? ctx.envelopes.get(sender)?.get(p.pick(SECURE_TOPICS));
  return pool === undefined || pool.length === 0 ? payload(p) : p.pick(pool);
}

export function connect(p: Prng, ctx: GenContext): Packet {
  const v5 = ctx.version === 5;
  const packet: Record<string, unknown> = {
    cmd: 'connect',
    protocolId: ctx.version === 3 ? 'MQIsdp' : 'MQTT',
    protocolVersion: ctx.version,
    clientId: ctx.clientId,
    clean: p.chance(0.5),
    keepalive: p.pick([0, 1, 10, 60, 65535]),
  };
  if (p.chance(0.15)) packet.username = p.pick(['u', '', 'fz-a']);
  if (packet.username !== undefined && p.chance(0.5)) packet.password = p.bytes(p.int(8));
  if (p.chance(0.4)) {
    const willTopic = topic(p, ctx);
    const will: Record<string, unknown> = { topic: willTopic, payload: payloadFor(p, ctx, willTopic), qos: qos(p), retain: p.chance(0.3) };
    if (v5 && p.chance(0.6)) {
      will.properties = {
        willDelayInterval: p.pick([0, 1, 3600]),
        messageExpiryInterval: p.chance(0.5) ? maybeTwice(p, p.pick([1, 60]), 5) : undefined,
        payloadFormatIndicator: p.chance(0.2) ? true : undefined,
        contentType: p.chance(0.2) ? 'text/plain' : undefined,
        responseTopic: p.chance(0.2) ? maybeTwice(p, 'a/r', 'b/r') : undefined,
        correlationData: p.chance(0.3) ? maybeTwice(p, p.bytes(4), p.bytes(2)) : undefined,
        userProperties: p.chance(0.3) ? userProperties(p) : undefined,
      };
    }
    packet.will = will;
  }
  if (v5 && p.chance(0.7)) {
    packet.properties = {
      sessionExpiryInterval: p.chance(0.6) ? maybeTwice(p, p.pick([0, 5, 3600, 0xffffffff]), 1) : undefined,
      receiveMaximum: p.chance(0.3) ? maybeTwice(p, p.pick([1, 2, 65535]), 3) : undefined,
      maximumPacketSize: p.chance(0.2) ? p.pick([64, 200, 1024, 1 << 20]) : undefined,
      topicAliasMaximum: p.chance(0.4) ? maybeTwice(p, p.pick([0, 1, 5, 65535]), 2) : undefined,
      requestResponseInformation: p.chance(0.2) ? true : undefined,
      requestProblemInformation: p.chance(0.2) ? p.chance(0.5) : undefined,
      userProperties: p.chance(0.2) ? userProperties(p) : undefined,
      authenticationMethod: p.chance(0.03) ? 'SCRAM-SHA-1' : undefined,
    };
  }
  return packet as unknown as Packet;
}

/** A PUBLISH; with `alias` set, the v5 topic alias to give (and the topic left empty when `aliasOnly`). */
export function publish(p: Prng, ctx: GenContext, opts: { qos?: QoS; topic?: string; alias?: number; aliasOnly?: boolean } = {}): Packet {
  const q = opts.qos ?? qos(p);
  const t = opts.topic ?? topic(p, ctx);
  const packet: Record<string, unknown> = { cmd: 'publish', topic: opts.aliasOnly === true ? '' : t, payload: payloadFor(p, ctx, t), qos: q, retain: p.chance(0.2), dup: p.chance(0.05) };
  if (q > 0) packet.messageId = packetId(p, ctx);
  if (ctx.version === 5) {
    const props: Record<string, unknown> = {};
    if (opts.alias !== undefined) props.topicAlias = maybeTwice(p, opts.alias, opts.alias + 1);
    if (p.chance(0.2)) props.messageExpiryInterval = p.pick([0, 1, 30]);
    if (p.chance(0.15)) props.responseTopic = p.pick(['a/r', '$tee/response/x', 'a/+']);
    if (p.chance(0.15)) props.correlationData = maybeTwice(p, p.bytes(p.int(16)), p.bytes(3));
    if (p.chance(0.1)) props.payloadFormatIndicator = true; // with binary payloads: invalid UTF-8 claimed
    if (p.chance(0.05)) props.subscriptionIdentifier = 7; // not allowed from a client
    if (p.chance(0.1)) props.userProperties = userProperties(p);
    if (p.chance(0.05)) props.contentType = maybeTwice(p, 'a', 'b');
    if (Object.keys(props).length > 0) packet.properties = props;
  }
  return packet as unknown as Packet;
}

export function subscribe(p: Prng, ctx: GenContext): Packet {
  const subscriptions = [];
  for (let n = p.chance(0.8) ? 1 : p.range(2, 4); n > 0; n--) {
    const s: Record<string, unknown> = { topic: p.pick(FILTERS), qos: qos(p) };
    if (ctx.version === 5) Object.assign(s, { nl: p.chance(0.2), rap: p.chance(0.3), rh: p.int(3) });
    subscriptions.push(s);
  }
  const packet: Record<string, unknown> = { cmd: 'subscribe', messageId: packetId(p, ctx), subscriptions };
  if (ctx.version === 5 && p.chance(0.5)) {
    packet.properties = { subscriptionIdentifier: maybeTwice(p, p.pick([1, 2, 268_435_455]), 3), userProperties: p.chance(0.2) ? userProperties(p) : undefined };
  }
  return packet as unknown as Packet;
}

export function unsubscribe(p: Prng, ctx: GenContext): Packet {
  return { cmd: 'unsubscribe', messageId: packetId(p, ctx), unsubscriptions: [p.pick(FILTERS)] };
}

/** An acknowledgement out of the blue (unknown or stale packet identifier). */
export function strayAck(p: Prng, ctx: GenContext): Packet {
  const cmd = p.pick(['puback', 'pubrec', 'pubrel', 'pubcomp'] as const);
  const packet: Record<string, unknown> = { cmd, messageId: p.chance(0.5) ? ctx.nextId : p.range(1, 65535) };
  if (ctx.version === 5 && p.chance(0.3)) packet.reasonCode = p.pick([0, 0x10, 0x80, 0x92]);
  return packet as unknown as Packet;
}

export function disconnect(p: Prng, ctx: GenContext): Packet {
  const packet: Record<string, unknown> = { cmd: 'disconnect' };
  if (ctx.version === 5) {
    packet.reasonCode = p.pick([0, 0, 4, 0x80]); // 4: with will message
    if (p.chance(0.4)) packet.properties = { sessionExpiryInterval: maybeTwice(p, p.pick([0, 10, 0xffffffff]), 1) };
  }
  return packet as unknown as Packet;
}

export function auth(p: Prng): Packet {
  return { cmd: 'auth', reasonCode: p.pick([0, 0x18, 0x19]), properties: { authenticationMethod: 'x', authenticationData: p.bytes(4) } };
}

/** Encodes a packet; undefined when mqtt-packet refuses the combination drawn. */
export function encode(packet: Packet, version: Version): Buffer | undefined {
  try {
    const out = mqttPacket.generate(packet, { protocolVersion: version });
    return out.length > 0 ? out : undefined;
  } catch {
    return undefined;
  }
}
