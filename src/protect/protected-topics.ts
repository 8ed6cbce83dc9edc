/**
 * Protected topics on the broker side. The broker never opens an envelope: it checks the layout of
 * a PUBLISH (no crypto), and for each message makes ONE call to the trusted component, then sends
 * each recipient the shared payload ciphertext behind its own header.
 *
 * A protected PUBLISH (docs/architecture.md has the whole walk):
 *   handlers/publish.ts authorized -> attach.ts ProtectionExtension.onPublish -> check (here):
 *     sender-wrapped envelope from its own sender, else refused; routed with its header length
 *   broker.ts Broker.route -> stage-runner.ts StageRunner.route (offline: queued as published)
 *     -> StageRunner.enter (MessageInStage, in its publisher's lane) -> transform (here)
 *   ask: RewrapRequest -> tee-client TrustedComponent.groupRewrapTo (batched, one call)
 *   RewrapRequest.rewrapped -> leads (here): a ProtectedLead per recipient
 *     -> MessageInStage.stageDone -> PublisherOrder -> Broker.deliverTo -> Session.deliver
 *     -> Connection.sendPublish: header, lead (ProtectedLead.writeTo), shared ciphertext
 *
 * The call names a recipient group (src/tee/groups.ts) rather than listing every recipient: the
 * trusted component wraps the message's data key once, under the group's key, and each recipient's
 * header is that shared part followed by its own member part, formed once per group. Groups are per
 * topic; a message whose recipients the topic's group does not cover forms a new one.
 */
import type { Logger } from 'pino';
import type { DeliveryStage, RecipientPayloads, StageReceiver, Target } from '../broker/broker.js';
import type { DeliveryLead, Message } from '../broker/message.js';
import { ROUTE, refuse, type PublishDecision } from '../broker/extension.js';
import { Reason } from '../mqtt/reason-codes.js';
import { ProtectedLead } from './protected-lead.js';
import { filterCovers, topicMatches } from '../mqtt/topic.js';
import { utf8Name } from '../envelope/bytes.js';
import { KIND_SENDER, envelopeHeaderLength, isSenderHeaderOf, parseHeader, splitEnvelope } from '../envelope/envelope-layout.js';
import type { FormedGroup, RewrapReceiver, TeeError, TrustedComponent } from '../tee-client/host.js';

export interface ProtectionCounters {
  /** Protected PUBLISHes accepted for routing. */
  accepted: number;
  /** Refused because the payload is not a sender-wrapped envelope (plaintext, truncated...). */
  refusedMalformed: number;
  /** Refused because the envelope names another sender than the connection's identity. */
  refusedSender: number;
  /** Re-wrap calls to the trusted component (one per routed message, a second one when its group had to be formed again). */
  rewrapCalls: number;
  /** Recipient groups formed (a new topic, new subscribers, or a stale group). */
  groupsFormed: number;
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

/** A topic's recipient group as the broker knows it. */
interface HostGroup {
  readonly handle: number;
  readonly members: readonly string[];
  /** member identity -> index in `members` */
  readonly index: ReadonlyMap<string, number>;
  /** Resolves once the trusted component answered the formation. */
  readonly formed: Promise<FormedGroup>;
  /** The formation's answer once it came: messages then wait for nothing else. */
  ready?: FormedGroup;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function covers(g: HostGroup, recipients: readonly string[]): boolean {
  if (sameList(g.members, recipients)) return true;
  for (const r of recipients) if (!g.index.has(r)) return false;
  return true;
}

/** An identity an envelope can name (1-255 bytes of UTF-8): only such a one can hold an enrolled key. */
export function canHoldKey(identity: string): boolean {
  // at most 3 UTF-8 bytes per UTF-16 unit: only long identities need counting
  return identity.length > 0 && (identity.length <= 85 || Buffer.byteLength(identity) <= 255);
}

/** What `check` learnt of an accepted envelope and `transform` uses: its header's length. */
export type HeaderLength = number;

export class ProtectedTopics implements DeliveryStage<HeaderLength> {
  readonly counters: ProtectionCounters = {
    accepted: 0,
    refusedMalformed: 0,
    refusedSender: 0,
    rewrapCalls: 0,
    groupsFormed: 0,
    recipientsWrapped: 0,
    recipientsRefused: 0,
    messagesRefused: 0,
  };
  /** topic → protected?, so the filter list is matched once per topic, not once per message. */
  private readonly cache = new Map<string, boolean>();
  /** topic → its current recipient group. */
  private readonly groups = new Map<string, HostGroup>();
  private nextHandle = 1;

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
   * PUBLISH check: a protected topic takes only a sender-wrapped envelope from its own sender. A
   * refused message (reason >= 0x80) is never forwarded; an accepted one is routed with its
   * envelope's header length, so that `transform` does not read the envelope again.
   */
  check(publisher: Publisher, message: Pick<Message, 'topic' | 'payload' | 'retain'>): PublishDecision<HeaderLength> {
    const { topic, payload } = message;
    if (!this.applies(topic)) return ROUTE;
    // An empty retained PUBLISH clears the topic's retained message; it carries nothing to protect.
    if (payload.length === 0 && message.retain) return ROUTE;
    let sender: string;
    let headerLength: number;
    try {
      headerLength = envelopeHeaderLength(payload);
      // the common case, read in place: a well-formed header naming this publisher
      if (isSenderHeaderOf(payload, utf8Name(publisher.identity), 2, headerLength)) {
        this.counters.accepted++;
        return { action: 'route', parsed: headerLength };
      }
      const header = parseHeader(payload.subarray(2, 2 + headerLength));
      if (header.kind !== KIND_SENDER) throw new Error('not a sender-wrapped header');
      sender = header.sender;
    } catch (err) {
      this.counters.refusedMalformed++;
      this.log.warn({ clientId: publisher.clientId, topic, reason: (err as Error).message }, 'refused a PUBLISH to a protected topic: not a protected envelope');
      return refuse(Reason.PayloadFormatInvalid);
    }
    if (sender !== publisher.identity) {
      this.counters.refusedSender++;
      this.log.warn({ clientId: publisher.clientId, identity: publisher.identity, sender, topic }, 'refused a PUBLISH to a protected topic: envelope names another sender');
      return refuse(Reason.NotAuthorized);
    }
    this.counters.accepted++;
    return { action: 'route', parsed: headerLength };
  }

  /**
   * Asks the trusted component for the shared header part of one message (it ends with the group
   * id), for a group covering its recipients; the answer goes to the request.
   */
  ask(request: RewrapRequest): void {
    const topic = request.message.topic;
    const group = this.groupFor(topic, request.recipients);
    request.group = group;
    this.counters.rewrapCalls++;
    this.tee.groupRewrapTo(group.handle, request.header, topic, request);
  }

  /** A group the trusted component no longer knows or holds stale: the next message forms a new one. */
  forget(topic: string, group: HostGroup): void {
    if (this.groups.get(topic) === group) this.groups.delete(topic);
  }

  /**
   * The topic's group if it covers every recipient, else a new one. A new group keeps the old
   * members too while that at most doubles it, so recipients that take turns (shared subscriptions,
   * clients coming and going) do not form a group per message.
   */
  private groupFor(topic: string, recipients: readonly string[]): HostGroup {
    const old = this.groups.get(topic);
    if (old !== undefined && covers(old, recipients)) return old;
    const members = new Set(recipients);
    if (old !== undefined && old.members.length + members.size <= 2 * members.size + 16) for (const m of old.members) members.add(m);
    const list = [...members];
    const handle = this.nextHandle;
    this.nextHandle = (this.nextHandle + 1) >>> 0 || 1;
    const group: HostGroup = { handle, members: list, index: new Map(list.map((m, i) => [m, i])), formed: this.tee.formGroup(handle, topic, list) };
    this.counters.groupsFormed++;
    group.formed.then(
      (formed) => {
        group.ready = formed;
      },
      () => {
        if (this.groups.get(topic) === group) this.groups.delete(topic);
      },
    );
    if (this.groups.size >= CACHE_LIMIT && old === undefined) this.groups.clear();
    this.groups.set(topic, group);
    return group;
  }

  /** `headerLength`: from `check`, when the message comes straight from its publisher (else the envelope is read here). */
  transform(message: Message, targets: readonly Target[], out: StageReceiver, headerLength?: HeaderLength): void {
    const leads = new Array<DeliveryLead | null>(targets.length).fill(null);
    const payload = message.payload;
    // a retained-message clear: nothing to deliver
    if (payload.length === 0) return later(out, undefined, { body: payload, leads });
    let header: Uint8Array;
    let body: Buffer;
    try {
      // Every recipient's envelope is `u16 length || its header || the shared ciphertext`: only the
      // first two parts are per recipient; the ciphertext is written to each socket as is.
      if (headerLength !== undefined) {
        header = payload.subarray(2, 2 + headerLength);
        body = payload.subarray(2 + headerLength);
      } else ({ header, payload: body } = splitEnvelope(payload));
    } catch (err) {
      // a payload that no longer splits (the arrival check passed it): refused like a bad answer
      this.counters.messagesRefused++;
      return later(out, err as Error, undefined);
    }
    // Sessions without a usable identity (none, or over the 255 bytes an envelope can name) cannot
    // hold a key: they get nothing, without asking — and cannot spoil the batch for the others.
    const recipients: string[] = [];
    let slots: number[] | undefined;
    for (let i = 0; i < targets.length; i++) {
      const identity = targets[i]!.session.identity;
      if (canHoldKey(identity)) {
        if (slots !== undefined) slots.push(i);
        recipients.push(identity);
      } else {
        // from the first one left out on, recipient k is no longer target k
        slots ??= Array.from({ length: recipients.length }, (_, k) => k);
        this.counters.recipientsRefused++;
      }
    }
    if (recipients.length === 0) return later(out, undefined, { body, leads });
    // the sender is the one the header names: check() held it to the publisher's identity on arrival
    this.ask(new RewrapRequest(this, message, header, recipients, slots, body, leads, out));
  }

  /**
   * What each recipient gets once the shared part came: its header is that part followed by its
   * member part (formed with the group, no copy per message), written straight into its PUBLISH.
   */
  leads(s: RewrapRequest, part: Uint8Array, group: HostGroup, formed: FormedGroup): RecipientPayloads {
    const members = group.members;
    const recipients = s.recipients;
    const out = s.leads;
    for (let k = 0; k < recipients.length; k++) {
      const r0 = recipients[k]!;
      // the group was usually formed from this very list: same place, no lookup
      const at = members[k] === r0 ? k : group.index.get(r0);
      const r = at === undefined ? undefined : formed.members[at];
      if (r?.header !== undefined) {
        out[s.slots === undefined ? k : s.slots[k]!] = new ProtectedLead(part, r.header);
        this.counters.recipientsWrapped++;
      } else {
        this.counters.recipientsRefused++;
        this.log.debug({ topic: s.message.topic, recipient: r0, refusal: r?.refusal ?? 'not-in-group' }, 'trusted component refused a recipient');
      }
    }
    return { body: s.body, leads: out };
  }
}

function later(out: StageReceiver, err: Error | undefined, payloads: RecipientPayloads | undefined): void {
  process.nextTick(() => out.stageDone(err, payloads));
}

/**
 * One protected message between routing and its recipients: the trusted component's answer comes
 * here, and the message leaves with each recipient's lead or its refusal. One object per message
 * instead of a Promise chain.
 */
class RewrapRequest implements RewrapReceiver {
  group!: HostGroup;
  private retried = false;

  constructor(
    private readonly topics: ProtectedTopics,
    readonly message: Message,
    readonly header: Uint8Array,
    readonly recipients: readonly string[],
    /** Target index of each recipient; undefined when recipient k is target k. */
    readonly slots: readonly number[] | undefined,
    readonly body: Buffer,
    readonly leads: (DeliveryLead | null)[],
    private readonly out: StageReceiver,
  ) {}

  rewrapped(part: Uint8Array): void {
    const group = this.group;
    if (group.ready !== undefined) this.finish(part, group, group.ready);
    // (group.formed has its own rejection handler, so waiting for it here loses nothing)
    else group.formed.then((formed) => this.finish(part, group, formed), (err: unknown) => this.fail(err as Error));
  }

  refused(err: TeeError): void {
    // A group the trusted component no longer knows or holds stale (policy change, revocation, key
    // rotation) is formed again, once.
    if (!this.retried && (err.code === 'group-unknown' || err.code === 'group-stale')) {
      this.retried = true;
      this.topics.forget(this.message.topic, this.group);
      this.topics.ask(this);
      return;
    }
    this.fail(err);
  }

  private finish(part: Uint8Array, group: HostGroup, formed: FormedGroup): void {
    let payloads: RecipientPayloads;
    try {
      payloads = this.topics.leads(this, part, group, formed);
    } catch (err) {
      this.fail(err as Error);
      return;
    }
    this.out.stageDone(undefined, payloads);
  }

  private fail(err: Error): void {
    this.topics.counters.messagesRefused++;
    this.out.stageDone(err, undefined);
  }
}
