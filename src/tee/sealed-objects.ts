// Sealed state as one tamper-evident whole. A sealed manifest names every object the trusted
// component keeps with the version (the counter value) it was last written at; the manifest carries
// the counter it was written at, and the counter itself lives in the trusted component's state
// directory, out of the host's reach once the trusted process has its own OS user (RPMB on
// hardware). Each object is sealed with its name and version as associated data and stored under
// `name#version`, so:
//   - a missing object, or one the manifest does not name, is not an open or empty default: the
//     manifest says what must be there (sealed-missing);
//   - an older or swapped blob fails to unseal (sealed-invalid);
//   - an older manifest (the whole store rolled back) is below the counter (state-rollback).
// Writes are group-committed: what is written while a commit is in flight goes out together in the
// next one (objects, then the manifest at counter n+1, then the counter raised to n+1). A caller's
// write resolves only once its commit is durable, so nothing is answered before it is committed.
import { Reader } from '../envelope/bytes.js';
import type { SealedStorage } from '../envelope/wire.js';
import { TeeError } from '../envelope/errors.js';
import type { Sealer } from './seal.js';
import type { StateDir } from './state-dir.js';

export const MANIFEST = 'tee/manifest';
/** The manifest's own seal version: its counter is inside, authenticated, and checked against the counter file. */
const MANIFEST_SEAL_VERSION = 0;

/** Where a version of an object is stored: never overwritten in place, so a crash mid-commit leaves the last committed version readable. */
export function storageName(name: string, version: number): string {
  return `${name}#${version}`;
}

/** `u64 counter | u32 n | n x (str16 name | u64 version)`, written straight into one buffer (rewritten on every commit: thousands of entries). */
function encodeManifest(counter: number, entries: ReadonlyMap<string, number>): Buffer {
  let size = 12;
  const names: Buffer[] = [];
  for (const name of entries.keys()) {
    const b = Buffer.from(name);
    names.push(b);
    size += 10 + b.length;
  }
  const out = Buffer.allocUnsafe(size);
  const u64 = (v: number, at: number): number => {
    out.writeUInt32BE(Math.floor(v / 2 ** 32), at);
    return out.writeUInt32BE(v >>> 0, at + 4);
  };
  let at = u64(counter, 0);
  at = out.writeUInt32BE(entries.size, at);
  let i = 0;
  for (const version of entries.values()) {
    const name = names[i++]!;
    at = out.writeUInt16BE(name.length, at);
    at += name.copy(out, at);
    at = u64(version, at);
  }
  return out;
}

function parseManifest(bytes: Uint8Array): { counter: number; entries: Map<string, number> } {
  const r = new Reader(bytes);
  const counter = r.u64('manifest counter');
  const entries = new Map<string, number>();
  for (let n = r.u32('manifest entries'); n > 0; n--) entries.set(r.str16('object name'), r.u64('object version'));
  r.end('manifest');
  return { counter, entries };
}

export class SealedObjects {
  private queued = new Map<string, Buffer | null>();
  private nextCommit: Promise<void> | undefined;
  private lastCommit: Promise<unknown> = Promise.resolve();
  /** Manifest writes, for the stats and the benchmark of large fleets. */
  commits = 0;

  private constructor(
    private readonly storage: SealedStorage,
    private readonly sealer: Sealer,
    private readonly stateDir: StateDir,
    private entries: Map<string, number>,
    private counter: number,
  ) {}

  /** A fresh component: no objects yet; `initial` becomes the first commit (counter 1). */
  static async provision(storage: SealedStorage, sealer: Sealer, stateDir: StateDir, initial: ReadonlyArray<[string, Uint8Array]>): Promise<SealedObjects> {
    const objects = new SealedObjects(storage, sealer, stateDir, new Map(), 0);
    await objects.write(initial);
    return objects;
  }

  /** Reads the manifest and checks it against the counter: the same, or one ahead after a crash between its two last steps. */
  static async open(storage: SealedStorage, sealer: Sealer, stateDir: StateDir, counter: number): Promise<SealedObjects> {
    const blob = await storage.get(MANIFEST);
    if (blob === undefined) throw new TeeError('sealed-missing', `sealed object ${MANIFEST} is missing from the store (the trusted counter is at ${counter})`);
    const m = parseManifest(sealer.unseal(MANIFEST, MANIFEST_SEAL_VERSION, blob));
    if (m.counter < counter) throw new TeeError('state-rollback', `sealed object ${MANIFEST} was written at counter ${m.counter}, older than the trusted counter ${counter}: the store was rolled back`);
    if (m.counter > counter + 1) throw new TeeError('state-rollback', `sealed object ${MANIFEST} was written at counter ${m.counter}, but the trusted counter ${stateDir.counterPath} is at ${counter}: the counter was rolled back`);
    if (m.counter === counter + 1) stateDir.writeCounter(m.counter); // the last commit's manifest landed, its counter raise did not
    return new SealedObjects(storage, sealer, stateDir, m.entries, m.counter);
  }

  get size(): number {
    return this.entries.size;
  }

  /** True when the committed manifest names `name`. */
  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The object's plaintext; undefined only when the manifest does not name it. */
  async read(name: string): Promise<Buffer | undefined> {
    const version = this.entries.get(name);
    if (version === undefined) return undefined;
    const blob = await this.storage.get(storageName(name, version));
    if (blob === undefined) throw new TeeError('sealed-missing', `sealed object ${name} (version ${version}) is missing from the store`);
    return this.sealer.unseal(name, version, blob);
  }

  /**
   * Queues writes (a plaintext) and deletions (null) for the next commit and resolves once it is
   * durable. The plaintexts are copied now: callers may zero theirs.
   */
  write(changes: Iterable<readonly [string, Uint8Array | null]>): Promise<void> {
    for (const [name, plain] of changes) this.queued.set(name, plain === null ? null : Buffer.from(plain));
    this.nextCommit ??= this.lastCommit.then(() => this.commitQueued());
    return this.nextCommit;
  }

  private commitQueued(): Promise<void> {
    const batch = this.queued;
    this.queued = new Map();
    this.nextCommit = undefined;
    const done = this.commit(batch);
    this.lastCommit = done.catch(() => undefined); // a failed commit changes nothing committed; the next one starts from it
    return done;
  }

  private async commit(batch: Map<string, Buffer | null>): Promise<void> {
    // Another instance over the same state directory (an operator command given --data while the
    // broker runs) would have its commits overwritten by ours: refuse instead of losing them.
    const onDisk = this.stateDir.counter();
    if (onDisk !== undefined && onDisk !== this.counter) {
      throw new TeeError('state-conflict', `the counter ${this.stateDir.counterPath} is at ${onDisk}, not at this component's ${this.counter}: another instance wrote this state; restart (operator commands reach a running broker with --broker)`);
    }
    const counter = this.counter + 1;
    const entries = new Map(this.entries);
    const superseded: string[] = [];
    const puts: Promise<void>[] = [];
    for (const [name, plain] of batch) {
      const old = entries.get(name);
      if (old !== undefined) superseded.push(storageName(name, old));
      if (plain === null) {
        entries.delete(name);
        continue;
      }
      entries.set(name, counter);
      puts.push(this.storage.put(storageName(name, counter), this.sealer.seal(name, counter, plain)));
      plain.fill(0);
    }
    await Promise.all(puts);
    await this.storage.put(MANIFEST, this.sealer.seal(MANIFEST, MANIFEST_SEAL_VERSION, encodeManifest(counter, entries)));
    this.stateDir.writeCounter(counter);
    this.entries = entries;
    this.counter = counter;
    this.commits++;
    // Superseded versions are garbage now; a host that keeps them gains nothing (they name an older version).
    for (const s of superseded) this.storage.delete(s).catch(() => undefined);
  }
}
