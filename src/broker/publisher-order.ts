/**
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

  /** Runs `run` after every message of `origin` still waiting (a plain message behind staged ones). */
  after(origin: string, run: () => void): void {
    const place: Place = { isReady: false, next: undefined, run };
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
