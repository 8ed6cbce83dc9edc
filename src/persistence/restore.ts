/** Rebuilds the broker's memory from a loaded store: sessions, their queues and flows, wills, retained messages. */
import type { Broker } from '../broker/broker.js';
import { Deadline } from '../broker/deadline.js';
import type { Delivery } from '../broker/message.js';
import type { Session } from '../broker/session.js';
import type { GroupCommitJournal } from './journal.js';
import type { JournaledRetainedStore } from './retained.js';
import type { LoadedState, StoredDelivery } from './store.js';

const FOREVER = 0xffffffff;

export interface RestoreCounts {
  sessions: number;
  deliveries: number;
  retained: number;
  wills: number;
}

function deliveryOf(row: StoredDelivery, broker: Broker): Delivery {
  const message = row.message;
  return {
    message,
    payload: message.payload,
    lead: undefined,
    qos: row.qos,
    retain: row.retain,
    subscriptionIds: row.subscriptionIds,
    packetId: row.packetId,
    state: row.state === 2 ? 'pubrel' : 'publish',
    // stored in the publisher's form: a protected message is re-wrapped for its subscriber on resume
    inPublisherForm: broker.staysInPublisherForm(message.topic),
    storeId: row.id,
  };
}

export function restoreState(broker: Broker, state: LoadedState, journal: GroupCommitJournal, retained: JournaledRetainedStore, now = Date.now()): RestoreCounts {
  const sessions = new Map<string, Session>();
  for (const s of state.sessions) {
    const session = broker.newSession(s.clientId);
    session.expiryInterval = s.expiryInterval;
    for (const sub of s.subscriptions) {
      session.setSubscription(sub.key, { filter: sub.filter, group: sub.group, options: sub.options });
      broker.subscriptions.add(s.clientId, sub.filter, sub.options, sub.group);
    }
    if (s.expiryInterval !== FOREVER) {
      // connected when the broker stopped (expiresAt 0): offline from now on
      const at = s.expiresAt !== 0 ? s.expiresAt : now + s.expiryInterval * 1000;
      session.expiryTimer = new Deadline(at, () => broker.endSession(session));
    }
    journal.known(s.clientId);
    sessions.set(s.clientId, session);
  }
  let deliveries = 0;
  for (const row of state.deliveries) {
    const session = sessions.get(row.clientId);
    if (session === undefined) continue;
    session.restore(deliveryOf(row, broker));
    deliveries++;
  }
  for (const { clientId, packetId } of state.incoming) {
    const session = sessions.get(clientId);
    if (session !== undefined) (session.incomingQoS2 ??= new Set()).add(packetId);
  }
  let wills = 0;
  for (const w of state.wills) {
    const session = sessions.get(w.clientId);
    if (session === undefined) continue;
    broker.delayWill(session, w.message, w.publishAt);
    wills++;
  }
  for (const m of state.retained) retained.restore(m);
  // every restored session is offline; past limits.maxOfflineSessions the first ones end (wills published)
  for (const session of sessions.values()) broker.keepOffline(session);
  return { sessions: sessions.size, deliveries, retained: state.retained.length, wills };
}
