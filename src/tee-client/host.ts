// Host-side handle of the trusted component: the one interface the broker uses, with two
// backends behind it. `process` (default) runs the trusted code as its own OS process, so the
// broker never loads its keys; `inline` runs it in this process (tests, boundary cost).
import { spawn } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Reader, Writer, toBase64Url, toHex } from '../envelope/bytes.js';
import { BUILD_BENCHMARK, BUILD_PRODUCTION, MODE_OPEN, MODE_TOKEN } from '../envelope/messages.js';
import { GROUP_ID_BYTES } from '../envelope/envelope-layout.js';
import { TeeError, codeFromNumber, type RefusalCode } from '../envelope/errors.js';
import { PromisedPart, RewrapBatcher } from './rewrap-batcher.js';
import { useBatchScheduling, type TeeScheduling } from './scheduling.js';
import { RestartingTransport, isReportedAttempt, type RestartEvents, type TrustedSession } from './restarting-transport.js';
import { LatencyHistogram, type LatencySnapshot } from '../latency-histogram.js';
import { CMD, NOT_ASKED, STATS_FIELDS, type SealedStorage, type TeeStatsCounters, FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FrameDecoder, STORE_ABSENT, STORE_DELETE, STORE_FAILED, STORE_GET, STORE_OK, corkedWriter, encodeFrame, type Frame } from '../envelope/wire.js';

export { TeeError, type RefusalCode, type TeeErrorCode } from '../envelope/errors.js';
export type { LatencySnapshot } from '../latency-histogram.js';
export type { TeeScheduling } from './scheduling.js';
export { isReportedAttempt, type RestartEvents } from './restarting-transport.js';

/**
 * Unsealed client keys the trusted component keeps (two subkeys and grants each). Sized above
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
  /** Hex SHA-256 over the keys, operator key, enrolment mode and build kind (docs/protocol.md §2): what clients pin. */
  fingerprint: string;
  /** Hex of the operator's raw Ed25519 public key, sealed at provisioning. */
  operatorPublicKey: string;
  /** Provisioned for open enrolment (development only): enrolment without a token. */
  openEnrolment: boolean;
  /** 'benchmark': provisioned for benchmarks only (pinned clients refuse it unless they opt in). */
  build: BuildKind;
  policySerial: number;
  /** base64url of the operator-signed endorsement statement, or null if none was set. */
  endorsement: string | null;
}

export type TeeStats = TeeStatsCounters;
export type BuildKind = 'production' | 'benchmark';
export type EnrolmentMode = 'token' | 'open';

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
  /** OS process id of the trusted component (`process` backend); undefined when inline or while it is being started again. */
  readonly pid: number | undefined;
  /** Times the trusted process was lost and started again (`process` backend). */
  readonly restarts: number;
  info(): Promise<TeeInfo>;
  enrol(request: Uint8Array): Promise<Uint8Array>;
  rotate(request: Uint8Array): Promise<Uint8Array>;
  revoke(signedRevocation: Uint8Array): Promise<void>;
  loadPolicy(signedPolicy: Uint8Array): Promise<void>;
  /** Stores an operator-signed endorsement of this component's keys and measurement. */
  setEndorsement(signedEndorsement: Uint8Array): Promise<void>;
  /** Applies an operator-signed change of enrolment mode (the fingerprint changes with it). */
  changeMode(signedModeChange: Uint8Array): Promise<void>;
  /** Applies an operator-signed hand-over to another operator key (the fingerprint changes, the endorsement is dropped). */
  changeOperator(signedOperatorChange: Uint8Array): Promise<void>;
  /**
   * One message for a list of recipients, for tools and tests: a one-off group (formGroup on a handle
   * counted down from 2^32 - 1, far from the broker's, which count up from 1), then one re-wrap of
   * the message for it. Each header is the shared part followed by the recipient's member part.
   */
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
  isEnrolled(identity: string): Promise<boolean>;
  stats(): Promise<TeeStats>;
  /** Round-trip times of the calls so far (a batch of re-wraps is one call), kept by the host. */
  callLatency(): LatencySnapshot;
  close(): Promise<void>;
}

export interface OpenOptions {
  /** Default 'process'. */
  backend?: 'process' | 'inline';
  store: BlobStore;
  /** The trusted component's own state directory (device secret, counter); only the trusted side reads it. */
  stateDir: string;
  /**
   * Raw 32-byte Ed25519 operator public key. Provisions an empty state directory (required then);
   * a provisioned component refuses to start when it differs from the sealed one (operator-mismatch).
   */
  operatorPublicKey?: Uint8Array;
  /** Enrolment mode to provision, or to insist on (provisioning-mismatch otherwise); default: as provisioned, token for a new one. */
  enrolmentMode?: EnrolmentMode;
  /** Build kind to provision, or to insist on; default: as provisioned, production for a new one. */
  build?: BuildKind;
  /** Bound of the unsealed-key LRU cache; default DEFAULT_KEY_CACHE_SIZE. */
  cacheSize?: number;
  /** OS scheduling of the `process` backend (see scheduling.ts); default 'default'. */
  scheduling?: TeeScheduling;
  onWarning?: (message: string) => void;
  /**
   * How the `process` backend reaches the trusted side; default: spawn it as a child of this
   * process (src/tee-client/ has one that spawns it as another OS user, and one that connects to
   * `mqt-tz tee serve`).
   */
  channel?: () => FrameChannel;
  /** `process` backend: sees every byte crossing to and from the trusted side (the fuzzer records real sessions with it). */
  tap?: PipeTap;
  /** `process` backend: what to report when the trusted process is lost and started again; default: warnings. */
  onRestart?: RestartEvents;
}

/** @internal A byte stream of frames to the trusted side and back (a child's pipes, a Unix socket). */
export interface FrameChannel {
  readonly pid: number | undefined;
  readonly input: Readable;
  readonly output: Writable;
  /** Settles, with what happened, once the trusted side is gone (process exited, connection closed). */
  readonly gone: Promise<string>;
}

/** Observer of the frames to and from the trusted side: frames the host writes, chunks it reads. */
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

/** Where the trusted code's entry point (main.js) and its files are. */
const TEE_DIR = join(dirname(fileURLToPath(import.meta.url)), '../tee');

/** The trusted process as a child of this one, its frames on stdin/stdout; `args` go to src/tee/main.ts. */
export function spawnTrustedProcess(args: readonly string[] = []): FrameChannel {
  const child = spawn(process.execPath, [`${TEE_DIR}/main.js`, ...args], { stdio: ['pipe', 'pipe', 'inherit'], env: {} });
  const gone = new Promise<string>((resolve) => child.on('exit', (code, signal) => resolve(`process exited (${signal ?? code})`)));
  return { pid: child.pid, input: child.stdout!, output: child.stdin!, gone };
}

class ProcessTransport implements Transport {
  /** Calls made in one turn of the event loop cross the pipe in one system call. */
  private readonly send: (frame: Uint8Array) => void;
  private readonly pending = new Map<number, { resolve: (r: Uint8Array) => void; reject: (e: Error) => void; sentAt: number }>();
  private nextId = 1;
  private exited: Promise<void>;
  private failure: TeeError | undefined;

  get pid(): number | undefined {
    return this.channel.pid;
  }

  get gone(): Promise<string> {
    return this.channel.gone;
  }

  constructor(
    private readonly store: BlobStore,
    private readonly latency: LatencyHistogram,
    private readonly channel: FrameChannel,
    tap?: PipeTap,
  ) {
    const write = corkedWriter(channel.output);
    this.send = tap === undefined ? write : (frame) => {
      tap.toTee(frame);
      write(frame);
    };
    const decoder = new FrameDecoder((f) => this.onFrame(f));
    channel.input.on('data', (chunk: Buffer) => {
      tap?.fromTee(chunk);
      decoder.push(chunk);
    });
    channel.output.on('error', () => undefined); // surfaced through `gone`
    this.exited = channel.gone.then((what) => {
      this.failure = new TeeError('internal', `trusted component ${what}`);
      for (const p of this.pending.values()) p.reject(this.failure);
      this.pending.clear();
    });
  }

  call(command: number, params: Uint8Array): Promise<Uint8Array> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    const id = this.nextId;
    this.nextId = (this.nextId + 1) >>> 0 || 1;
    this.send(encodeFrame(FRAME_COMMAND, id, command, params));
    const sentAt = performance.now();
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject, sentAt }));
  }

  private onFrame(f: Frame): void {
    if (f.type === FRAME_RESULT) {
      const p = this.pending.get(f.id);
      this.pending.delete(f.id);
      if (p) this.latency.observe(performance.now() - p.sentAt);
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
    if (this.failure === undefined) this.channel.output.end();
    await this.exited;
  }
}

/**
 * The trusted code in this process, loaded on first use: a broker with the `process` backend never
 * loads it. Calls wait for the load, then run as the dispatcher answers them.
 */
async function inlineTransport(store: BlobStore, latency: LatencyHistogram): Promise<Transport> {
  const { Dispatcher } = await import('../tee/commands.js');
  const dispatcher = new Dispatcher(asyncStorage(store), TEE_DIR);
  const call = (command: number, params: Uint8Array): Promise<Uint8Array> => {
    const start = performance.now();
    try {
      return Promise.resolve(dispatcher.handle(command, params));
    } catch (err) {
      return Promise.reject(err as Error);
    } finally {
      latency.observe(performance.now() - start);
    }
  };
  return { pid: undefined, call, close: async () => undefined };
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
  private nextOneOffHandle = 0xffff_ffff;

  constructor(
    private readonly t: Transport,
    private readonly latency: LatencyHistogram,
  ) {
    this.batcher = new RewrapBatcher(t);
  }

  get pid(): number | undefined {
    return this.t.pid;
  }

  get restarts(): number {
    return this.t instanceof RestartingTransport ? this.t.restarts : 0;
  }

  async info(): Promise<TeeInfo> {
    const r = new Reader(await this.t.call(CMD.info, new Uint8Array(0)));
    const hex = (): string => toHex(r.take(32));
    const keys = { x25519: hex(), ed25519: hex(), measurement: hex(), fingerprint: hex(), operatorPublicKey: hex() };
    const info = { ...keys, openEnrolment: r.u8() === MODE_OPEN, build: r.u8() === BUILD_BENCHMARK ? ('benchmark' as const) : ('production' as const), policySerial: r.u64() };
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
  async changeMode(signedModeChange: Uint8Array): Promise<void> {
    await this.t.call(CMD.setMode, signedModeChange);
  }
  async changeOperator(signedOperatorChange: Uint8Array): Promise<void> {
    await this.t.call(CMD.setOperator, signedOperatorChange);
  }
  async rewrap(header: Uint8Array, topic: string, sender: string, recipients: readonly string[]): Promise<RewrapResult> {
    const handle = this.nextOneOffHandle;
    this.nextOneOffHandle = this.nextOneOffHandle - 1 || 0xffff_ffff;
    const group = await this.formGroup(handle, topic, recipients);
    const part = await this.groupRewrap(handle, header, topic, sender);
    return group.members.map((m) => (m.header === undefined ? m : { recipient: m.recipient, header: Buffer.concat([part, m.header]) }));
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
  async isEnrolled(identity: string): Promise<boolean> {
    return (await this.t.call(CMD.isEnrolled, new Writer().str8(identity).finish()))[0] === 1;
  }
  callLatency(): LatencySnapshot {
    return this.latency.snapshot();
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
  if (opts.operatorPublicKey !== undefined && opts.operatorPublicKey.length !== 32) throw new RangeError('operatorPublicKey must be a raw 32-byte Ed25519 public key');
  const latency = new LatencyHistogram();
  const mode = opts.enrolmentMode === undefined ? NOT_ASKED : opts.enrolmentMode === 'open' ? MODE_OPEN : MODE_TOKEN;
  const build = opts.build === undefined ? NOT_ASKED : opts.build === 'benchmark' ? BUILD_BENCHMARK : BUILD_PRODUCTION;
  const init = new Writer().u32(opts.cacheSize ?? DEFAULT_KEY_CACHE_SIZE).str16(opts.stateDir).u8(mode).u8(build).raw(opts.operatorPublicKey ?? new Uint8Array(0)).finish();
  const warn = opts.onWarning ?? ((m: string) => process.emitWarning(m));
  let transport: Transport;
  if ((opts.backend ?? 'process') === 'process') {
    // Every start, the first and each after a loss, sends the same init: the trusted side checks it
    // against what it sealed, as it does at any start.
    const start = async (): Promise<TrustedSession> => {
      const t = new ProcessTransport(opts.store, latency, (opts.channel ?? spawnTrustedProcess)(), opts.tap);
      let identity: string;
      try {
        await t.call(CMD.init, init);
        identity = toHex(new Reader(await t.call(CMD.info, new Uint8Array(0))).take(64));
      } catch (err) {
        await t.close();
        throw err;
      }
      if (t.pid !== undefined && opts.scheduling === 'batch') await useBatchScheduling(t.pid, warn);
      return { transport: t, gone: t.gone, identity };
    };
    transport = new RestartingTransport(await start(), start, opts.onRestart ?? warnOnRestart(warn));
  } else {
    transport = await inlineTransport(opts.store, latency);
    try {
      await transport.call(CMD.init, init);
    } catch (err) {
      await transport.close();
      throw err;
    }
  }
  const handle = new Handle(transport, latency);
  let info: TeeInfo;
  try {
    info = await handle.info();
  } catch (err) {
    await transport.close();
    throw err;
  }
  if (info.openEnrolment) warn('trusted component provisioned for OPEN ENROLMENT: any client may enrol any unused identity without a token (development only; pinned clients refuse it unless they opt in)');
  if (info.build === 'benchmark') warn('trusted component provisioned as a BENCHMARK build (pinned clients refuse it unless they opt in)');
  return handle;
}

/** Restart events as warnings (failed starts: those isReportedAttempt picks). */
function warnOnRestart(warn: (message: string) => void): RestartEvents {
  return {
    lost: (what) => warn(`trusted component ${what}: protected messages are refused until it is back`),
    restored: (pid, attempts) => warn(`trusted component started again (pid ${pid ?? 'unknown'}, attempt ${attempts})`),
    failed: (err, attempt) => {
      if (isReportedAttempt(attempt)) warn(`trusted component did not start again (attempt ${attempt}): ${err.message}`);
    },
    gaveUp: (reason) => warn(`trusted component: ${reason}`),
  };
}
