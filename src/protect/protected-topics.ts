/**
 * Protected topics on the broker side. The broker never opens an envelope: it checks the layout of
 * a PUBLISH (no crypto), and for each message makes ONE call to the trusted component, then sends
 * each recipient the shared payload ciphertext behind its own header.
 *
 * The call names a recipient group (src/tee/groups.ts) rather than listing every recipient: the
 * trusted component wraps the message's data key once, under the group's key, and each recipient's
 * header is that shared part followed by its own member part, formed once per group. Groups are per
 * topic; a message whose recipients the topic's group does not cover forms a new one.
 */
import type { Logger } from 'pino';
import type { DeliveryStage, StagedPayloads, Target } from '../broker/broker.js';
import type { Message } from '../broker/message.js';
import { Reason } from '../mqtt/reason-codes.js';
import { filterCovers, topicMatches } from '../mqtt/topic.js';
import { utf8Name } from '../tee/bytes.js';
import { KIND_SENDER, isSenderHeaderOf, parseHeader, senderOf, splitEnvelope } from '../tee/envelope-layout.js';
import { TeeError, type FormedGroup, type TrustedComponent } from '../tee/host.js';

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

export class ProtectedTopics implements DeliveryStage {
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
      const headerBytes = splitEnvelope(payload).header;
      // the common case, without decoding: a well-formed header naming this publisher
      if (isSenderHeaderOf(headerBytes, utf8Name(publisher.identity))) {
        this.counters.accepted++;
        return Reason.Success;
      }
      const header = parseHeader(headerBytes);
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

  /**
   * The shared header part of one message (it ends with the group id) for a group covering
   * `recipients`, handed to `use` with that group and its formation. A group the trusted component
   * no longer knows or holds stale (policy change, revocation, key rotation) is formed again once.
   */
  private wrap<R>(topic: string, header: Uint8Array, sender: string, recipients: readonly string[], use: (part: Uint8Array, group: HostGroup, formed: FormedGroup) => R, retried = false): Promise<R> {
    const group = this.groupFor(topic, recipients);
    this.counters.rewrapCalls++;
    return this.tee.groupRewrap(group.handle, header, topic, sender).then(
      // (group.formed has its own rejection handler, so waiting for it second loses nothing)
      (part) => (group.ready !== undefined ? use(part, group, group.ready) : group.formed.then((formed) => use(part, group, formed))),
      (err: unknown) => {
        const retry = !retried && err instanceof TeeError && (err.code === 'group-unknown' || err.code === 'group-stale');
        if (!retry) throw err;
        if (this.groups.get(topic) === group) this.groups.delete(topic);
        return this.wrap(topic, header, sender, recipients, use, true);
      },
    );
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

  transform(message: Message, targets: readonly Target[]): Promise<StagedPayloads> {
    try {
      return this.stage(message, targets);
    } catch (err) {
      // a payload that no longer splits (the arrival check passed it): refused like a bad answer
      this.counters.messagesRefused++;
      return Promise.reject(err as Error);
    }
  }

  private stage(message: Message, targets: readonly Target[]): Promise<StagedPayloads> {
    const out: (Buffer | null)[] = new Array<Buffer | null>(targets.length).fill(null);
    // a retained-message clear: nothing to deliver
    if (message.payload.length === 0) return Promise.resolve({ body: message.payload, prefixes: out });
    const { header, payload } = splitEnvelope(message.payload);
    // Every recipient's envelope is `u16 length || its header || the shared ciphertext`: only the
    // first two parts are per recipient; the ciphertext is written to each socket as is.
    const body = message.payload.subarray(message.payload.length - payload.length);
    const sender = senderOf(header); // check() parsed and validated this header on arrival
    // Sessions without a usable identity (none, or over the 255 bytes an envelope can name) cannot
    // hold a key: they get nothing, without asking — and cannot spoil the batch for the others.
    const recipients: string[] = [];
    const slots: number[] = [];
    for (let i = 0; i < targets.length; i++) {
      const identity = targets[i]!.session.identity;
      // at most 3 UTF-8 bytes per UTF-16 unit: only long identities need counting
      if (identity.length > 0 && (identity.length <= 85 || Buffer.byteLength(identity) <= 255)) {
        recipients.push(identity);
        slots.push(i);
      } else this.counters.recipientsRefused++;
    }
    if (recipients.length === 0) return Promise.resolve({ body, prefixes: out });
    const prefixes = (part: Uint8Array, group: HostGroup, formed: FormedGroup): StagedPayloads => {
      const members = group.members;
      for (let k = 0; k < recipients.length; k++) {
        const r0 = recipients[k]!;
        // the group was usually formed from this very list: same place, no lookup
        const at = members[k] === r0 ? k : group.index.get(r0);
        const r = at === undefined ? undefined : formed.members[at];
        if (r?.header !== undefined) {
          const member = r.header;
          const prefix = Buffer.allocUnsafe(2 + part.length + member.length);
          prefix.writeUInt16BE(part.length + member.length, 0);
          prefix.set(part, 2);
          prefix.set(member, 2 + part.length);
          out[slots[k]!] = prefix;
          this.counters.recipientsWrapped++;
        } else {
          this.counters.recipientsRefused++;
          this.log.debug({ topic: message.topic, recipient: r0, refusal: r?.refusal ?? 'not-in-group' }, 'trusted component refused a recipient');
        }
      }
      return { body, prefixes: out };
    };
    return this.wrap(message.topic, header, sender, recipients, prefixes).catch((err: unknown) => {
      this.counters.messagesRefused++;
      throw err;
    });
  }
}
