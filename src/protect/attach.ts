/** Joins a broker and its trusted component: protected topics, the `$tee/` relay, enrolled-only subscriptions. */
import type { Logger } from 'pino';
import type { AuthHooks, ClientInfo, MaybePromise } from '../auth/hooks.js';
import type { Broker } from '../broker/broker.js';
import { makeMessage } from '../broker/message.js';
import type { TrustedComponent } from '../tee-client/host.js';
import { canHoldKey, ProtectedTopics } from './protected-topics.js';
import { TeeRelay } from './tee-relay.js';
import { TEE_TOPIC_PREFIX } from '../mqtt/tee-topics.js';

export interface Protection {
  readonly topics: ProtectedTopics;
  readonly relay: TeeRelay;
}

/**
 * A subscription whose filter lies wholly inside protected topics is refused to an identity that
 * has no enrolled key (v5: SUBACK 0x87): it could never read anything there.
 */
class EnrolledSubscribers implements AuthHooks {
  constructor(
    private readonly inner: AuthHooks,
    private readonly topics: ProtectedTopics,
    private readonly tee: TrustedComponent,
  ) {}

  authenticate(c: Parameters<AuthHooks['authenticate']>[0]): ReturnType<AuthHooks['authenticate']> {
    return this.inner.authenticate(c);
  }

  authorizePublish(client: ClientInfo, topic: string): MaybePromise<boolean> {
    return this.inner.authorizePublish(client, topic);
  }

  authorizeSubscribe(client: ClientInfo, filter: string): MaybePromise<boolean> {
    const allowed = this.inner.authorizeSubscribe(client, filter);
    if (!this.topics.coversFilter(filter)) return allowed;
    const identity = client.identity ?? '';
    // asking the trusted component about an identity no envelope can name would be a bad request
    if (!canHoldKey(identity)) return false;
    return Promise.resolve(allowed).then((ok) => ok && this.tee.isEnrolled(identity));
  }
}

export function attachProtection(broker: Broker, tee: TrustedComponent, filters: readonly string[], log: Logger): Protection {
  const topics = new ProtectedTopics(filters, tee, log);
  const relay = new TeeRelay(tee, log);
  broker.deliveryStage = topics;
  broker.publishGate = (client, message) => topics.check(client, message);
  broker.auth = new EnrolledSubscribers(broker.auth, topics, tee);
  broker.interceptor = (client, message) => {
    if (!message.topic.startsWith(TEE_TOPIC_PREFIX)) return false;
    if (!TeeRelay.owns(message.topic)) {
      // Only the broker answers on `$tee/`: a client's message there is dropped, not routed.
      log.warn({ clientId: client.clientId, topic: message.topic }, 'dropped a client PUBLISH to a reserved $tee/ topic');
      return true;
    }
    relay.handle(
      {
        clientId: client.clientId,
        topic: message.topic,
        payload: message.payload,
        responseTopic: message.properties?.responseTopic,
        correlationData: message.properties?.correlationData,
      },
      (topic, payload, correlationData) => {
        const reply = makeMessage(topic, payload, 1, false, correlationData ? { correlationData } : undefined, '');
        // Only the requester gets the answer, whatever response topic it named.
        broker.route(reply, client.clientId);
      },
    );
    return true;
  };
  return { topics, relay };
}
