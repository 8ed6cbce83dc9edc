/**
 * Prometheus series (prom-client). Every value is read from a Snapshot taken when /metrics is
 * scraped; nothing here runs per message. Node's own series (event loop lag, GC, memory, CPU)
 * come from prom-client's default metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics, type MetricObjectWithValues, type MetricValueWithName } from 'prom-client';
import type { LatencySnapshot } from '../tee-client/host.js';
import type { Snapshot } from './snapshot.js';

type Read = (s: Snapshot) => number | undefined;

/** prom-client declares its metric types as an enum it does not export at run time. */
const HISTOGRAM = 'histogram' as unknown as MetricObjectWithValues<MetricValueWithName<string>>['type'];

/** A histogram whose buckets are read at scrape time from timings the broker keeps (LatencyHistogram). */
class ReadHistogram extends Histogram {
  constructor(
    private readonly metricName: string,
    private readonly metricHelp: string,
    registry: Registry,
    private readonly read: () => LatencySnapshot | undefined,
  ) {
    super({ name: metricName, help: metricHelp, registers: [registry], buckets: [1] });
  }

  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    return this.getForPromString();
  }

  /** What prom-client's registry prints (it prefers this method to `get`). */
  async getForPromString(): Promise<MetricObjectWithValues<MetricValueWithName<string>>> {
    const h = this.read();
    const name = this.metricName;
    const values: MetricValueWithName<string>[] = [];
    if (h) {
      h.bucketsMs.forEach((ms, i) => values.push({ metricName: `${name}_bucket`, labels: { le: ms / 1000 }, value: h.cumulative[i]! }));
      values.push({ metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count });
      values.push({ metricName: `${name}_sum`, labels: {}, value: h.sumMs / 1000 });
      values.push({ metricName: `${name}_count`, labels: {}, value: h.count });
    }
    return { name, help: this.metricHelp, type: HISTOGRAM, values, aggregator: 'sum', collect: () => undefined };
  }
}

export class BrokerMetrics {
  readonly registry = new Registry();
  private current: Snapshot | undefined;

  /** `withTee`: the trusted-component series too (only when the broker runs one). */
  constructor(withTee: boolean) {
    collectDefaultMetrics({ register: this.registry });
    this.brokerSeries();
    if (withTee) this.teeSeries();
  }

  /** A counter whose total is read from the reading (prom-client counters only add: reset, then add it). */
  private counter(name: string, help: string, read: Read): void {
    const reading = (): Snapshot | undefined => this.current;
    new Counter({ name, help, registers: [this.registry], collect() { this.reset(); const s = reading(); const v = s && read(s); if (v !== undefined) this.inc(v); } });
  }

  private gauge(name: string, help: string, read: Read): void {
    const reading = (): Snapshot | undefined => this.current;
    new Gauge({ name, help, registers: [this.registry], collect() { const s = reading(); const v = s && read(s); if (v !== undefined) this.set(v); } });
  }

  /** A counter with one label, one read per label value. */
  private labelled(name: string, help: string, label: string, reads: Record<string, Read>): void {
    const reading = (): Snapshot | undefined => this.current;
    new Counter({
      name, help, labelNames: [label], registers: [this.registry],
      collect() {
        this.reset();
        const s = reading();
        if (!s) return;
        for (const [value, read] of Object.entries(reads)) {
          const v = read(s);
          if (v !== undefined) this.inc({ [label]: value }, v);
        }
      },
    });
  }

  private brokerSeries(): void {
    const counter = this.counter.bind(this);
    const gauge = this.gauge.bind(this);
    const labelled = this.labelled.bind(this);
    const byQos = (pick: (s: Snapshot) => readonly number[]): Record<string, Read> => ({ '0': (s) => pick(s)[0], '1': (s) => pick(s)[1], '2': (s) => pick(s)[2] });

    gauge('mqttz_connections', 'Open client network connections (connected or still in CONNECT)', (s) => s.connections);
    gauge('mqttz_clients_connected', 'Clients connected (CONNACK sent)', (s) => s.clientsConnected);
    counter('mqttz_connections_accepted_total', 'Client connections accepted by the listeners', (s) => s.counters.connectionsAccepted);
    gauge('mqttz_sessions', 'Sessions held, connected or not', (s) => s.sessions);
    gauge('mqttz_sessions_offline', 'Sessions kept for clients not connected', (s) => s.sessionsOffline);
    gauge('mqttz_subscriptions', 'Subscriptions of all sessions', (s) => s.subscriptions);
    labelled('mqttz_messages_received_total', 'PUBLISH packets received from clients, by QoS', 'qos', byQos((s) => s.counters.publishReceived));
    labelled('mqttz_messages_sent_total', 'PUBLISH packets sent to clients, by QoS', 'qos', byQos((s) => s.counters.publishSent));
    counter('mqttz_bytes_received_total', 'Bytes read from client connections', (s) => s.counters.bytesReceived);
    counter('mqttz_bytes_sent_total', 'Bytes written to client connections', (s) => s.counters.bytesSent);
    counter('mqttz_messages_dropped_total', 'QoS 1/2 deliveries dropped because a session queue was full', (s) => s.counters.dropped);
    counter('mqttz_malformed_packets_total', 'Malformed packets (each closed its connection)', (s) => s.counters.malformedPackets);
    counter('mqttz_handler_failures_total', 'Packets whose handler failed (a broker bug; each closed its connection)', (s) => s.counters.handlerFailures);
    gauge('mqttz_queued_messages', 'QoS 1/2 messages waiting in session queues (beyond the in-flight window)', (s) => s.queuedMessages);
    gauge('mqttz_queued_bytes', 'Payload bytes waiting in session queues', (s) => s.queuedBytes);
    gauge('mqttz_inflight_messages', 'QoS 1/2 messages sent and not yet acknowledged', (s) => s.inflightMessages);
    gauge('mqttz_retained_messages', 'Retained messages stored', (s) => s.retained);
    counter('mqttz_retained_dropped_total', 'Retained messages routed but not kept: limits.maxRetainedMessages was reached', (s) => s.counters.retainedDropped);
    counter('mqttz_logins_rate_limited_total', 'Logins refused unchecked: their address failed too often, or too many password checks were running', (s) => s.loginsRateLimited);
    new ReadHistogram('mqttz_persistence_commit_duration_seconds', 'Time each durable-state group commit took (one transaction per event-loop turn; acknowledgements wait for it)', this.registry, () => this.current?.commitLatency);
  }

  private teeSeries(): void {
    const counter = this.counter.bind(this);
    const gauge = this.gauge.bind(this);
    const labelled = this.labelled.bind(this);
    gauge('mqttz_tee_up', 'Whether the trusted component answered this scrape (1) or not (0)', (s) => (s.tee ? (s.tee.up ? 1 : 0) : undefined));
    counter('mqttz_tee_restarts_total', 'Times the trusted process was lost and started again', (s) => s.tee?.restarts);
    counter('mqttz_tee_calls_total', 'Calls into the trusted component', (s) => s.tee?.stats?.calls);
    counter('mqttz_tee_rewrap_calls_total', 'Re-wrap calls the host made (one per protected message routed, one more when its group had to be formed again)', (s) => s.tee?.protection?.rewrapCalls);
    counter('mqttz_tee_rewrapped_total', 'Recipient headers the trusted component made', (s) => s.tee?.stats?.rewrapped);
    counter('mqttz_tee_groups_formed_total', 'Recipient groups formed', (s) => s.tee?.stats?.groupsFormed);
    counter('mqttz_protected_messages_total', 'Protected PUBLISHes accepted for routing', (s) => s.tee?.protection?.accepted);
    labelled('mqttz_tee_refusals_total', 'Protected messages or recipients refused, by reason', 'reason', {
      'malformed-envelope': (s) => s.tee?.protection?.refusedMalformed,
      'wrong-sender': (s) => s.tee?.protection?.refusedSender,
      'message-refused': (s) => s.tee?.protection?.messagesRefused,
      'recipient-refused': (s) => s.tee?.protection?.recipientsRefused,
    });
    counter('mqttz_tee_key_cache_hits_total', 'Unsealed-key cache hits in the trusted component', (s) => s.tee?.stats?.cacheHits);
    counter('mqttz_tee_key_cache_misses_total', 'Unsealed-key cache misses (a sealed key read and unsealed)', (s) => s.tee?.stats?.cacheMisses);
    gauge('mqttz_tee_key_cache_keys', 'Unsealed keys held in the trusted component', (s) => s.tee?.stats?.cacheSize);
    counter('mqttz_tee_enrolments_total', 'Enrolments', (s) => s.tee?.stats?.enrolments);
    counter('mqttz_tee_revocations_total', 'Revocations', (s) => s.tee?.stats?.revocations);
    new ReadHistogram('mqttz_tee_call_duration_seconds', 'Round-trip time of calls to the trusted component (a batch of re-wraps is one call)', this.registry, () => this.current?.tee?.latency);
  }

  /** The Prometheus text for this reading. */
  async render(snapshot: Snapshot): Promise<string> {
    this.current = snapshot;
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
