// Host-side handle of the trusted component: the one interface the broker uses, with two
// backends behind it. `process` (default) runs the trusted code as its own OS process, so the
// broker never loads its keys; `inline` runs it in this process (tests, boundary cost).
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Reader, Writer, toBase64Url, toHex } from './bytes.js';
import { Dispatcher, STATS_FIELDS } from './commands.js';
import { GROUP_ID_BYTES } from './envelope-layout.js';
import type { SealedStorage, TeeStatsCounters } from './core.js';
import { TeeError, codeFromNumber, type RefusalCode } from './errors.js';
import { PromisedPart, RewrapBatcher } from './rewrap-batcher.js';
import { useBatchScheduling, type TeeScheduling } from './scheduling.js';
import { CMD, FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FrameDecoder, STORE_ABSENT, STORE_DELETE, STORE_FAILED, STORE_GET, STORE_OK, corkedWriter, encodeFrame, type Frame } from './wire.js';

export { TeeError, type RefusalCode, type TeeErrorCode } from './errors.js';
export type { TeeScheduling } from './scheduling.js';

/**
 * Unsealed client keys the trusted component keeps (about 9 KiB of its memory each). Sized above
 * the identities that publish and subscribe at once: an LRU smaller than a fleet that takes turns
 * hits nothing, and every message then reads and unseals its keys again (5 000 ECG patients with
 * 1 024: the trusted process at 73 % of a core against 53 % with all keys cached).
 */
export const DEFAULT_KEY_CACHE_SIZE = 8192;

/** Host-side storage of sealed blobs (src/store/sealed-blobs.ts implements it on SQLite). */
export interface BlobStore {
  get(name: string): Uint8Array | undefined | Promise<Uint8Array | undefined>;
  put(name: string, blob: Uint8Array): void | Promise<void>;
  delete(name: string): void | Promise<void>;
}

export interface TeeInfo {
  /** Hex of the raw X25519 public key clients send their keys to (HPKE). */
  x25519: string;
  /** Hex of the raw Ed25519 public key that signs enrolment and rotation responses. */
  ed25519: string;
  /** Hex SHA-256 of the trusted code (docs/protocol.md §5). */
  measurement: string;
  /** Hex SHA-256("mqt-tz/1 fingerprint" || x25519 || ed25519): what clients pin. */
  fingerprint: string;
  operatorPublicKey: string;
  openEnrolment: boolean;
  policySerial: number;
  /** base64url of the operator-signed endorsement statement, or null if none was set. */
  endorsement: string | null;
}

export type TeeStats = TeeStatsCounters;

export type RecipientResult =
  | { recipient: string; header: Uint8Array; refusal?: undefined }
  | { recipient: string; header?: undefined; refusal: RefusalCode };

/** One entry per recipient, in the order given. */
export type RewrapResult = RecipientResult[];

export interface FormedGroup {
  /** The group's random id: the last 16 bytes of every message part wrapped for it. */
  id: Uint8Array;
  /** One entry per member, in the order given: its member part (the end of its header) or a refusal. */
  members: RewrapResult;
}

/** Where a group re-wrap's answer goes: the shared part, or the refusal of the message. */
export interface RewrapReceiver {
  rewrapped(part: Uint8Array): void;
  refused(err: TeeError): void;
}

export interface TrustedComponent {
  /** OS process id of the trusted component (`process` backend); undefined when inline. */
  readonly pid: number | undefined;
  info(): Promise<TeeInfo>;
  enrol(request: Uint8Array): Promise<Uint8Array>;
  rotate(request: Uint8Array): Promise<Uint8Array>;
  revoke(signedRevocation: Uint8Array): Promise<void>;
  loadPolicy(signedPolicy: Uint8Array): Promise<void>;
  /** Stores an operator-signed endorsement of this component's keys and measurement. */
  setEndorsement(signedEndorsement: Uint8Array): Promise<void>;
  /** One call per PUBLISH: re-wrap the message's data key for every recipient in one batch. */
  rewrap(header: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RewrapResult>;
  /**
   * Forms (or re-forms) the recipient group `handle` for `topic`: checks each member like a re-wrap
   * recipient and wraps a fresh group key for each. A groupRewrap issued right after, without
   * waiting, already finds the group.
   */
  formGroup(handle: number, topic: string, members: readonly string[]): Promise<FormedGroup>;
  /**
   * One call per PUBLISH, whatever the number of recipients: the part of the recipients' headers
   * they all share, the data key wrapped under the group's key. Each recipient's header is this
   * part followed by its member part. Refused with `group-unknown` or `group-stale` when the group
   * must be formed again. Calls made in one turn of the event loop travel as one batch (0x0e).
   */
  groupRewrap(handle: number, header: Uint8Array, topic: string, sender: string): Promise<Uint8Array>;
  /**
   * `groupRewrap` for the hot path, the sender being the one the header names (copied from it, not
   * decoded): the answer goes to `to` (called later, never from inside this call), so a message
   * costs no Promise and no closure.
   */
  groupRewrapTo(handle: number, header: Uint8Array, topic: string, to: RewrapReceiver): void;
  /** Paper mode (benchmark baseline): whole envelope in, one re-encrypted envelope per recipient out. */
  reencrypt(envelope: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RewrapResult>;
  isEnrolled(identity: string): Promise<boolean>;
  stats(): Promise<TeeStats>;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Default 'process'. */
  backend?: 'process' | 'inline';
  store: BlobStore;
  /** Device secret file (created on first start); only the trusted side reads it. */
  deviceSecretPath: string;
  /** Raw 32-byte Ed25519 operator public key; must equal the one pinned on first start. */
  operatorPublicKey: Uint8Array;
  /** Bound of the unsealed-key LRU cache; default DEFAULT_KEY_CACHE_SIZE. */
  cacheSize?: number;
  /** Development only: enrolment without a token. A warning is emitted at start. */
  openEnrolment?: boolean;
  /** OS scheduling of the `process` backend (see scheduling.ts); default 'default'. */
  scheduling?: TeeScheduling;
  onWarning?: (message: string) => void;
  /** `process` backend: sees every byte crossing the pipe (the fuzzer records real sessions with it). */
  tap?: PipeTap;
}

/** Observer of the pipe to the trusted process: frames the host writes, chunks it reads. */
export interface PipeTap {
  toTee(frame: Uint8Array): void;
  fromTee(chunk: Uint8Array): void;
}

/** @internal How the host reaches the trusted code: a pipe to its process, or a call in this one. */
export interface Transport {
  readonly pid: number | undefined;
  call(command: number, params: Uint8Array): Promise<Uint8Array>;
  close(): Promise<void>;
}

function asyncStorage(store: BlobStore): SealedStorage {
  return {
    get: async (name) => store.get(name),
    put: async (name, blob) => store.put(name, blob),
    delete: async (name) => store.delete(name),
  };
}

const TEE_DIR = dirname(fileURLToPath(import.meta.url));

class ProcessTransport implements Transport {
  private readonly child: ChildProcess;
  /** Calls made in one turn of the event loop cross the pipe in one system call. */
  private readonly send: (frame: Uint8Array) => void;
  private readonly pending = new Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private exited: Promise<void>;
  private failure: TeeError | undefined;

  get pid(): number | undefined {
    return this.child.pid;
  }

  constructor(private readonly store: BlobStore, tap?: PipeTap) {
    this.child = spawn(process.execPath, [`${TEE_DIR}/main.js`], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
    const write = corkedWriter(this.child.stdin!);
    this.send = tap === undefined ? write : (frame) => {
      tap.toTee(frame);
      write(frame);
    };
    const decoder = new FrameDecoder((f) => this.onFrame(f));
    this.child.stdout!.on('data', (chunk: Buffer) => {
      tap?.fromTee(chunk);
      decoder.push(chunk);
    });
    this.child.stdin!.on('error', () => undefined); // surfaced through 'exit'
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        this.failure = new TeeError('internal', `trusted component process exited (${signal ?? code})`);
        for (const p of this.pending.values()) p.reject(this.failure);
        this.pending.clear();
        resolve();
      });
    });
  }

  call(command: number, params: Uint8Array): Promise<Uint8Array> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    this.send(encodeFrame(FRAME_COMMAND, id, command, params));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  private onFrame(f: Frame): void {
    if (f.type === FRAME_RESULT) {
      const p = this.pending.get(f.id);
      this.pending.delete(f.id);
      if (f.code === 0) p?.resolve(f.payload);
      else p?.reject(new TeeError(codeFromNumber(f.code), f.payload.toString()));
    } else if (f.type === FRAME_STORE_REQUEST) {
      void this.serveStore(f);
    }
  }

  /** The storage RPC: the trusted side asks for, writes or deletes one sealed blob. */
  private async serveStore(f: Frame): Promise<void> {
    let reply: Buffer;
    try {
      const r = new Reader(f.payload);
      const name = r.str16();
      if (f.code === STORE_GET) {
        const blob = await this.store.get(name);
        reply = blob === undefined ? encodeFrame(FRAME_STORE_REPLY, f.id, STORE_ABSENT) : encodeFrame(FRAME_STORE_REPLY, f.id, STORE_OK, blob);
      } else {
        if (f.code === STORE_DELETE) await this.store.delete(name);
        else await this.store.put(name, Uint8Array.from(r.rest()));
        reply = encodeFrame(FRAME_STORE_REPLY, f.id, STORE_OK);
      }
    } catch (err) {
      reply = encodeFrame(FRAME_STORE_REPLY, f.id, STORE_FAILED, Buffer.from((err as Error).message));
    }
    if (this.failure === undefined) this.send(reply);
  }

  async close(): Promise<void> {
    if (this.failure === undefined) this.child.stdin!.end();
    await this.exited;
  }
}

function inlineTransport(store: BlobStore): Transport {
  const dispatcher = new Dispatcher(asyncStorage(store), TEE_DIR);
  const call = (command: number, params: Uint8Array): Promise<Uint8Array> => {
    try {
      return Promise.resolve(dispatcher.handle(command, params));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  };
  return { pid: undefined, call, close: async () => undefined };
}

/** `str16 topic | str8 sender | u16 n | n x str8 recipient | data`, in one exactly sized buffer. */
function encodeBatch(topic: string, sender: string, recipients: readonly string[], data: Uint8Array): Uint8Array {
  let size = 2 + Buffer.byteLength(topic) + 1 + Buffer.byteLength(sender) + 2 + data.length;
  for (const r of recipients) size += 1 + Buffer.byteLength(r);
  const out = Buffer.allocUnsafe(size);
  let at = out.writeUInt16BE(Buffer.byteLength(topic), 0);
  at += out.write(topic, at);
  const str8 = (text: string): void => {
    const n = Buffer.byteLength(text);
    if (n > 255) throw new TeeError('bad-identity', `identity longer than 255 bytes: ${JSON.stringify(text.slice(0, 40))}`);
    out[at++] = n;
    at += out.write(text, at);
  };
  str8(sender);
  at = out.writeUInt16BE(recipients.length, at);
  for (const r of recipients) str8(r);
  out.set(data, at);
  return out;
}

function decodeResults(bytes: Uint8Array, recipients: readonly string[]): RewrapResult {
  return readResults(new Reader(bytes), recipients);
}

function readResults(r: Reader, recipients: readonly string[]): RewrapResult {
  const n = r.u16();
  if (n !== recipients.length) throw new TeeError('internal', `re-wrap returned ${n} results for ${recipients.length} recipients`);
  const out: RewrapResult = new Array<RecipientResult>(n);
  for (let i = 0; i < n; i++) {
    const code = r.u8();
    out[i] = code === 0 ? { recipient: recipients[i]!, header: r.bytes32() } : { recipient: recipients[i]!, refusal: codeFromNumber(code) as RefusalCode };
  }
  return out;
}

class Handle implements TrustedComponent {
  private readonly batcher: RewrapBatcher;

  constructor(private readonly t: Transport) {
    this.batcher = new RewrapBatcher(t);
  }

  get pid(): number | undefined {
    return this.t.pid;
  }

  async info(): Promise<TeeInfo> {
    const r = new Reader(await this.t.call(CMD.info, new Uint8Array(0)));
    const hex = (): string => toHex(r.take(32));
    const info = { x25519: hex(), ed25519: hex(), measurement: hex(), fingerprint: hex(), operatorPublicKey: hex(), openEnrolment: r.u8() === 1, policySerial: r.u64() };
    const endorsement = r.bytes16();
    return { ...info, endorsement: endorsement.length === 0 ? null : toBase64Url(endorsement) };
  }
  enrol(request: Uint8Array): Promise<Uint8Array> {
    return this.t.call(CMD.enrol, request);
  }
  rotate(request: Uint8Array): Promise<Uint8Array> {
    return this.t.call(CMD.rotate, request);
  }
  async revoke(signedRevocation: Uint8Array): Promise<void> {
    await this.t.call(CMD.revoke, signedRevocation);
  }
  async loadPolicy(signedPolicy: Uint8Array): Promise<void> {
    await this.t.call(CMD.loadPolicy, signedPolicy);
  }
  async setEndorsement(signedEndorsement: Uint8Array): Promise<void> {
    await this.t.call(CMD.setEndorsement, signedEndorsement);
  }
  async rewrap(header: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RewrapResult> {
    return decodeResults(await this.t.call(CMD.rewrap, encodeBatch(topic, sender, recipients, header)), recipients);
  }
  async formGroup(handle: number, topic: string, members: readonly string[]): Promise<FormedGroup> {
    const w = new Writer().u32(handle).str16(topic).u16(members.length);
    for (const m of members) w.str8(m);
    // A group lives as long as its topic: its parts are read from a copy of the answer, not left as
    // views of the pipe read it came in, which may hold tens of kilobytes of other answers.
    const r = new Reader(new Uint8Array(await this.t.call(CMD.formGroup, w.finish())));
    const id = r.take(GROUP_ID_BYTES);
    return { id, members: readResults(r, members) };
  }
  groupRewrap(handle: number, header: Uint8Array, topic: string, sender: string): Promise<Uint8Array> {
    const to = new PromisedPart();
    this.batcher.add(handle, header, topic, sender, to);
    return to.promise;
  }
  groupRewrapTo(handle: number, header: Uint8Array, topic: string, to: RewrapReceiver): void {
    this.batcher.add(handle, header, topic, undefined, to);
  }
  async reencrypt(envelope: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RewrapResult> {
    return decodeResults(await this.t.call(CMD.reencrypt, encodeBatch(topic, sender, recipients, envelope)), recipients);
  }
  async isEnrolled(identity: string): Promise<boolean> {
    return (await this.t.call(CMD.isEnrolled, new Writer().str8(identity).finish()))[0] === 1;
  }
  async stats(): Promise<TeeStats> {
    const r = new Reader(await this.t.call(CMD.stats, new Uint8Array(0)));
    const out = {} as Record<(typeof STATS_FIELDS)[number], number>;
    for (const f of STATS_FIELDS) out[f] = r.u64();
    return out;
  }
  close(): Promise<void> {
    return this.t.close();
  }
}

export async function openTrustedComponent(opts: OpenOptions): Promise<TrustedComponent> {
  if (opts.operatorPublicKey.length !== 32) throw new RangeError('operatorPublicKey must be a raw 32-byte Ed25519 public key');
  const transport = (opts.backend ?? 'process') === 'process' ? new ProcessTransport(opts.store, opts.tap) : inlineTransport(opts.store);
  const init = new Writer().u8(opts.openEnrolment === true ? 1 : 0).u32(opts.cacheSize ?? DEFAULT_KEY_CACHE_SIZE).raw(opts.operatorPublicKey).str16(opts.deviceSecretPath).finish();
  const warn = opts.onWarning ?? ((m: string) => process.emitWarning(m));
  try {
    await transport.call(CMD.init, init);
  } catch (err) {
    await transport.close();
    throw err;
  }
  if (transport.pid !== undefined && opts.scheduling === 'batch') await useBatchScheduling(transport.pid, warn);
  if (opts.openEnrolment === true) {
    warn('trusted component started with OPEN ENROLMENT: any client may enrol any unused identity without a token (development only)');
  }
  return new Handle(transport);
}
