/**
 * What a deployment adds to the broker core, handed to the `Broker` constructor in one object
 * (the protected topics of src/protect are one). The broker calls it at fixed points of a
 * message's way; nothing outside src/broker assigns a hook on a running broker.
 *
 * - A PUBLISH the auth hooks allowed goes to `onPublish`, which routes, consumes or refuses it.
 * - A SUBSCRIBE the auth hooks allowed may still be refused by `authorizeSubscribe`.
 * - `stage`, between routing and delivery, may give each recipient a payload of its own. A message
 *   goes through it when it is routed to connected sessions, when it is retained and a new
 *   subscription receives it, and when a session that was offline resumes: deliveries queued
 *   meanwhile (or restored from the durable store) keep the publisher's form until then, so they
 *   are formed for the subscriber as it is when it comes back. See stage-runner.ts.
 */
import type { ClientInfo, MaybePromise } from '../auth/hooks.js';
import type { Message } from './message.js';
import type { DeliveryStage } from './stage-runner.js';

/** The client whose PUBLISH `onPublish` decides. */
export interface PublishingClient {
  readonly clientId: string;
  /** The identity other layers know the client by (see `identityFrom`). */
  readonly identity: string;
  /** Routes `message` to this client's session alone (an answer to a request it published). */
  reply(message: Message): void;
}

/**
 * What becomes of a PUBLISH: routed as usual, consumed by the extension, or refused with a reason
 * code (>= 0x80). A routed message may carry what `onPublish` learnt of its payload (`Parsed`),
 * handed to the stage when the message is routed, so that the payload is parsed once.
 */
export type PublishDecision<Parsed = unknown> =
  | { readonly action: 'route'; readonly parsed?: Parsed }
  | { readonly action: 'consume' }
  | { readonly action: 'refuse'; readonly reason: number };

export const ROUTE: PublishDecision<never> = Object.freeze({ action: 'route' });
/** Acknowledged as a success and not routed (the extension answered it). */
export const CONSUME: PublishDecision<never> = Object.freeze({ action: 'consume' });

export function refuse(reason: number): PublishDecision<never> {
  return { action: 'refuse', reason };
}

export interface BrokerExtension<Parsed = unknown> {
  /** Runs before the message is retained or routed; a refusal is the PUBACK/PUBREC reason (v5). */
  onPublish?(client: PublishingClient, message: Message): PublishDecision<Parsed>;
  /** `allowed` is the auth hooks' answer for `filter`; the extension may only narrow it. */
  authorizeSubscribe?(client: ClientInfo, filter: string, allowed: MaybePromise<boolean>): MaybePromise<boolean>;
  readonly stage?: DeliveryStage<Parsed>;
}
