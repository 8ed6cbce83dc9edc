// Liveness probe: a well-behaved client doing a QoS 1 round trip (PUBLISH, PUBACK and its own
// copy delivered back) every half second while the fuzzer runs.
import { randomBytes } from 'node:crypto';
import { connect, type MqttClient } from 'mqtt';

export const PROBE_INTERVAL_MS = 500;
export const HANG_MS = 5000;

export class Probe {
  private readonly sent = new Map<number, number>();
  private timer: NodeJS.Timeout | undefined;
  private counter = 0;
  private closedAt: number | undefined;
  private stopping = false;
  roundTrips = 0;
  maxRoundTripMs = 0;

  private constructor(private readonly client: MqttClient, private readonly topic: string) {
    client.on('message', (_topic, payload) => {
      const n = Number(payload.toString());
      const at = this.sent.get(n);
      if (at === undefined) return;
      this.sent.delete(n);
      this.roundTrips++;
      this.maxRoundTripMs = Math.max(this.maxRoundTripMs, Date.now() - at);
    });
    client.on('close', () => (this.closedAt ??= Date.now()));
    client.on('error', () => undefined); // surfaced as a close, checked by failure()
    this.timer = setInterval(() => this.tick(), PROBE_INTERVAL_MS);
  }

  static async start(port: number): Promise<Probe> {
    // The nonce keeps fuzzed sessions (whose ids and topics come from fixed pools) off the probe's.
    const nonce = randomBytes(6).toString('hex');
    const client = connect(`mqtt://127.0.0.1:${port}`, { protocolVersion: 5, clientId: `fuzz-probe-${nonce}`, reconnectPeriod: 0, connectTimeout: HANG_MS, keepalive: 30 });
    await new Promise<void>((resolve, reject) => {
      client.once('connect', () => resolve());
      client.once('error', reject);
      client.once('close', () => reject(new Error('probe connection closed before CONNACK')));
    });
    const topic = `fuzz-probe/${nonce}`;
    await client.subscribeAsync(topic, { qos: 1 });
    return new Probe(client, topic);
  }

  private tick(): void {
    if (this.closedAt !== undefined) return;
    const n = ++this.counter;
    this.sent.set(n, Date.now());
    this.client.publish(this.topic, String(n), { qos: 1 });
  }

  /** A hang (a round trip outstanding for HANG_MS) or the probe's connection dropped. */
  failure(): string | undefined {
    if (this.closedAt !== undefined && !this.stopping) return 'the broker closed the liveness probe\'s connection';
    const now = Date.now();
    for (const at of this.sent.values()) {
      if (now - at > HANG_MS) return `hang: a liveness round trip has been outstanding for ${now - at} ms (bound ${HANG_MS} ms)`;
    }
    return undefined;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    clearInterval(this.timer);
    await this.client.endAsync(true).catch(() => undefined);
  }
}
