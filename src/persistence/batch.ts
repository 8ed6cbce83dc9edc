/**
 * A batch of changes in the form the SQLite statements take: one flat list of operation codes and
 * their parameters (strings, numbers, null), the payloads copied into one buffer of their own. It
 * crosses to the store's thread as is (the payload buffer transferred, not copied): a Buffer from
 * the broker is often a view of a whole socket read, which a structured clone would copy entire.
 */
import { encodeProperties } from './properties.js';
import type { Change, StoredMessage } from './store.js';

export const enum Op {
  /** clientId, expiryInterval, expiresAt, subscriptions (JSON) */
  Session = 0,
  /** clientId */
  SessionEnd = 1,
  /** id, clientId, topic, payload offset, payload length, flags, properties, expiresAt, origin, subscription ids (JSON), packetId, state */
  Delivery = 2,
  /** packetId, state, id */
  DeliveryState = 3,
  /** id */
  DeliveryDone = 4,
  /** clientId, packetId */
  IncomingAdd = 5,
  /** clientId, packetId */
  IncomingDelete = 6,
  /** topic, payload offset, payload length, qos, properties, expiresAt, origin */
  Retain = 7,
  /** topic */
  Unretain = 8,
  /** clientId, topic, payload offset, payload length, flags, properties, expiresAt, origin, publishAt */
  Will = 9,
  /** clientId */
  WillGone = 10,
}

export type Param = string | number | null;

export interface EncodedBatch {
  ops: Param[];
  payloads: ArrayBuffer;
}

/** Message QoS (bits 0-1), message retain (bit 2), delivery QoS (bits 3-4), delivery retain (bit 5). */
export function flagsOf(m: StoredMessage, qos = 0, retain = false): number {
  return m.qos | (m.retain ? 4 : 0) | (qos << 3) | (retain ? 32 : 0);
}

export function encodeBatch(changes: readonly Change[]): EncodedBatch {
  const ops: Param[] = [];
  const payloads: Buffer[] = [];
  let bytes = 0;
  const payload = (b: Buffer): void => {
    ops.push(bytes, b.length);
    payloads.push(b);
    bytes += b.length;
  };
  for (const c of changes) {
    switch (c.kind) {
      case 'session': {
        const x = c.session;
        ops.push(Op.Session, x.clientId, x.expiryInterval, x.expiresAt, JSON.stringify(x.subscriptions));
        break;
      }
      case 'session-end':
        ops.push(Op.SessionEnd, c.clientId);
        break;
      case 'delivery': {
        const d = c.delivery;
        const m = d.message;
        ops.push(Op.Delivery, d.id, d.clientId, m.topic);
        payload(m.payload);
        ops.push(flagsOf(m, d.qos, d.retain), encodeProperties(m.properties), m.expiresAt, m.origin, d.subscriptionIds === undefined ? null : JSON.stringify(d.subscriptionIds), d.packetId, d.state);
        break;
      }
      case 'delivery-state':
        ops.push(Op.DeliveryState, c.packetId, c.state, c.id);
        break;
      case 'delivery-done':
        ops.push(Op.DeliveryDone, c.id);
        break;
      case 'incoming':
        ops.push(c.waiting ? Op.IncomingAdd : Op.IncomingDelete, c.clientId, c.packetId);
        break;
      case 'retained': {
        const m = c.message;
        if (m === null) {
          ops.push(Op.Unretain, c.topic);
          break;
        }
        ops.push(Op.Retain, c.topic);
        payload(m.payload);
        ops.push(m.qos, encodeProperties(m.properties), m.expiresAt, m.origin);
        break;
      }
      case 'will': {
        const w = c.will;
        if (w === null) {
          ops.push(Op.WillGone, c.clientId);
          break;
        }
        const m = w.message;
        ops.push(Op.Will, w.clientId, m.topic);
        payload(m.payload);
        ops.push(flagsOf(m), encodeProperties(m.properties), m.expiresAt, m.origin, w.publishAt);
        break;
      }
    }
  }
  // its own memory (not the shared pool of small Buffers), so it can be transferred
  const all = Buffer.allocUnsafeSlow(bytes);
  let at = 0;
  for (const p of payloads) at += p.copy(all, at);
  return { ops, payloads: all.buffer as ArrayBuffer };
}
