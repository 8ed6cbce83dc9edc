/** The broker: sessions, routing, retained messages, wills, keep alive. Transport-agnostic. */
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { QoS } from 'mqtt-packet';
import type { BrokerConfig } from '../config.js';
import type { AuthHooks, ClientInfo, MaybePromise } from '../auth/hooks.js';
import { AclAuth } from '../auth/acl.js';
import type { TransportInfo } from '../transport/types.js';
import { MemoryRetainedStore, type RetainedStore } from '../store/retained.js';
import { Reason } from '../mqtt/reason-codes.js';
import { isSysTopic } from '../mqtt/topic.js';
import { Connection, type Will } from './connection.js';
import { settleMessage, type Delivery, type DeliveryLead, type Message } from './message.js';
import { Session, type SessionLink } from './session.js';
import { Deadline } from './deadline.js';
import { StageRunner } from './stage-runner.js';
import { SubscriptionTree, type SubscriptionOptions } from './subscriptions.js';
import { TargetCollector, type Target } from './targets.js';
import { TopicSample } from './topic-sample.js';
import { AbuseLimits, type AbuseCounters } from '../limits/abuse.js';
import type { StateJournal } from './journal.js';
import type { BrokerExtension } from './extension.js';

export type { Target } from './targets.js';
export type { DeliveryStage, RecipientPayloads, StageReceiver } from './stage-runner.js';

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
  /** Offline sessions ended early at `limits.maxOfflineSessions`. */
  offlineSessionsEnded: number;
  /** Retained messages not kept at `limits.maxRetainedMessages` (each still routed). */
  retainedDropped: number;
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
    offlineSessionsEnded: 0,
    retainedDropped: 0,
    refusedConnectionRate: 0,
    refusedPerAddress: 0,
    refusedBanned: 0,
    flapBans: 0,
    publishPauses: 0,
  };
  /** The busiest topics, sampled (see TopicSample). */
  readonly topicSample = new TopicSample();
  readonly abuse: AbuseLimits;
  readonly auth: AuthHooks;
  readonly retained: RetainedStore;
  /** What the deployment adds (protected topics): see extension.ts. */
  readonly extension: BrokerExtension;
  /** The extension's stage and each publisher's order through it. */
  private readonly stages: StageRunner;
  private readonly sweeper: NodeJS.Timeout;
  private readonly targets = new TargetCollector(this.subscriptions, this.sessions, this.clients);
  private closing = false;
  /** Connections in `connections` taken past `maxConnections`, only to be refused at CONNECT. */
  private overLimit = 0;
  /**
   * Sessions kept for disconnected clients, in the order they went offline (a Set keeps insertion
   * order): the first is the one `limits.maxOfflineSessions` ends. Without such a bound, v5 clients
   * connecting with an empty client id and a session expiry each leave a session under an assigned
   * id that only they could resume, and the broker's memory grows with every one of them.
   */
  private readonly offline = new Set<Session>();
  /** Where persistent sessions' state changes go (src/persistence); undefined = memory only. */
  readonly journal: StateJournal | undefined;

  constructor(
    readonly config: BrokerConfig,
    readonly log: Logger,
    options: { auth?: AuthHooks; retained?: RetainedStore; journal?: StateJournal; extension?: BrokerExtension } = {},
  ) {
    this.journal = options.journal;
    this.extension = options.extension ?? {};
    this.stages = new StageRunner(this.extension.stage, this);
    this.auth = options.auth ?? new AclAuth(config.allowAnonymous, config.acl);
    this.retained = options.retained ?? new MemoryRetainedStore();
    this.abuse = new AbuseLimits(config.limits, this.counters, log);
    this.sweeper = setInterval(() => this.sweep(), 1000);
    this.sweeper.unref();
  }

  /** The auth hooks' answer, narrowed by the extension's. */
  authorizeSubscribe(client: ClientInfo, filter: string): MaybePromise<boolean> {
    const allowed = this.auth.authorizeSubscribe(client, filter);
    const narrow = this.extension.authorizeSubscribe;
    return narrow === undefined ? allowed : narrow.call(this.extension, client, filter, allowed);
  }

  /** Whether deliveries of messages to `topic` are kept in the publisher's form until the stage runs for them. */
  staysInPublisherForm(topic: string): boolean {
    return this.stages.applies(topic);
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
    this.offline.delete(session);
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
    this.offline.delete(session);
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
    // after its will is scheduled: a session ended here publishes it at once, as at its expiry
    if (session.expiryInterval !== 0) this.keepOffline(session);
  }

  /**
   * `session` is kept for a disconnected client (also a session restored from the durable store):
   * past `limits.maxOfflineSessions`, the session offline longest ends.
   */
  keepOffline(session: Session): void {
    this.offline.add(session);
    const max = this.config.limits.maxOfflineSessions;
    // a broker shutting down disconnects everyone: the store keeps their sessions as they were
    if (max === 0 || this.closing) return;
    while (this.offline.size > max) {
      const oldest = this.offline.values().next().value!;
      this.counters.offlineSessionsEnded++;
      this.abuse.burst.note('maxOfflineSessions', { clientId: oldest.clientId, max }, 'offline session ended: offline session limit reached');
      this.endSession(oldest);
    }
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
    else if (this.retainedFull(message.topic)) {
      // Routed all the same: only its keeping is refused. Without a bound, a client that retains
      // on ever new topics grows memory (and the store) until the process dies.
      this.counters.retainedDropped++;
      this.abuse.burst.note('maxRetainedMessages', { clientId: message.origin, topic: message.topic, max: this.config.limits.maxRetainedMessages }, 'retained message not kept: retained message limit reached');
    } else {
      // kept for as long as the topic is: not as a view of the socket read it came in
      settleMessage(message);
      this.retained.set(message.topic, message);
    }
  }

  /**
   * At `limits.maxRetainedMessages`, with no retained message on `topic` to replace. The broker's
   * own `$SYS` topics (a fixed set, which clients cannot publish to) neither count nor are refused.
   */
  private retainedFull(topic: string): boolean {
    const max = this.config.limits.maxRetainedMessages;
    return max > 0 && !isSysTopic(topic) && this.retained.size - this.retained.systemSize >= max && !this.retained.has(topic);
  }

  /**
   * Routes a message to every matching session (or, with `only`, to that client's session alone);
   * returns the number of recipients. `parsed`: see PublishDecision.
   */
  route(message: Message, only?: string, parsed?: unknown): number {
    this.counters.messagesRouted++;
    const targets = this.targets.collect(message, only);
    if (targets.length === 0) return 0;
    if (this.stages.applies(message.topic)) {
      this.stages.route(message, targets, parsed);
      return targets.length;
    }
    // Behind a message of the same publisher still in the stage: wait for it, so each subscriber
    // sees the publisher's messages in order.
    if (this.stages.inStage(message.origin)) this.stages.whenDelivered(message.origin, () => this.deliverAll(targets, message));
    else this.deliverAll(targets, message);
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
      if (this.stages.applies(m.topic)) this.stages.enter(m, [target]);
      else this.deliverTo(target, m, m.payload, false);
    }
  }

  private deliverAll(targets: readonly Target[], message: Message): void {
    for (const t of targets) this.deliverTo(t, message, message.payload, false);
  }

  /** @internal (StageRunner) `inPublisherForm`: not yet through the stage, which runs for it on resume. */
  deliverTo(t: Target, message: Message, payload: Buffer, inPublisherForm: boolean, lead?: DeliveryLead): void {
    const d: Delivery = {
      message,
      lead,
      payload,
      qos: t.qos,
      retain: t.retain,
      subscriptionIds: t.subscriptionIds,
      packetId: 0,
      state: 'publish',
      inPublisherForm,
      storeId: 0,
    };
    t.session.deliver(d);
  }

  /** A connection takes `session` over: deliveries in the publisher's form go through the stage first (StageRunner.resume). */
  resumeSession(session: Session, link: Connection): void {
    this.journal?.sessionChanged(session);
    this.stages.resume(session, link);
  }

  /** Messages of `origin` are in the delivery stage (not yet in their sessions). */
  inStage(origin: string): boolean {
    return this.stages.inStage(origin);
  }

  /** Runs `fn` once every message of `origin` still in the delivery stage has been delivered. */
  whenDelivered(origin: string, fn: () => void): void {
    this.stages.whenDelivered(origin, fn);
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
    await this.stages.drained();
  }
}
