/**
 * What the broker reports to a durable store as its state changes (src/persistence implements it).
 * Only persistent sessions (expiry > 0) report: clean sessions and QoS 0 never reach it. Calls
 * only record; a group commit writes them later, and `afterCommit` tells when.
 */
import type { Delivery, Message } from './message.js';
import type { Session } from './session.js';

export interface StateJournal {
  /** Bumped by every recorded change: a PUBLISH compares it before and after routing. */
  readonly changes: number;
  /** Acknowledgements are waiting for a commit (a later one must not overtake them). */
  readonly waiting: boolean;
  /** The session's expiry, connection state or subscriptions changed (expiry 0 = no longer persistent). */
  sessionChanged(session: Session): void;
  sessionEnded(session: Session): void;
  /** A QoS 1/2 delivery was queued or sent to a persistent session. */
  deliveryAdded(session: Session, d: Delivery): void;
  /** Its packet id or QoS 2 state changed. */
  deliveryChanged(d: Delivery): void;
  /** The delivery's row is committed (it was added in a batch the store has written). */
  isCommitted(d: Delivery): boolean;
  /** Completed, expired, or dropped: forgotten once committed. */
  deliveryDone(d: Delivery): void;
  incomingQoS2(session: Session, packetId: number, waiting: boolean): void;
  willScheduled(session: Session, message: Message, publishAt: number): void;
  willGone(session: Session): void;
  retained(topic: string, message: Message | null): void;
  /** Runs `fn` once everything recorded so far is committed, in call order. */
  afterCommit(fn: (committed: boolean) => void): void;
}

/**
 * Sends an acknowledgement now if nothing was recorded since the journal counted `changes` and no
 * acknowledgement is waiting; otherwise once the commit holding those changes is done (`failed`
 * instead if it failed), so acknowledgements leave in order and never ahead of their data.
 */
export function whenStored(journal: StateJournal | undefined, changes: number, send: () => void, failed: () => void): void {
  if (journal === undefined || (journal.changes === changes && !journal.waiting)) send();
  else journal.afterCommit((committed) => (committed ? send() : failed()));
}
