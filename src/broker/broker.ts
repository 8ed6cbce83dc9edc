/** The broker: sessions, routing, retained messages, wills, keep alive. Transport-agnostic. */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { QoS } from 'mqtt-packet';
import type { BrokerConfig } from '../config.js';
import type { AuthHooks } from '../auth/hooks.js';
import { AclAuth } from '../auth/acl.js';
import type { TransportInfo } from '../transport/types.js';
import { MemoryRetainedStore, type RetainedStore } from '../store/retained.js';
import { Reason } from '../mqtt/reason-codes.js';
import { Connection, type Will } from './connection.js';
import { settleMessage, type Delivery, type Message } from './message.js';
import { Session, type SessionLink } from './session.js';
import { Deadline } from './deadline.js';
import { PublisherOrder, type Place } from './publisher-order.js';
import { SubscriptionTree, type SubscriptionOptions } from './subscriptions.js';
import { TargetCollector, type Target } from './targets.js';
import { TopicSample } from './topic-sample.js';
import { AbuseLimits, type AbuseCounters } from '../limits/abuse.js';
import type { StateJournal } from './journal.js';

export type { Target } from './targets.js';

/**
 * Per-target payloads that share one body: target i gets the lead `u16 length || shared || own[i]`
 * followed by `body`; own[i] null = nothing for target i.
 */
export interface StagedPayloads {
  body: Buffer;
  shared: Uint8Array;
  own: (Uint8Array | null)[];
}

/** Where a stage sends what it made of one message. */
export interface StageOutput {
  /** Called once, later (never from inside `transform`): the payloads, or why the message is refused. */
  staged(err: Error | undefined, payloads: StagedPayloads | undefined): void;
}

/**
 * A stage between routing and delivery that may replace the payload per recipient, asynchronously
 * (the trusted component re-protects protected topics here). Messages from one publisher leave the
 * stage in the order they entered it. Callback rather than Promise: it runs once per message.
 */
export interface DeliveryStage {
  applies(topic: string): boolean;
  /** What each target gets, in order: its lead before the shared body. */
  transform(message: Message, targets: readonly Target[], out: StageOutput): void;
}

/** `transform` as a Promise, for the paths that run once per session or subscription. */
function transformed(stage: DeliveryStage, message: Message, targets: readonly Target[]): Promise<StagedPayloads> {
  return new Promise((resolve, reject) => stage.transform(message, targets, { staged: (err, payloads) => (err ? reject(err) : resolve(payloads!)) }));
}

/**
 * A message in the stage, holding its place in its publisher's lane: delivered once staged and
 * every earlier message of that publisher is out. One object per message, no closures.
 */
class StagedDelivery implements Place, StageOutput {
  isReady = false;
  next: Place | undefined = undefined;
  private payloads: StagedPayloads | undefined;
  private err: Error | undefined;

  constructor(
    private readonly broker: Broker,
    readonly message: Message,
    private readonly targets: readonly Target[],
  ) {}

  staged(err: Error | undefined, payloads: StagedPayloads | undefined): void {
    this.err = err;
    this.payloads = payloads;
    this.broker.stagedReady(this);
  }

  run(): void {
    const p = this.payloads;
    if (p === undefined) {
      this.broker.log.warn({ err: this.err, topic: this.message.topic, origin: this.message.origin }, 'delivery stage refused a message');
      return;
    }
    for (let i = 0; i < this.targets.length; i++) {
      const own = p.own[i];
      if (own) this.broker.deliverTo(this.targets[i]!, this.message, p.body, false, p.shared, own);
    }
  }
}

export interface BrokerCounters extends AbuseCounters {
  connectionsAccepted: number;
  messagesReceived: number;
  messagesRouted: number;
  /** QoS 1/2 deliveries dropped because a session's queue was full. */
  dropped: number;
  malformedPackets: number;
  /** Packets whose handler failed (a bug, not the client's fault): each closed its connection only. */
  handlerFailures: number;
  /** PUBLISHes received and sent, by QoS (index 0, 1, 2). */
  publishReceived: [number, number, number];
  publishSent: [number, number, number];
  /** Bytes read from and written to client connections. */
  bytesReceived: number;
  bytesSent: number;
  /** Packets refused for announcing more than `limits.maxPacketSize` (each closed its connection). */
  oversizedPackets: number;
  /** Connections closed for not sending CONNECT within `limits.connectTimeout`. */
  connectTimeouts: number;
  /** Connections refused at `limits.maxConnections` (v5: CONNACK 0x97). */
  refusedConnectionLimit: number;
}

const FOREVER = 0xffffffff;

/**
 * Connections past `maxConnections` that are still read until their CONNECT, to refuse it in a
 * CONNACK (v5: 0x97 Quota exceeded); beyond these, new connections are closed at once.
 */
export const REFUSAL_SLOTS = 1024;

export class Broker {
  readonly sessions = new Map<string, Session>();
  /** Connected clients by client id. */
  readonly clients = new Map<string, Connection>();
  readonly connections = new Set<Connection>();
  readonly subscriptions = new SubscriptionTree();
  readonly counters: BrokerCounters = {
    connectionsAccepted: 0,
    messagesReceived: 0,
    messagesRouted: 0,
    dropped: 0,
    malformedPackets: 0,
    handlerFailures: 0,
    publishReceived: [0, 0, 0],
    publishSent: [0, 0, 0],
    bytesReceived: 0,
    bytesSent: 0,
    oversizedPackets: 0,
    connectTimeouts: 0,
    refusedConnectionLimit: 0,
    refusedConnectionRate: 0,
    refusedPerAddress: 0,
    refusedBanned: 0,
    flapBans: 0,
    publishPauses: 0,
  };
  /** The busiest topics, sampled (see TopicSample). */
  readonly topicSample = new TopicSample();
  readonly abuse: AbuseLimits;
  auth: AuthHooks;
  readonly retained: RetainedStore;
  deliveryStage: DeliveryStage | undefined;
  /** Checks a PUBLISH before routing; a reason code >= 0x80 refuses it (e.g. a protected topic without an envelope). */
  publishGate: ((client: Connection, message: Message) => number) | undefined;
  /** Consumes PUBLISHes to topics the broker itself answers (e.g. `$tee/...` requests); true = consumed. */
  interceptor: ((client: Connection, message: Message) => boolean) | undefined;
  private readonly sweeper: NodeJS.Timeout;
  /** Per-publisher order of deliveries while protected messages wait for the trusted component. */
  private readonly order = new PublisherOrder((err, origin) => {
    this.counters.handlerFailures++;
    this.log.error({ err, origin }, 'delivery failed');
  });
  private readonly targets = new TargetCollector(this.subscriptions, this.sessions, this.clients);
  private closing = false;
  /** Connections in `connections` taken past `maxConnections`, only to be refused at CONNECT. */
  private overLimit = 0;
  /** Where persistent sessions' state changes go (src/persistence); undefined = memory only. */
  readonly journal: StateJournal | undefined;

  constructor(
    readonly config: BrokerConfig,
    readonly log: Logger,
    options: { auth?: AuthHooks; retained?: RetainedStore; journal?: StateJournal } = {},
  ) {
    this.journal = options.journal;
    this.auth = options.auth ?? new AclAuth(config.allowAnonymous, config.acl);
    this.retained = options.retained ?? new MemoryRetainedStore();
    this.abuse = new AbuseLimits(config.limits, this.counters, log);
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  /** Entry point for every transport: one accepted byte stream = one MQTT connection. */
  handleStream(stream: Duplex, info: TransportInfo): void {
    const max = this.config.limits.maxConnections;
    if (this.closing || this.connections.size >= max + REFUSAL_SLOTS) {
      this.refusedAtLimit(info.remoteAddress);
      stream.destroy();
      return;
    }
    if (!this.abuse.admit(info.transport, info.remoteAddress)) {
      stream.destroy();
      return;
    }
    this.counters.connectionsAccepted++;
    const conn = new Connection(this, stream, info);
    if (this.connections.size - this.overLimit >= max) {
      conn.overLimit = true;
      this.overLimit++;
    }
    this.connections.add(conn);
  }

  /** @internal A connection refused at `maxConnections` (before or at its CONNECT). */
  refusedAtLimit(remote: string): void {
    if (this.closing) return;
    this.counters.refusedConnectionLimit++;
    this.abuse.burst.note('maxConnections', { remote, max: this.config.limits.maxConnections }, 'connection refused: connection limit reached');
  }

  newSession(clientId: string): Session {
    const session = new Session(clientId, this.config.limits, this.counters, this.log, this.journal);
    this.sessions.set(clientId, session);
    return session;
  }

  /** Ends a session: its subscriptions and messages are gone; a will still waiting is published. */
  endSession(session: Session): void {
    // the session's own state first: publishing the will runs routing, which must find it gone
    for (const [, sub] of session.subscriptions) this.subscriptions.remove(session.clientId, sub.filter, sub.group);
    session.clearSubscriptions();
    session.clearMessages();
    this.journal?.sessionEnded(session);
    if (this.sessions.get(session.clientId) === session) this.sessions.delete(session.clientId);
    this.flushWill(session);
  }

  /** Stops the session's timers and publishes a will still waiting for its delay. */
  private flushWill(session: Session): void {
    session.expiryTimer?.cancel();
    const pending = session.pendingWill;
    if (!pending) return;
    pending.timer.cancel();
    session.pendingWill = undefined;
    this.journal?.willGone(session);
    this.publishWill(pending.message);
  }

  /** A new connection takes the session over: cancel its expiry and any delayed will. */
  reviveSession(session: Session): void {
    session.expiryTimer?.cancel();
    session.expiryTimer = undefined;
    if (session.pendingWill) {
      session.pendingWill.timer.cancel();
      session.pendingWill = undefined;
      this.journal?.willGone(session);
    }
  }

  /**
   * Runs from the stream's 'close' event, outside any packet handler: every state change comes
   * before the will is routed (the one step that runs code for other clients), and that step
   * cannot throw out of here (see publishWill).
   */
  connectionClosed(conn: Connection): void {
    if (!this.connections.delete(conn)) return;
    this.abuse.released(conn.transport.remoteAddress);
    if (conn.overLimit) this.overLimit--;
    if (!conn.connected) return;
    if (this.clients.get(conn.clientId) === conn) this.clients.delete(conn.clientId);
    const session = conn.session;
    if (!session || session.link !== conn) return;
    session.link = null;
    const will = conn.will;
    conn.will = undefined;
    if (session.expiryInterval === 0) {
      this.endSession(session);
    } else {
      session.settleWaiting();
      if (session.expiryInterval !== FOREVER) {
        session.expiryTimer = new Deadline(Date.now() + session.expiryInterval * 1000, () => this.endSession(session));
      }
      this.journal?.sessionChanged(session);
    }
    if (will) this.scheduleWill(session, will);
  }

  /** The will goes at the earlier of its delay and the session's end (MQTT-3.1.3-9). */
  private scheduleWill(session: Session, will: Will): void {
    if (will.delay === 0 || session.expiryInterval === 0 || this.closing) {
      this.publishWill(will.message);
      return;
    }
    this.delayWill(session, will.message, Date.now() + Math.min(will.delay, session.expiryInterval) * 1000);
  }

  /** Holds a will until `publishAt` (epoch ms); also how a will restored from the durable store waits. */
  delayWill(session: Session, message: Message, publishAt: number): void {
    const timer = new Deadline(publishAt, () => {
      session.pendingWill = undefined;
      this.journal?.willGone(session);
      this.publishWill(message);
    });
    session.pendingWill = { message, timer };
    this.journal?.willScheduled(session, message, publishAt);
  }

  /**
   * Wills are published from a closed stream's event or a timer, where nothing would catch a
   * failure: it is counted and logged, and the broker's state is already settled by the caller.
   */
  private publishWill(message: Message): void {
    try {
      if (message.retain) this.retain(message);
      this.route(message);
    } catch (err) {
      this.counters.handlerFailures++;
      this.log.error({ err, origin: message.origin, topic: message.topic }, 'publishing a will failed');
    }
  }

  retain(message: Message): void {
    if (message.payload.length === 0) this.retained.set(message.topic, null);
    else {
      // kept for as long as the topic is: not as a view of the socket read it came in
      settleMessage(message);
      this.retained.set(message.topic, message);
    }
  }

  /**
   * Routes a message to every matching session (or, with `only`, to that client's session alone);
   * returns the number of recipients.
   */
  route(message: Message, only?: string): number {
    this.counters.messagesRouted++;
    const targets = this.targets.collect(message, only);
    if (targets.length === 0) return 0;
    const stage = this.deliveryStage;
    if (!stage || !stage.applies(message.topic)) {
      // Behind a protected message of the same publisher still in the stage: wait for it, so
      // each subscriber sees the publisher's messages in order.
      if (this.order.busy(message.origin)) this.order.after(message.origin, () => this.deliverAll(targets, message));
      else this.deliverAll(targets, message);
      return targets.length;
    }
    // Offline sessions keep the publisher's form until they resume (see prepareQueued).
    const online: Target[] = [];
    for (const t of targets) {
      if (t.session.link && !t.session.preparing) online.push(t);
      else if (t.qos > 0) this.deliverTo(t, message, message.payload, true);
    }
    if (online.length > 0) this.throughStage(stage, message, online);
    return targets.length;
  }

  /** Delivers retained messages to one new subscription (through the stage when it applies). */
  deliverRetained(session: Session, messages: Message[], options: SubscriptionOptions): void {
    for (const m of messages) {
      const target: Target = {
        session,
        qos: Math.min(m.qos, options.qos) as QoS,
        retain: true,
        subscriptionIds: options.subscriptionId !== undefined ? [options.subscriptionId] : undefined,
      };
      const stage = this.deliveryStage;
      if (stage && stage.applies(m.topic)) this.throughStage(stage, m, [target]);
      else this.deliverTo(target, m, m.payload, false);
    }
  }

  private deliverAll(targets: readonly Target[], message: Message): void {
    for (const t of targets) this.deliverTo(t, message, message.payload, false);
  }

  /** @internal (StagedDelivery) `staged`: still in the publisher's form, to go through the stage on resume. */
  deliverTo(t: Target, message: Message, payload: Buffer, staged: boolean, leadShared?: Uint8Array, leadOwn?: Uint8Array): void {
    const d: Delivery = {
      message,
      leadShared,
      leadOwn,
      payload,
      qos: t.qos,
      retain: t.retain,
      subscriptionIds: t.subscriptionIds,
      packetId: 0,
      state: 'publish',
      staged,
      storeId: 0,
    };
    t.session.deliver(d);
  }

  /**
   * A session resumes with deliveries queued in the publisher's form: run each through the
   * delivery stage (one call per message) before anything is sent, then drain in order.
   */
  resumeSession(session: Session, link: Connection): void {
    this.journal?.sessionChanged(session);
    const stage = this.deliveryStage;
    // in flight too: deliveries restored from the durable store are in the publisher's form
    const waiting = session.inflight.size > 0 || session.queue.length > 0;
    const pending = stage && waiting ? [...session.inflight.inOrder().map(([, d]) => d), ...session.queue].filter((d) => d.staged) : [];
    if (!stage || pending.length === 0) {
      session.resume(link);
      return;
    }
    session.preparing = true;
    session.link = link;
    (async () => {
      const refused = new Set<Delivery>();
      for (const d of pending) {
        const target: Target = { session, qos: d.qos, retain: d.retain, subscriptionIds: d.subscriptionIds };
        try {
          const { body, shared, own } = await transformed(stage, d.message, [target]);
          if (own[0]) {
            d.leadShared = shared;
            d.leadOwn = own[0];
            d.payload = body;
          } else refused.add(d);
        } catch (err) {
          this.log.warn({ err, clientId: session.clientId, topic: d.message.topic }, 'delivery stage refused a queued message');
          refused.add(d);
        }
        d.staged = false;
      }
      if (refused.size > 0) session.removeQueued(refused);
      session.preparing = false;
      if (session.link === link) session.resume(link);
    })().catch((err: unknown) => {
      // not left half prepared: the client reconnects and its session is prepared again
      session.preparing = false;
      link.handlerFailed(err, 'resuming a session failed');
    });
  }

  private throughStage(stage: DeliveryStage, message: Message, targets: Target[]): void {
    // The trusted call starts now (calls pipeline); only the delivery waits for its turn.
    const staged = new StagedDelivery(this, message, targets);
    this.order.enqueue(message.origin, staged);
    try {
      stage.transform(message, targets, staged);
    } catch (err) {
      // a stage that throws instead of answering must not block its publisher's lane for good
      this.counters.handlerFailures++;
      staged.staged(err instanceof Error ? err : new Error(String(err)), undefined);
    }
  }

  /** Messages of `origin` are in the delivery stage (not yet in their sessions). */
  staging(origin: string): boolean {
    return this.order.busy(origin);
  }

  /** Runs `fn` once every message of `origin` still in the delivery stage has been delivered. */
  whenDelivered(origin: string, fn: () => void): void {
    if (this.order.busy(origin)) this.order.after(origin, fn);
    else fn();
  }

  /** @internal A message left the stage: deliver it and whatever of its publisher waited on it. */
  stagedReady(staged: StagedDelivery): void {
    this.order.ready(staged.message.origin, staged);
  }

  private sweep(): void {
    const now = Date.now();
    const connectTimeoutMs = this.config.limits.connectTimeout * 1000;
    for (const conn of this.connections) {
      try {
        this.sweepOne(conn, now, connectTimeoutMs);
      } catch (err) {
        conn.handlerFailed(err, 'timer work for a connection failed');
      }
    }
  }

  /** One connection's share of the sweep: its CONNECT timeout, keep alive, and settling what waits on it. */
  private sweepOne(conn: Connection, now: number, connectTimeoutMs: number): void {
    if (!conn.connected) {
      if (!conn.connecting && now - conn.openedAt > connectTimeoutMs) {
        this.counters.connectTimeouts++;
        this.abuse.burst.note('connectTimeout', { remote: conn.transport.remoteAddress, seconds: this.config.limits.connectTimeout }, 'connection closed: no CONNECT in time');
        conn.destroy();
      }
    } else if (conn.keepalive > 0 && !conn.throttled && now - conn.lastActivity > conn.keepalive * 1500) {
      this.log.debug({ clientId: conn.clientId }, 'keep alive timeout');
      conn.close(Reason.KeepAliveTimeout, 'keep alive timeout');
    } else {
      const session = conn.session;
      if (session && session.link === conn && (session.queue.length > 0 || session.inflight.size > 0)) session.settleWaiting();
    }
  }

  /** Graceful stop: every client gets DISCONNECT 0x8B (v5), wills go out, timers stop. */
  async close(): Promise<void> {
    this.closing = true;
    clearInterval(this.sweeper);
    this.abuse.close();
    for (const conn of [...this.connections]) conn.close(Reason.ServerShuttingDown, 'server shutting down');
    for (const session of [...this.sessions.values()]) this.flushWill(session);
    await this.order.drained();
  }
}
