/**
 * Runs messages through the extension's delivery stage (src/broker/extension.ts) and hands what
 * comes out to the sessions, keeping each publisher's order. Three ways in, one stage:
 *
 *   route      Broker.route -> StageRunner.route: connected recipients through the stage now
 *              (enter), offline ones queued in the publisher's form;
 *   retained   Broker.deliverRetained -> StageRunner.enter, one target;
 *   resume     Broker.resumeSession -> StageRunner.resume: each delivery still in the publisher's
 *              form through the stage, one at a time, before the session sends anything.
 *
 * A routed or retained message holds its place in its publisher's lane (PublisherOrder) from the
 * moment it enters: the stage's calls pipeline, only the deliveries wait for their turn.
 */
import type { Logger } from 'pino';
import type { Broker } from './broker.js';
import type { Delivery, DeliveryLead, Message } from './message.js';
import type { Session, SessionLink } from './session.js';
import type { Target } from './targets.js';

/** Per-target payloads that share one body: target i gets `leads[i]` followed by `body`; null = nothing for target i. */
export interface RecipientPayloads {
  body: Buffer;
  leads: (DeliveryLead | null)[];
}

/** Where a stage sends what it made of one message. */
export interface StageReceiver {
  /** Called once, later (never from inside `transform`): the payloads, or why the message is refused. */
  stageDone(err: Error | undefined, payloads: RecipientPayloads | undefined): void;
}

/**
 * A stage between routing and delivery that may replace the payload per recipient, asynchronously
 * (the trusted component re-protects protected topics here). Messages from one publisher leave the
 * stage in the order they entered it. Callback rather than Promise: it runs once per message.
 */
export interface DeliveryStage<Parsed = unknown> {
  applies(topic: string): boolean;
  /**
   * What each target gets, in order: its lead before the shared body. `parsed`: what the
   * extension's `onPublish` learnt of this message's payload, when it comes straight from there.
   */
  transform(message: Message, targets: readonly Target[], out: StageReceiver, parsed?: Parsed): void;
}

export class StageRunner {
  /** Per-publisher order of deliveries while messages wait in the stage. */
  private readonly order: PublisherOrder;

  constructor(
    private readonly stage: DeliveryStage | undefined,
    private readonly broker: Broker,
  ) {
    this.order = new PublisherOrder((err, origin) => {
      broker.counters.handlerFailures++;
      broker.log.error({ err, origin }, 'delivery failed');
    });
  }

  /** Whether messages to `topic` go through the stage (else they are delivered as published). */
  applies(topic: string): boolean {
    return this.stage !== undefined && this.stage.applies(topic);
  }

  /** Messages of `origin` are in the stage (not yet in their sessions). */
  inStage(origin: string): boolean {
    return this.order.busy(origin);
  }

  /** Runs `fn` once every message of `origin` still in the stage has been delivered (at once if none). */
  whenDelivered(origin: string, fn: () => void): void {
    if (this.order.busy(origin)) this.order.after(origin, fn);
    else fn();
  }

  /** A message the stage applies to: connected recipients through it, offline ones queued as published. */
  route(message: Message, targets: readonly Target[], parsed: unknown): void {
    // Offline sessions keep the publisher's form until they resume (see resume).
    const online: Target[] = [];
    for (const t of targets) {
      if (t.session.link && !t.session.preparing) online.push(t);
      else if (t.qos > 0) this.broker.deliverTo(t, message, message.payload, true);
    }
    if (online.length > 0) this.enter(message, online, parsed);
  }

  /** Sends `message` through the stage for `targets`, in its publisher's lane. */
  enter(message: Message, targets: Target[], parsed?: unknown): void {
    // The stage's call starts now (calls pipeline); only the delivery waits for its turn.
    const inStage = new MessageInStage(this.broker, this.order, message, targets);
    this.order.enqueue(message.origin, inStage);
    try {
      this.stage!.transform(message, targets, inStage, parsed);
    } catch (err) {
      // a stage that throws instead of answering must not block its publisher's lane for good
      this.broker.counters.handlerFailures++;
      inStage.stageDone(err instanceof Error ? err : new Error(String(err)), undefined);
    }
  }

  /**
   * A session resumes with deliveries queued in the publisher's form: run each through the stage
   * (one call per message) before anything is sent, then drain in order.
   */
  resume(session: Session, link: SessionLink & ResumingLink): void {
    const stage = this.stage;
    // in flight too: deliveries restored from the durable store are in the publisher's form
    const waiting = session.inflight.size > 0 || session.queue.length > 0; // most resumes: nothing to copy
    const pending = stage && waiting ? [...session.inflight.inOrder().map(([, d]) => d), ...session.queue].filter((d) => d.inPublisherForm) : [];
    if (!stage || pending.length === 0) {
      session.resume(link);
      return;
    }
    new SessionResume(stage, this.broker.log, session, link, pending).start();
  }

  /** Resolves once no publisher has a message in the stage. */
  drained(): Promise<void> {
    return this.order.drained();
  }
}

/**
 * A message in the stage, holding its place in its publisher's lane: delivered once the stage is
 * done with it and every earlier message of that publisher is out. One object per message, no closures.
 */
class MessageInStage implements Place, StageReceiver {
  isReady = false;
  next: Place | undefined = undefined;
  private payloads: RecipientPayloads | undefined;
  private err: Error | undefined;

  constructor(
    private readonly broker: Broker,
    private readonly order: PublisherOrder,
    readonly message: Message,
    private readonly targets: readonly Target[],
  ) {}

  stageDone(err: Error | undefined, payloads: RecipientPayloads | undefined): void {
    this.err = err;
    this.payloads = payloads;
    // delivers it and whatever of its publisher waited on it
    this.order.ready(this.message.origin, this);
  }

  run(): void {
    const p = this.payloads;
    if (p === undefined) {
      this.broker.log.warn({ err: this.err, topic: this.message.topic, origin: this.message.origin }, 'delivery stage refused a message');
      return;
    }
    for (let i = 0; i < this.targets.length; i++) {
      const lead = p.leads[i];
      if (lead) this.broker.deliverTo(this.targets[i]!, this.message, p.body, false, lead);
    }
  }
}

/** What a resume needs of the connection taking the session over. */
export interface ResumingLink {
  handlerFailed(err: unknown, what: string): void;
}

/**
 * One session's deliveries in the publisher's form, through the stage one at a time; the session
 * sends nothing meanwhile (`preparing`), then resumes with those the stage refused taken out.
 */
class SessionResume implements StageReceiver {
  private at = 0;
  private readonly refused = new Set<Delivery>();

  constructor(
    private readonly stage: DeliveryStage,
    private readonly log: Logger,
    private readonly session: Session,
    private readonly link: SessionLink & ResumingLink,
    private readonly pending: readonly Delivery[],
  ) {}

  start(): void {
    this.session.preparing = true;
    this.session.link = this.link;
    this.next();
  }

  private next(): void {
    if (this.at === this.pending.length) {
      this.finish();
      return;
    }
    const d = this.pending[this.at]!;
    const target: Target = { session: this.session, qos: d.qos, retain: d.retain, subscriptionIds: d.subscriptionIds };
    try {
      this.stage.transform(d.message, [target], this);
    } catch (err) {
      this.stageDone(err instanceof Error ? err : new Error(String(err)), undefined);
    }
  }

  stageDone(err: Error | undefined, payloads: RecipientPayloads | undefined): void {
    const d = this.pending[this.at++]!;
    const lead = payloads?.leads[0];
    if (payloads !== undefined && lead) {
      d.lead = lead;
      d.payload = payloads.body;
    } else {
      if (payloads === undefined) this.log.warn({ err, clientId: this.session.clientId, topic: d.message.topic }, 'delivery stage refused a queued message');
      this.refused.add(d);
    }
    d.inPublisherForm = false;
    this.next();
  }

  private finish(): void {
    const { session, link } = this;
    try {
      if (this.refused.size > 0) session.removeQueued(this.refused);
      session.preparing = false;
      if (session.link === link) session.resume(link);
    } catch (err) {
      // not left half prepared: the client reconnects and its session is prepared again
      session.preparing = false;
      link.handlerFailed(err, 'resuming a session failed');
    }
  }
}

/*
 * Per-publisher delivery order while some messages wait on asynchronous work (the trusted
 * component's re-wrap): each message takes its place in its publisher's lane when it arrives and
 * is delivered once it and every message before it are ready. A linked list per publisher, no
 * Promise chain: the hot path costs one small object per waiting message.
 */

export interface Place {
  /** Set by `ready`: the place may run once every earlier place of the lane has. */
  isReady: boolean;
  next: Place | undefined;
  run(): void;
}

interface Lane {
  head: Place;
  tail: Place;
  /** Set while the lane runs its ready places: a place made ready meanwhile is picked up by that loop. */
  running: boolean;
}

/** A task in a lane (`after`). A class, not an object literal: see MessageRecord in src/broker/message.ts (V8's pretenuring). */
class PlaceAfter implements Place {
  declare isReady: boolean;
  declare next: Place | undefined;
  declare readonly run: () => void;

  constructor(run: () => void) {
    this.isReady = false;
    this.next = undefined;
    this.run = run;
  }
}

/** What an emptied lane points at. */
const DONE: Place = { isReady: true, next: undefined, run: () => undefined };

export class PublisherOrder {
  private readonly lanes = new Map<string, Lane>();
  private onDrained: (() => void)[] = [];

  constructor(private readonly onError: (err: unknown, origin: string) => void) {}

  /** Whether `origin` has messages waiting, so that a new one must queue behind them. */
  busy(origin: string): boolean {
    return this.lanes.has(origin);
  }

  /** Runs `run` after every message of `origin` still waiting (a plain message behind ones in the stage). */
  after(origin: string, run: () => void): void {
    const place = new PlaceAfter(run);
    this.enqueue(origin, place);
    this.ready(origin, place);
  }

  /** Puts `place` (not yet ready, not in any lane) last in `origin`'s lane. */
  enqueue(origin: string, place: Place): void {
    const lane = this.lanes.get(origin);
    if (lane === undefined) this.lanes.set(origin, { head: place, tail: place, running: false });
    else {
      lane.tail.next = place;
      lane.tail = place;
    }
  }

  /** `place` may run; runs every ready place at the head of the lane, in order. */
  ready(origin: string, place: Place): void {
    place.isReady = true;
    const lane = this.lanes.get(origin);
    if (lane === undefined || lane.running) return;
    lane.running = true;
    for (;;) {
      const p = lane.head;
      if (!p.isReady) break;
      try {
        p.run();
      } catch (err) {
        this.onError(err, origin);
      }
      const next = p.next;
      if (next === undefined) {
        // the Map's dropped tables may still name this lane (see src/broker/inflight.ts): let go of the place
        lane.head = lane.tail = DONE;
        this.lanes.delete(origin);
        if (this.lanes.size === 0) this.drainedNow();
        return;
      }
      // Unlinked, so a place the GC has already moved to the old generation does not keep every
      // later place (and the payloads they hold) alive until the next full collection.
      p.next = undefined;
      lane.head = next;
    }
    lane.running = false;
  }

  /** Resolves once no lane has a message waiting. */
  drained(): Promise<void> {
    if (this.lanes.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.onDrained.push(resolve));
  }

  private drainedNow(): void {
    const waiting = this.onDrained;
    this.onDrained = [];
    for (const resolve of waiting) resolve();
  }
}
