/**
 * Turns the subscriptions matching a message into one target per session: overlapping
 * subscriptions merged (highest QoS, every subscription identifier), no-local honoured, shared
 * groups reduced to one member. One collector serves every message (routing is synchronous), so
 * the hot path allocates only the targets themselves.
 *
 * A session already made a target by this message is found through a mark on the session (the
 * round number) rather than a Map cleared per message: a Map's dropped tables keep what they held
 * alive (see src/broker/inflight.ts).
 */
import type { QoS } from 'mqtt-packet';
import type { Message } from './message.js';
import type { Session } from './session.js';
import type { MatchVisitor, SharedGroup, SubscriptionOptions, SubscriptionTree } from './subscriptions.js';

/** One recipient of a routed message. */
export interface Target {
  session: Session;
  qos: QoS;
  retain: boolean;
  subscriptionIds: number[] | undefined;
}

const NO_TARGETS: Target[] = [];

export class TargetCollector implements MatchVisitor {
  private message: Message | undefined;
  private only: string | undefined;
  private out: Target[] = [];
  /** Rises by one per message; a session whose `targetRound` equals it is already in `out`. */
  private round = 0;
  private readonly isConnected = (clientId: string): boolean => this.clients.has(clientId);
  private readonly hasSession = (clientId: string): boolean => this.sessions.has(clientId);

  constructor(
    private readonly tree: SubscriptionTree,
    private readonly sessions: ReadonlyMap<string, Session>,
    private readonly clients: ReadonlyMap<string, unknown>,
  ) {}

  /** Targets of `message` (with `only`: that client's at most). */
  collect(message: Message, only: string | undefined): Target[] {
    this.message = message;
    this.only = only;
    this.round++;
    const out: Target[] = [];
    this.out = out;
    this.tree.match(message.topic, this);
    this.message = undefined;
    this.out = NO_TARGETS;
    return out;
  }

  subscriber(clientId: string, o: SubscriptionOptions): void {
    if (!(o.noLocal && clientId === this.message!.origin)) this.add(clientId, o);
  }

  group(g: SharedGroup): void {
    // Prefer a connected member; an offline one with a session queues the message.
    const picked = g.pick(this.isConnected) ?? g.pick(this.hasSession);
    if (picked) this.add(picked[0], picked[1]);
  }

  private add(clientId: string, o: SubscriptionOptions): void {
    if (this.only !== undefined && clientId !== this.only) return;
    const session = this.sessions.get(clientId);
    if (!session) return;
    const m = this.message!;
    const qos = (o.qos < m.qos ? o.qos : m.qos) as QoS;
    const retain = o.retainAsPublished && m.retain;
    if (session.targetRound !== this.round) {
      session.targetRound = this.round;
      session.targetIndex = this.out.length;
      this.out.push({ session, qos, retain, subscriptionIds: o.subscriptionId !== undefined ? [o.subscriptionId] : undefined });
      return;
    }
    const t = this.out[session.targetIndex]!;
    // overlapping subscriptions: one copy at the highest QoS carrying every identifier
    if (qos > t.qos) t.qos = qos;
    if (retain) t.retain = true;
    if (o.subscriptionId !== undefined) (t.subscriptionIds ??= []).push(o.subscriptionId);
  }
}
