// A broker with protected topics and its trusted component, for client SDK and CLI tests:
// enrolment tokens from the data folder's operator key, key files in the temp data folder.
import { join } from 'node:path';
import { defaultTeeConfig } from '../../src/config.js';
import { issueToken, loadOperatorKey, OPERATOR_KEY_FILE } from '../../src/protect/operator.js';
import { connectProtected, type NodeProtectedClientOptions, type ProtectedClient } from '../../src/client/index.js';
import { toBase64Url } from '../../src/envelope/bytes.js';
import type { TrustedComponent } from '../../src/tee-client/host.js';
import type { Grants } from '../../src/envelope/messages.js';
import { startTestBroker, WAIT_MS, withTimeout, type TestBroker } from './broker.js';

export const PROTECTED = 'secure/#';

export interface ProtectedBroker extends TestBroker {
  tee: TrustedComponent;
  fingerprint: string;
  /** An operator-signed enrolment token for `identity` granting the protected topics, base64url as `mqt-tz token` prints it. */
  token(identity: string, grants?: Grants): string;
  keyFile(identity: string): string;
  /** connectProtected against the plain listener, closed with the broker. */
  client(identity: string, options?: Partial<NodeProtectedClientOptions>): Promise<ProtectedClient>;
  /** Enrols `identity` (key file in the data folder) and returns its connected client. */
  enrolled(identity: string, options?: Partial<NodeProtectedClientOptions>): Promise<ProtectedClient>;
}

export async function startProtectedBroker(backend: 'inline' | 'process' = 'inline', tune?: Parameters<typeof startTestBroker>[0]): Promise<ProtectedBroker> {
  const base = await startTestBroker((c) => {
    c.protect = [PROTECTED];
    c.tee = { ...defaultTeeConfig(), backend, cacheSize: 64 };
    tune?.(c);
  });
  const tee = base.running.tee;
  if (tee === undefined) throw new Error('the broker started without its trusted component');
  const fingerprint = (await tee.info()).fingerprint;
  const operator = loadOperatorKey(join(base.dataDir, OPERATOR_KEY_FILE)); // the development key the broker created on first start
  const clients: ProtectedClient[] = [];
  const pb: ProtectedBroker = {
    ...base,
    tee,
    fingerprint,
    token: (identity, grants = { publish: [PROTECTED], read: [PROTECTED] }) => toBase64Url(issueToken(operator, identity, 600, grants)),
    keyFile: (identity) => join(base.dataDir, `${identity}.key`),
    async client(identity, options = {}) {
      const c = await connectProtected(base.url, { identity, teeFingerprint: fingerprint, keyFile: pb.keyFile(identity), protectedTopics: [PROTECTED], reconnectPeriod: 0, ...options });
      clients.push(c);
      return c;
    },
    enrolled: (identity, options = {}) => pb.client(identity, { token: pb.token(identity), ...options }),
    async close() {
      await Promise.allSettled(clients.map((c) => c.endAsync(true)));
      await base.close();
    },
  };
  return pb;
}

export type Event =
  | { kind: 'message'; topic: string; text: string; sender: string | undefined; protected: boolean; retain: boolean }
  | { kind: 'error'; topic: string | undefined; code: string; error: Error };

/** Every message and error a ProtectedClient emits, in order; `next()` awaits the next one. */
export class Events {
  readonly all: Event[] = [];
  private read = 0;
  private wake: (() => void) | undefined;

  constructor(client: ProtectedClient) {
    client.on('message', (topic, payload, packet, info) => this.push({ kind: 'message', topic, text: Buffer.from(payload).toString(), sender: info.sender, protected: info.protected, retain: packet.retain }));
    client.on('error', (error, topic) => this.push({ kind: 'error', topic, code: (error as Error & { code?: string }).code ?? '', error }));
  }

  private push(e: Event): void {
    this.all.push(e);
    this.wake?.();
  }

  async next(what: string): Promise<Event> {
    if (this.read >= this.all.length) {
      await withTimeout(new Promise<void>((resolve) => (this.wake = resolve)), WAIT_MS, what);
      this.wake = undefined;
    }
    return this.all[this.read++]!;
  }
}

/**
 * Enrols `from` and `to` on `broker`, subscribes `to` to `topic` and publishes `text` from `from`
 * (QoS 1): the first event `to` sees, for the caller to check.
 */
export async function exchange(
  broker: { enrolled(identity: string): Promise<ProtectedClient> }, from: string, to: string, topic: string, text: string,
): Promise<Event> {
  const [publisher, subscriber] = await Promise.all([broker.enrolled(from), broker.enrolled(to)]);
  const events = new Events(subscriber);
  await subscriber.subscribeAsync(topic, { qos: 1 });
  await publisher.publishAsync(topic, text, { qos: 1 });
  return events.next(`the message for ${to}`);
}
