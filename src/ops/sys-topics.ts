/**
 * `$SYS/broker/...` under mosquitto's names, published retained (QoS 0) every `sysInterval` seconds
 * by the broker itself, each topic only when its value changed (as mosquitto does). Values come from
 * brokerReading (no per-message work). Differences from mosquitto: `messages/received` and
 * `messages/sent` count PUBLISH packets (mosquitto counts every packet), the same as
 * `publish/messages/...`; `uptime` is the broker process's.
 */
import { makeMessage } from '../broker/message.js';
import { brokerReading, type BrokerReading, type Observed } from './snapshot.js';

const PERIODS: [string, number][] = [['1min', 60], ['5min', 300], ['15min', 900]];

/** Totals whose rate per minute is published as `load/NAME/{1,5,15}min`, averaged as mosquitto does. */
const LOADS: [string, (s: BrokerReading) => number][] = [
  ['messages/received', (s) => s.counters.messagesReceived],
  ['messages/sent', (s) => sum(s.counters.publishSent)],
  ['publish/received', (s) => s.counters.messagesReceived],
  ['publish/sent', (s) => sum(s.counters.publishSent)],
  ['publish/dropped', (s) => s.counters.dropped],
  ['bytes/received', (s) => s.counters.bytesReceived],
  ['bytes/sent', (s) => s.counters.bytesSent],
  ['connections', (s) => s.counters.connectionsAccepted],
];

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

export interface SysTopics {
  stop(): void;
}

export function startSysTopics(observed: Observed, intervalSeconds: number, version: string): SysTopics {
  const broker = observed.broker;
  const published = new Map<string, string>();
  const loads = new Map<string, number>();
  let previous = brokerReading(observed);
  let maxConnected = previous.clientsConnected;

  const publish = (name: string, value: string | number): void => {
    const topic = `$SYS/broker/${name}`;
    const text = String(value);
    if (published.get(topic) === text) return;
    published.set(topic, text);
    const message = makeMessage(topic, Buffer.from(text), 0, true, undefined, '');
    broker.retain(message);
    broker.route(message);
  };

  const tick = (): void => {
    const s = brokerReading(observed);
    const seconds = (s.at - previous.at) / 1000;
    maxConnected = Math.max(maxConnected, s.clientsConnected);
    publish('uptime', `${s.uptimeSeconds} seconds`);
    publish('clients/connected', s.clientsConnected);
    publish('clients/active', s.clientsConnected);
    publish('clients/disconnected', s.sessionsOffline);
    publish('clients/inactive', s.sessionsOffline);
    publish('clients/total', s.sessions);
    publish('clients/maximum', maxConnected);
    publish('messages/received', s.counters.messagesReceived);
    publish('messages/sent', sum(s.counters.publishSent));
    publish('publish/messages/received', s.counters.messagesReceived);
    publish('publish/messages/sent', sum(s.counters.publishSent));
    publish('publish/messages/dropped', s.counters.dropped);
    publish('bytes/received', s.counters.bytesReceived);
    publish('bytes/sent', s.counters.bytesSent);
    publish('subscriptions/count', s.subscriptions);
    publish('retained messages/count', s.retained);
    publish('store/messages/count', s.queuedMessages + s.inflightMessages);
    publish('store/messages/bytes', s.queuedBytes);
    publish('heap/current', process.memoryUsage().heapUsed);
    for (const [name, read] of LOADS) {
      // 0 at the first tick: every topic exists (retained) from the start
      const perMinute = seconds > 0 ? ((read(s) - read(previous)) / seconds) * 60 : 0;
      for (const [label, period] of PERIODS) {
        const key = `load/${name}/${label}`;
        // exponentially weighted, as mosquitto's load figures
        const k = Math.exp(-seconds / period);
        const value = (loads.get(key) ?? perMinute) * k + perMinute * (1 - k);
        loads.set(key, value);
        publish(key, value.toFixed(2));
      }
    }
    previous = s;
  };

  publish('version', `mqt-tz version ${version}`);
  tick();
  const timer = setInterval(tick, intervalSeconds * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
