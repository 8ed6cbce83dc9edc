// Request/response with the trusted component over MQTT itself (relayed by the broker as opaque
// bytes, see src/protect/tee-relay.ts). The client subscribes to its response topic before it asks.
// MQTT 5 carries Response Topic + Correlation Data; v3.1.1 gets answers on $tee/response/{client id}.
import type { IPublishPacket, MqttClient } from 'mqtt';
import { equalBytes, fromUtf8 } from '../envelope/bytes.js';
import { randomBytes } from './crypto/webcrypto.js';
import { wire } from './wire.js';
import { TEE_REQUEST_TOPICS, TEE_STATUS_OK, v311ResponseTopic, type TeeRequestKind } from '../mqtt/tee-topics.js';



/** The relay or the trusted component failed to answer (not a signed refusal: those are EnrolmentErrors). */
export class TeeRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TeeRequestError';
  }
}

export type TeeRequest = (kind: TeeRequestKind, body: Uint8Array) => Promise<Uint8Array>;

/**
 * Subscribes to this client's response topic, runs `work` with a function that sends one request
 * at a time and resolves with the answer's bytes, then unsubscribes.
 */
export async function withTeeRequests<T>(client: MqttClient, timeoutMs: number, work: (request: TeeRequest) => Promise<T>): Promise<T> {
  const clientId = client.options.clientId ?? '';
  const topic = v311ResponseTopic(clientId);
  const granted = await client.subscribeAsync(topic, { qos: 1 });
  if (granted.some((g) => g.qos >= 0x80)) throw new TeeRequestError(`the broker refused the subscription to ${topic}`);
  try {
    return await work((kind, body) => ask(client, topic, kind, body, timeoutMs));
  } finally {
    if (client.connected) await client.unsubscribeAsync(topic).catch(() => undefined);
  }
}

function ask(client: MqttClient, topic: string, kind: TeeRequestKind, body: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  const v5 = client.options.protocolVersion === 5;
  const correlation = randomBytes(16);
  return new Promise((resolve, reject) => {
    const done = (err: Error | undefined, answer?: Uint8Array): void => {
      clearTimeout(timer);
      client.removeListener('message', onMessage);
      client.removeListener('close', onClose);
      if (err) reject(err);
      else resolve(answer!);
    };
    const onMessage = (t: string, payload: Buffer, packet: IPublishPacket): void => {
      if (t !== topic) return;
      const cd = packet.properties?.correlationData;
      if (v5 && (cd === undefined || !equalBytes(cd, correlation))) return; // someone else's answer
      if (payload.length === 0) return done(new TeeRequestError('empty answer from the trusted component relay'));
      if (payload[0] === TEE_STATUS_OK) return done(undefined, payload.subarray(1));
      let line: string;
      try {
        line = fromUtf8(payload.subarray(1));
      } catch {
        line = 'unreadable error';
      }
      done(new TeeRequestError(`trusted component: ${line}`));
    };
    const onClose = (): void => done(new TeeRequestError(`connection closed before the trusted component answered the ${kind} request`));
    const timer = setTimeout(() => done(new TeeRequestError(`no answer to the ${kind} request from the trusted component within ${timeoutMs} ms (does the broker relay $tee/ requests?)`)), timeoutMs);
    client.on('message', onMessage);
    client.on('close', onClose);
    const properties = v5 ? { responseTopic: topic, correlationData: wire(correlation) } : undefined;
    client.publish(TEE_REQUEST_TOPICS[kind], wire(body), { qos: 1, properties }, (err) => {
      if (err) done(new TeeRequestError(`the broker refused the ${kind} request: ${err.message}`));
    });
  });
}
