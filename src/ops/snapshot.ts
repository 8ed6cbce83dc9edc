/**
 * One reading of everything the operations surfaces show (/metrics, $SYS, the dashboard), taken
 * when asked for: the broker's own counters and tables are read as they are, nothing is counted
 * per message for it. Sessions are walked once per reading.
 */
import type { Broker, BrokerCounters } from '../broker/broker.js';
import type { TopicEstimate } from '../broker/topic-sample.js';
import type { ProtectionCounters } from '../protect/protected-topics.js';
import type { Protection } from '../protect/attach.js';
import type { LatencySnapshot, TeeStats, TrustedComponent } from '../tee-client/host.js';
import type { LoginLimiter } from '../auth/login-limiter.js';

/** What a reading is taken from (a RunningBroker has all of it). */
export interface Observed {
  readonly broker: Broker;
  readonly tee: TrustedComponent | undefined;
  readonly protection: Protection | undefined;
  readonly passwords: { readonly limiter: LoginLimiter; readonly refusedBusy: number };
  /** Durable state's group commits (undefined with `"persistence": false`). */
  readonly commitLatency: (() => LatencySnapshot) | undefined;
}

export interface SessionQueue {
  clientId: string;
  connected: boolean;
  queued: number;
  inflight: number;
}

export interface TeeReading {
  /** The trusted component answered the stats call (false: it failed or timed out). */
  up: boolean;
  /** Times the trusted process was lost and started again. */
  restarts: number;
  stats: TeeStats | undefined;
  latency: LatencySnapshot;
  protection: ProtectionCounters | undefined;
  protectedFilters: readonly string[];
}

export interface Snapshot {
  /** ms since the epoch */
  at: number;
  /** Seconds since the process started. */
  uptimeSeconds: number;
  counters: BrokerCounters;
  connections: number;
  clientsConnected: number;
  sessions: number;
  sessionsOffline: number;
  subscriptions: number;
  retained: number;
  queuedMessages: number;
  queuedBytes: number;
  inflightMessages: number;
  /** The sessions with the most waiting, most first. */
  busiestQueues: SessionQueue[];
  /** Logins refused unchecked (address over its limit, or too many checks running). */
  loginsRateLimited: number;
  tee: TeeReading | undefined;
  /** Durations of durable-state commits; undefined without persistence. */
  commitLatency: LatencySnapshot | undefined;
}

const TOP = 10;
const TEE_STATS_TIMEOUT_MS = 1000;

function withDeadline<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  return Promise.race([p.catch(() => undefined), late]).finally(() => clearTimeout(timer));
}

export type BrokerReading = Omit<Snapshot, 'tee'>;

/** The broker side only: synchronous, for $SYS and the first part of every reading. */
export function brokerReading(b: Observed): BrokerReading {
  const broker = b.broker;
  let queuedMessages = 0;
  let queuedBytes = 0;
  let inflightMessages = 0;
  let subscriptions = 0;
  let busiest: SessionQueue[] = [];
  for (const s of broker.sessions.values()) {
    queuedMessages += s.queue.length;
    queuedBytes += s.queuedBytes;
    inflightMessages += s.inflight.size;
    subscriptions += s.subscriptions.size;
    const waiting = s.queue.length + s.inflight.size;
    if (waiting > 0 && (busiest.length < TOP || waiting > busiest[busiest.length - 1]!.queued + busiest[busiest.length - 1]!.inflight)) {
      busiest.push({ clientId: s.clientId, connected: s.link !== null, queued: s.queue.length, inflight: s.inflight.size });
      busiest.sort((x, y) => y.queued + y.inflight - (x.queued + x.inflight));
      busiest = busiest.slice(0, TOP);
    }
  }
  const c = broker.counters;
  return {
    at: Date.now(),
    // the broker process's: mqt-tz runs one broker per process
    uptimeSeconds: Math.floor(process.uptime()),
    counters: { ...c, publishReceived: [...c.publishReceived], publishSent: [...c.publishSent] },
    connections: broker.connections.size,
    clientsConnected: broker.clients.size,
    sessions: broker.sessions.size,
    sessionsOffline: broker.sessions.size - broker.clients.size,
    subscriptions,
    retained: broker.retained.size,
    queuedMessages,
    queuedBytes,
    inflightMessages,
    busiestQueues: busiest,
    loginsRateLimited: b.passwords.limiter.refused + b.passwords.refusedBusy,
    commitLatency: b.commitLatency?.(),
  };
}

/** A full reading; the trusted component is asked for its counters (one call, off the hot path). */
export async function takeSnapshot(b: Observed): Promise<Snapshot> {
  const reading = brokerReading(b);
  if (!b.tee) return { ...reading, tee: undefined };
  const stats = await withDeadline(b.tee.stats(), TEE_STATS_TIMEOUT_MS);
  return {
    ...reading,
    tee: {
      up: stats !== undefined,
      restarts: b.tee.restarts,
      stats,
      latency: b.tee.callLatency(),
      protection: b.protection ? { ...b.protection.topics.counters } : undefined,
      protectedFilters: b.protection?.topics.filters ?? [],
    },
  };
}

/** The busiest topics with whether each is protected. */
export function busiestTopics(b: Observed, n = TOP): (TopicEstimate & { protected: boolean })[] {
  return b.broker.topicSample.top(n).map((t) => ({ ...t, protected: b.protection?.topics.applies(t.topic) ?? false }));
}
