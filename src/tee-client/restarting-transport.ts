// The `process` backend's answer to a trusted process that goes away (it crashed, was killed, or the
// `mqt-tz tee serve` service restarted): start or reach it again, with backoff, and go on.
//
// The host is untrusted, so nothing here is a security decision: the new trusted process loads its
// own sealed state and checks it (rollback counter, operator key) as at any start. What the host
// does check is that the same device answers (its X25519 and Ed25519 keys): a component with other
// keys (a wiped or swapped state directory, provisioned anew) is refused, and restarts stop, rather
// than silently serving clients a key they never pinned. Recipient groups die with the process;
// the next re-wrap of a topic is refused `group-unknown` and the broker forms the group again.
//
// While no trusted process is there, every call is refused (`internal`): protected messages are
// refused and counted, never delivered unprotected.
import { TeeError } from '../envelope/errors.js';
import type { Transport } from './host.js';

/** One trusted process, reached and initialised, and how to know that it is gone. */
export interface TrustedSession {
  transport: Transport;
  /** Settles, with what happened, once this process is gone. */
  gone: Promise<string>;
  /** Hex of the X25519 and Ed25519 public keys it reported after init. */
  identity: string;
}

export interface RestartEvents {
  lost(what: string): void;
  restored(pid: number | undefined, attempts: number): void;
  /** A start failed; `attempt` counts from 1 since the loss. */
  failed(err: Error, attempt: number): void;
  /** Restarts stop: a different device answered. */
  gaveUp(reason: string): void;
}

/** Which failed attempts to report: the 1st, 2nd, 4th, 8th… (a service down for hours logs a few lines, not one per attempt). */
export function isReportedAttempt(attempt: number): boolean {
  return (attempt & (attempt - 1)) === 0;
}

/** A start that cannot succeed by trying again (e.g. the process that would start it gave up root). */
export class CannotRestart extends Error {}

/** Backoff between attempts: 50 ms doubling to 5 s, so a service that restarts in a second is back within one. */
const FIRST_DELAY_MS = 50;
const MAX_DELAY_MS = 5000;

export class RestartingTransport implements Transport {
  private current: TrustedSession;
  private down: TeeError | undefined;
  private closing = false;
  private timer: NodeJS.Timeout | undefined;
  /** Times a trusted process was started again after one was lost. */
  restarts = 0;

  constructor(
    first: TrustedSession,
    private readonly start: () => Promise<TrustedSession>,
    private readonly events: RestartEvents,
  ) {
    this.current = first;
    this.watch(first);
  }

  get pid(): number | undefined {
    return this.down === undefined ? this.current.transport.pid : undefined;
  }

  call(command: number, params: Uint8Array): Promise<Uint8Array> {
    if (this.down !== undefined) return Promise.reject(this.down);
    return this.current.transport.call(command, params);
  }

  async close(): Promise<void> {
    this.closing = true;
    clearTimeout(this.timer);
    await this.current.transport.close();
  }

  private watch(session: TrustedSession): void {
    void session.gone.then((what) => {
      if (this.closing || session !== this.current) return;
      this.down = new TeeError('internal', `trusted component ${what}; starting it again`);
      this.events.lost(what);
      this.retry(1, FIRST_DELAY_MS);
    });
  }

  private retry(attempt: number, delayMs: number): void {
    this.timer = setTimeout(() => void this.attempt(attempt, delayMs), delayMs);
    this.timer.unref();
  }

  private async attempt(attempt: number, delayMs: number): Promise<void> {
    if (this.closing) return;
    let session: TrustedSession;
    try {
      session = await this.start();
    } catch (err) {
      if (err instanceof CannotRestart) {
        this.down = new TeeError('internal', err.message);
        this.events.gaveUp(err.message);
        return;
      }
      this.events.failed(err as Error, attempt);
      if (!this.closing) this.retry(attempt + 1, Math.min(delayMs * 2, MAX_DELAY_MS));
      return;
    }
    if (this.closing) {
      await session.transport.close();
      return;
    }
    if (session.identity !== this.current.identity) {
      await session.transport.close();
      const reason = 'a trusted component with other device keys answered (its state was replaced or provisioned anew); protected topics stay refused until the broker is restarted';
      this.down = new TeeError('internal', reason);
      this.events.gaveUp(reason);
      return;
    }
    this.current = session;
    this.down = undefined;
    this.restarts++;
    this.watch(session);
    this.events.restored(session.transport.pid, attempt);
  }
}
