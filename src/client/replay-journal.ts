// The subscriber's replay window kept across restarts: written through the key store (next to
// the key file), at most once per interval and on close, so a restarted subscriber refuses
// messages it already took. Browser-safe. What a crash between two writes leaves open, and how a
// maximum age closes it: docs/protocol.md §3.
import { ReplayWindow, type ReplaySnapshot } from './crypto/replay.js';
import { KeyFileError, type KeyStore } from './key-store.js';

const FORMAT = 'mqt-tz replay state';

export function encodeReplayState(s: ReplaySnapshot): string {
  return JSON.stringify({ format: FORMAT, version: 1, ...s });
}

/** `where` names the source in errors. */
export function decodeReplayState(text: string, where: string): ReplaySnapshot {
  const bad = (why: string): KeyFileError =>
    new KeyFileError(`${where} is not a valid mqt-tz replay state (${why}); delete it to start with an empty replay window (messages taken before could then be accepted once more)`);
  let o: Partial<ReplaySnapshot> & { format?: unknown; version?: unknown };
  try {
    o = JSON.parse(text) as typeof o;
  } catch {
    throw bad('not JSON');
  }
  if (typeof o !== 'object' || o === null || o.format !== FORMAT || o.version !== 1) throw bad('format or version');
  if (!Number.isInteger(o.size) || !Array.isArray(o.senders)) throw bad('size or senders missing');
  for (const e of o.senders) {
    if (typeof e !== 'object' || e === null || typeof e.sender !== 'string' || !Number.isSafeInteger(e.max) || e.max < 0 || typeof e.seen !== 'string' || !/^[A-Za-z0-9_-]*$/.test(e.seen) || e.seen.length % 4 === 1) {
      throw bad('a sender entry is malformed');
    }
  }
  return { size: o.size!, senders: o.senders };
}

export interface ReplayOptions {
  windowSize?: number;
  maxAgeSeconds?: number;
  /** Longest time between an accepted message and the write that records it; default 1000 ms. */
  saveIntervalMs?: number;
}

/** Writes the window's state through the key store at most once per interval; flush() writes now. */
export class ReplayJournal {
  private timer: ReturnType<typeof setTimeout> | undefined;
  private dirty = false;
  private writing: Promise<void> = Promise.resolve();

  constructor(
    readonly window: ReplayWindow,
    private readonly save: (text: string) => Promise<void>,
    private readonly intervalMs: number,
    private readonly onError: (err: Error) => void,
  ) {}

  /** Call after each accepted message. */
  changed(): void {
    this.dirty = true;
    if (this.timer !== undefined) return;
    this.timer = setTimeout(() => void this.flush().catch(this.onError), this.intervalMs);
    // Node: a pending write must not keep the process alive (close() writes it anyway)
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** Writes the current state if anything changed since the last write; resolves once it is stored. */
  flush(): Promise<void> {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.dirty) return this.writing;
    this.dirty = false;
    const text = encodeReplayState(this.window.snapshot());
    const write = this.writing.catch(() => undefined).then(() => this.save(text));
    this.writing = write.catch((err: unknown) => {
      this.dirty = true; // written again with the next change or flush
      throw err;
    });
    return this.writing;
  }
}

function checkOptions(o: ReplayOptions): void {
  if (o.maxAgeSeconds !== undefined && !(o.maxAgeSeconds > 0)) throw new RangeError(`maxAgeSeconds must be a positive number, got ${o.maxAgeSeconds}`);
  if (o.saveIntervalMs !== undefined && !(Number.isInteger(o.saveIntervalMs) && o.saveIntervalMs >= 0)) {
    throw new RangeError(`replayStateIntervalMs must be a whole number of milliseconds >= 0, got ${o.saveIntervalMs}`);
  }
}

/** A replay window, and where it is kept when the key store can keep it. */
export interface RestoredReplay {
  window: ReplayWindow;
  keep?: { save: (text: string) => Promise<void>; intervalMs: number };
}

/** The replay window for a new client: restored from the key store's replay state when it has one. */
export async function openReplayWindow(store: KeyStore | undefined, o: ReplayOptions): Promise<RestoredReplay> {
  checkOptions(o);
  const window = new ReplayWindow(o.windowSize, o.maxAgeSeconds === undefined ? undefined : o.maxAgeSeconds * 1000);
  const load = store?.loadReplayState?.bind(store);
  const save = store?.saveReplayState?.bind(store);
  if (load === undefined || save === undefined) return { window };
  const text = await load();
  if (text !== undefined) window.restore(decodeReplayState(text, 'the stored replay state'));
  return { window, keep: { save, intervalMs: o.saveIntervalMs ?? 1000 } };
}
