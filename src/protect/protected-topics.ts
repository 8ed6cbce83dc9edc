/**
 * Protected topics on the broker side. The broker never opens an envelope: it checks the layout of
 * a PUBLISH (no crypto), and for each message makes ONE call to the trusted component with every
 * recipient, then sends each recipient the shared payload ciphertext behind its own header.
 */
import type { Logger } from 'pino';
import type { DeliveryStage, StagedPayloads, Target } from '../broker/broker.js';
import type { Message } from '../broker/message.js';
import { Reason } from '../mqtt/reason-codes.js';
import { filterCovers, topicMatches } from '../mqtt/topic.js';
import { KIND_SENDER, parseHeader, splitEnvelope } from '../tee/envelope-layout.js';
import type { TrustedComponent } from '../tee/host.js';

export interface ProtectionCounters {
  /** Protected PUBLISHes accepted for routing. */
  accepted: number;
  /** Refused because the payload is not a sender-wrapped envelope (plaintext, truncated...). */
  refusedMalformed: number;
  /** Refused because the envelope names another sender than the connection's identity. */
  refusedSender: number;
  /** Calls to the trusted component (one per routed message). */
  rewrapCalls: number;
  recipientsWrapped: number;
  /** Recipients the trusted component refused (no key, revoked, no read grant). */
  recipientsRefused: number;
  /** Messages the trusted component refused whole (tampered header, unknown sender...). */
  messagesRefused: number;
}

/** What the protection layer needs to know of a publishing client. */
export interface Publisher {
  readonly identity: string;
  readonly clientId: string;
}

const CACHE_LIMIT = 10_000;

export class ProtectedTopics implements DeliveryStage {
  readonly counters: ProtectionCounters = {
    accepted: 0,
    refusedMalformed: 0,
    refusedSender: 0,
    rewrapCalls: 0,
    recipientsWrapped: 0,
    recipientsRefused: 0,
    messagesRefused: 0,
  };
  /** topic → protected?, so the filter list is matched once per topic, not once per message. */
  private readonly cache = new Map<string, boolean>();

  constructor(
    readonly filters: readonly string[],
    private readonly tee: TrustedComponent,
    private readonly log: Logger,
  ) {}

  applies(topic: string): boolean {
    let hit = this.cache.get(topic);
    if (hit === undefined) {
      hit = this.filters.some((f) => topicMatches(f, topic));
      if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
      this.cache.set(topic, hit);
    }
    return hit;
  }

  /** Whether every topic a subscription to `filter` can receive is protected. */
  coversFilter(filter: string): boolean {
    return this.filters.some((f) => filterCovers(f, filter));
  }

  /**
   * PUBLISH check: a protected topic takes only a sender-wrapped envelope from its own sender.
   * Returns a reason code; >= 0x80 refuses the message (it is never forwarded).
   */
  check(publisher: Publisher, message: Pick<Message, 'topic' | 'payload' | 'retain'>): number {
    const { topic, payload } = message;
    if (!this.applies(topic)) return Reason.Success;
    // An empty retained PUBLISH clears the topic's retained message; it carries nothing to protect.
    if (payload.length === 0 && message.retain) return Reason.Success;
    let sender: string;
    try {
      const header = parseHeader(splitEnvelope(payload).header);
      if (header.kind !== KIND_SENDER) throw new Error('not a sender-wrapped header');
      sender = header.sender;
    } catch (err) {
      this.counters.refusedMalformed++;
      this.log.warn({ clientId: publisher.clientId, topic, reason: (err as Error).message }, 'refused a PUBLISH to a protected topic: not a protected envelope');
      return Reason.PayloadFormatInvalid;
    }
    if (sender !== publisher.identity) {
      this.counters.refusedSender++;
      this.log.warn({ clientId: publisher.clientId, identity: publisher.identity, sender, topic }, 'refused a PUBLISH to a protected topic: envelope names another sender');
      return Reason.NotAuthorized;
    }
    this.counters.accepted++;
    return Reason.Success;
  }

  async transform(message: Message, targets: readonly Target[]): Promise<StagedPayloads> {
    const out: (Buffer | null)[] = new Array<Buffer | null>(targets.length).fill(null);
    // a retained-message clear: nothing to deliver
    if (message.payload.length === 0) return { body: message.payload, prefixes: out };
    const { header, payload } = splitEnvelope(message.payload);
    // Every recipient's envelope is `u16 length || its header || the shared ciphertext`: only the
    // first two parts are per recipient; the ciphertext is written to each socket as is.
    const body = message.payload.subarray(message.payload.length - payload.length);
    const sender = parseHeader(header).sender;
    // Sessions without a usable identity (none, or over the 255 bytes an envelope can name) cannot
    // hold a key: they get nothing, without asking — and cannot spoil the batch for the others.
    const recipients: string[] = [];
    const slots: number[] = [];
    for (let i = 0; i < targets.length; i++) {
      const identity = targets[i]!.session.identity;
      if (identity.length > 0 && Buffer.byteLength(identity) <= 255) {
        recipients.push(identity);
        slots.push(i);
      } else this.counters.recipientsRefused++;
    }
    if (recipients.length === 0) return { body, prefixes: out };
    this.counters.rewrapCalls++;
    let results;
    try {
      results = await this.tee.rewrap(header, message.topic, sender, recipients);
    } catch (err) {
      this.counters.messagesRefused++;
      throw err;
    }
    for (let k = 0; k < results.length; k++) {
      const r = results[k]!;
      if (r.header) {
        const prefix = Buffer.allocUnsafe(2 + r.header.length);
        prefix.writeUInt16BE(r.header.length, 0);
        prefix.set(r.header, 2);
        out[slots[k]!] = prefix;
        this.counters.recipientsWrapped++;
      } else {
        this.counters.recipientsRefused++;
        this.log.debug({ topic: message.topic, recipient: r.recipient, refusal: r.refusal }, 'trusted component refused a recipient');
      }
    }
    return { body, prefixes: out };
  }
}
