/** The client behind `pub`/`sub`: plain MQTT.js, or the protected SDK when a key file is given. */
import { existsSync } from 'node:fs';
import mqtt, { type ISubscriptionGrant, type MqttClient } from 'mqtt';
import { connectProtected, ProtectedMessageError, type ProtectedClient } from '../client/index.js';
import { clientOptions, pinFlags, type ClientFlags } from './client-options.js';

export interface CliClient {
  publish(topic: string, payload: Buffer, opts: { qos: 0 | 1 | 2; retain: boolean }): Promise<void>;
  subscribe(filters: string[], qos: 0 | 1 | 2): Promise<void>;
  onMessage(listener: (topic: string, payload: Buffer, retained: boolean) => void): void;
  onError(listener: (err: Error) => void): void;
  end(): Promise<void>;
}

/** Resolves once CONNACK arrived; rejects with one readable line otherwise. */
export function connectMqtt(url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  return new Promise((ok, fail) => {
    const client = mqtt.connect(url, options);
    const onError = (err: Error): void => {
      client.end(true);
      const code = (err as NodeJS.ErrnoException).code;
      fail(new Error(`cannot connect to ${url}: ${code ?? err.message}`));
    };
    client.once('error', onError);
    client.once('close', () => onError(new Error('connection closed by the broker')));
    client.once('connect', () => {
      client.removeListener('error', onError);
      client.removeAllListeners('close');
      ok(client);
    });
  });
}

function checkGranted(granted: ISubscriptionGrant[]): void {
  const refused = granted.filter((g) => g.qos >= 0x80);
  if (refused.length > 0) throw new Error(`subscription refused for ${refused.map((g) => g.topic).join(', ')} (reason 0x${refused[0]!.qos.toString(16)})`);
}

function wrapPlain(client: MqttClient): CliClient {
  return {
    async publish(topic, payload, opts) {
      await client.publishAsync(topic, payload, opts);
    },
    async subscribe(filters, qos) {
      checkGranted(await client.subscribeAsync(filters, { qos }));
    },
    onMessage(listener) {
      client.on('message', (topic, payload, packet) => listener(topic, payload, packet.retain));
    },
    onError(listener) {
      client.on('error', listener);
    },
    async end() {
      await client.endAsync();
    },
  };
}

/** With --key-file every topic given with -t is protected: sealed on publish, opened on receive. */
function wrapProtected(client: ProtectedClient): CliClient {
  return {
    async publish(topic, payload, opts) {
      if (!client.isProtected(topic)) client.protect(topic);
      await client.publishAsync(topic, payload, opts);
    },
    async subscribe(filters, qos) {
      client.protect(...filters);
      checkGranted(await client.subscribeAsync(filters, { qos }));
    },
    onMessage(listener) {
      client.on('message', (topic, payload, packet) => listener(topic, Buffer.from(payload), packet.retain));
    },
    onError(listener) {
      client.on('error', (err, topic) => {
        const rejected = err instanceof ProtectedMessageError && topic !== undefined;
        listener(rejected ? new Error(`rejected a message on ${topic}: ${err.code}: ${err.message}`) : err);
      });
    },
    async end() {
      await client.endAsync();
    },
  };
}

/** `protectedOptions` apply only with --key-file (e.g. sub's --max-age). */
export async function openClient(flags: ClientFlags, protectedOptions: { maxAgeSeconds?: number } = {}): Promise<CliClient> {
  const { url, options } = clientOptions(flags);
  if (flags.keyFile === undefined) return wrapPlain(await connectMqtt(url, options));
  if (!existsSync(flags.keyFile)) throw new Error(`key file ${flags.keyFile} does not exist; enrol first with mqt-tz enroll`);
  // -i defaults to the identity the key file was enrolled under
  return wrapProtected(await connectProtected(url, { ...options, ...protectedOptions, ...pinFlags(flags), identity: flags.id, teeFingerprint: flags.teeFingerprint, keyFile: flags.keyFile }));
}
