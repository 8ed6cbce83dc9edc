/** Joins a broker and its trusted component: protected topics, the `$tee/` relay, enrolled-only subscriptions. */
import type { Logger } from 'pino';
import type { ClientInfo, MaybePromise } from '../auth/hooks.js';
import { CONSUME, type BrokerExtension, type PublishDecision, type PublishingClient } from '../broker/extension.js';
import { makeMessage, type Message } from '../broker/message.js';
import type { TrustedComponent } from '../tee-client/host.js';
import { canHoldKey, ProtectedTopics, type HeaderLength } from './protected-topics.js';
import { TeeRelay } from './tee-relay.js';
import { TEE_TOPIC_PREFIX } from '../mqtt/tee-topics.js';

export interface Protection {
  readonly topics: ProtectedTopics;
  readonly relay: TeeRelay;
  /** What the broker is built with (`new Broker(config, log, { extension })`). */
  readonly extension: BrokerExtension;
}

/**
 * The broker's extension for protected topics:
 * - a PUBLISH to `$tee/` is the relay's (or dropped), never routed;
 * - a PUBLISH to a protected topic must carry a sender-wrapped envelope from its own sender;
 * - a subscription whose filter lies wholly inside protected topics is refused to an identity that
 *   has no enrolled key (v5: SUBACK 0x87): it could never read anything there;
 * - the stage re-wraps each protected message for its recipients.
 */
class ProtectionExtension implements BrokerExtension<HeaderLength> {
  constructor(
    readonly stage: ProtectedTopics,
    private readonly relay: TeeRelay,
    private readonly tee: TrustedComponent,
    private readonly log: Logger,
  ) {}

  onPublish(client: PublishingClient, message: Message): PublishDecision<HeaderLength> {
    if (message.topic.startsWith(TEE_TOPIC_PREFIX)) return this.relayed(client, message);
    return this.stage.check(client, message);
  }

  authorizeSubscribe(client: ClientInfo, filter: string, allowed: MaybePromise<boolean>): MaybePromise<boolean> {
    if (!this.stage.coversFilter(filter)) return allowed;
    const identity = client.identity ?? '';
    // asking the trusted component about an identity no envelope can name would be a bad request
    if (!canHoldKey(identity)) return false;
    return Promise.resolve(allowed).then((ok) => ok && this.tee.isEnrolled(identity));
  }

  private relayed(client: PublishingClient, message: Message): PublishDecision<never> {
    if (!TeeRelay.owns(message.topic)) {
      // Only the broker answers on `$tee/`: a client's message there is dropped, not routed.
      this.log.warn({ clientId: client.clientId, topic: message.topic }, 'dropped a client PUBLISH to a reserved $tee/ topic');
      return CONSUME;
    }
    this.relay.handle(
      {
        clientId: client.clientId,
        topic: message.topic,
        payload: message.payload,
        responseTopic: message.properties?.responseTopic,
        correlationData: message.properties?.correlationData,
      },
      (topic, payload, correlationData) => {
        // Only the requester gets the answer, whatever response topic it named.
        client.reply(makeMessage(topic, payload, 1, false, correlationData ? { correlationData } : undefined, ''));
      },
    );
    return CONSUME;
  }
}

export function makeProtection(tee: TrustedComponent, filters: readonly string[], log: Logger): Protection {
  const topics = new ProtectedTopics(filters, tee, log);
  const relay = new TeeRelay(tee, log);
  return { topics, relay, extension: new ProtectionExtension(topics, relay, tee, log) };
}
