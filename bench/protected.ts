/**
 * The protected path under load: our broker started with `--protect 'secure/#'`, identities enrolled
 * over `$tee/...` with the raw load generator, and publishers that send envelopes sealed beforehand
 * with the client crypto (`sealEnvelope`), so the publisher is never what limits a run.
 *
 * - Enrolment: open enrolment (`--open-enrolment`), the trusted component's keys pinned on first use
 *   (the fingerprint comes in the same `$tee/info` answer; a real client pins it out of band). Every
 *   identity gets the same key bytes on every broker of a run, so one pool serves both backends.
 * - The pool: envelopes of one publisher on one topic, each with its own sequence number, kept as
 *   pre-encoded QoS 1 PUBLISHes of equal length in one Buffer. The pool is sealed by its own code
 *   (`sealFast`: the layout and associated data of the client's `sealEnvelope`, in worker threads),
 *   so it can hold enough envelopes for a whole 1 → 1 run; the opened sample is checked with the
 *   client's `openEnvelope`, so a sealing mistake shows as failures. Each broker reads the pool from its own
 *   cursor forward, so its subscribers see strictly rising sequence numbers; sealing happens between
 *   runs (`PoolCursor.reserve`), never inside a timed loop.
 * - Latency: the publisher records when it wrote each envelope (by pool index); a subscriber reads the
 *   sequence number from the re-wrapped header (in clear, authenticated by the AEADs) and looks the
 *   send time up. No per-delivery crypto or allocation. An opened sample (`Sampler`) proves that the
 *   deliveries are genuine: every one must open under the subscriber's key, pass the replay window,
 *   and carry the pool index that its sequence number names.
 */
import type { BrokerProcess } from './brokers.js';
import type { Traffic } from './loadgen.js';
import { encodeConnect, encodePublish, RawClient } from './mqtt-raw.js';
import { sleep } from './proc.js';
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { createCipheriv, createHash, hkdfSync } from 'node:crypto';
import {
  buildEnrolmentRequest, generateClientKeyBytes, importClientKey, openEnvelope, pinTee, ReplayWindow, verifyKeyResponse,
  type ClientKey, type TeeInfoJson, type TeePublicKeys,
} from '../src/client/index.js'; // the Node entry: the SDK as a Node client has it (node:crypto per message)
import {
  ENVELOPE_VERSION, KIND_SENDER, SEQ_TAG_BYTES, STREAM_DERIVED_BYTES, STREAM_KEY_AT, STREAM_NONCE_AT, encodeHeader, joinEnvelope, payloadAd, streamAd, topicTagInput,
} from '../src/envelope/envelope-layout.js';
import { LABELS } from '../src/envelope/messages.js';

export const PROTECTED_FILTER = 'secure/#';
export const STREAM_TOPIC = 'secure/bench/stream';
export const STREAM_FILTER = 'secure/bench/#';
export const PUBLISHER_ID = 'bench-pub';
export const subscriberIds = (n: number): string[] => Array.from({ length: n }, (_, j) => `bench-sub-${j}`);

const ENROL_CONCURRENCY = 64;
const REPLY_TIMEOUT_MS = 10_000;
/** Offset of the u64 sequence number in an envelope: u16 header length, version, kind. */
const SEQ_OFFSET = 4;

/** Key bytes per identity, created once per run and shared by every broker. */
const keyBytes = new Map<string, Uint8Array>();
const keys = new Map<string, Promise<ClientKey>>();

export function clientKey(id: string): Promise<ClientKey> {
  let k = keys.get(id);
  if (!k) {
    let raw = keyBytes.get(id);
    if (!raw) keyBytes.set(id, (raw = generateClientKeyBytes()));
    k = importClientKey(raw);
    keys.set(id, k);
  }
  return k;
}

/** What the bench knows of one protected broker: its pinned keys, who is enrolled, how far its cursor went in each pool. */
interface BrokerState {
  tee: Promise<TeePublicKeys>;
  enrolled: Set<string>;
  cursors: WeakMap<EnvelopePool, number>;
}
const states = new WeakMap<BrokerProcess, BrokerState>();

function stateOf(broker: BrokerProcess): BrokerState {
  let s = states.get(broker);
  if (!s) {
    s = { tee: fetchTee(broker.port), enrolled: new Set(), cursors: new WeakMap() };
    states.set(broker, s);
  }
  return s;
}

/** One `$tee/...` request from a raw v3.1.1 client; resolves to the answer's body (status 0) or throws. */
class TeeRequester {
  private waiting: ((payload: Buffer) => void) | undefined;
  readonly client: RawClient;

  constructor(port: number, readonly id: string) {
    this.client = new RawClient(port, encodeConnect(id), {
      publish: (buf, start, end) => {
        const w = this.waiting;
        this.waiting = undefined;
        w?.(Buffer.from(buf.subarray(start, end)));
      },
    });
  }

  async open(): Promise<this> {
    await this.client.ready;
    await this.client.subscribe(`$tee/response/${this.id}`, 0);
    return this;
  }

  async request(topic: string, body: Uint8Array): Promise<Buffer> {
    const answer = new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no answer on $tee/response/${this.id} after ${REPLY_TIMEOUT_MS} ms`)), REPLY_TIMEOUT_MS);
      this.waiting = (payload) => {
        clearTimeout(timer);
        resolve(payload);
      };
    });
    this.client.write(encodePublish(topic, Buffer.from(body), 0));
    const payload = await answer;
    if (payload[0] !== 0) throw new Error(`${topic} for ${this.id} failed: ${payload.subarray(1).toString()}`);
    return payload.subarray(1);
  }
}

async function fetchTee(port: number): Promise<TeePublicKeys> {
  const r = await new TeeRequester(port, 'bench-tee-info').open();
  try {
    const info = JSON.parse((await r.request('$tee/info/request', new Uint8Array(0))).toString()) as TeeInfoJson & { fingerprint: string };
    return await pinTee(info, { fingerprint: info.fingerprint, allowOpenEnrolment: true }); // the bench brokers run with --open-enrolment
  } finally {
    r.client.close();
  }
}

/** Enrols every identity of `ids` this broker does not know yet (outside any timed loop). */
export async function ensureEnrolled(broker: BrokerProcess, ids: readonly string[]): Promise<void> {
  const s = stateOf(broker);
  const tee = await s.tee;
  const todo = ids.filter((id) => !s.enrolled.has(id));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < todo.length) {
      const id = todo[next++]!;
      const r = await new TeeRequester(broker.port, id).open();
      try {
        await clientKey(id);
        const { request, pending } = await buildEnrolmentRequest({ tee, identity: id, key: keyBytes.get(id)! });
        await verifyKeyResponse(pending, await r.request('$tee/enrol/request', request));
        s.enrolled.add(id);
      } finally {
        r.client.close();
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(ENROL_CONCURRENCY, todo.length) }, worker));
  if (todo.length > 0) await sleep(250); // let the enrolment connections go before their ids connect again
}

function gcm(key: Uint8Array, nonce: Uint8Array, plaintext: Uint8Array, ad: Uint8Array): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce);
  c.setAAD(ad);
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

/** The key an identity's envelopes are wrapped under for the trusted component (its key bytes must exist: `clientKey`). */
export function wrapKeyOf(id: string): Buffer {
  return Buffer.from(hkdfSync('sha256', keyBytes.get(id)!, new Uint8Array(0), LABELS.wrapKey, 32));
}

interface BenchStream {
  key: Buffer;
  nonce: Buffer;
  wrapped: Buffer;
}
const benchStreams = new Map<string, BenchStream>();

/**
 * A publisher's stream (docs/protocol.md §3, kind 4) for the pre-sealed envelopes. The SDK draws
 * its stream key at random; here key and wrap nonce come from the wrap key, sender and topic, so
 * the pool's worker threads seal one stream, as one SDK client does.
 */
function benchStream(wrapKey: Uint8Array, sender: string, topic: string): BenchStream {
  const id = JSON.stringify([Buffer.from(wrapKey).toString('hex'), sender, topic]);
  let s = benchStreams.get(id);
  if (s === undefined) {
    const fresh = Buffer.from(hkdfSync('sha256', wrapKey, new Uint8Array(0), Buffer.from(`mqt-tz bench stream ${id}`), 32 + 12));
    const key = fresh.subarray(0, 32);
    const nonce = fresh.subarray(32);
    s = { key, nonce, wrapped: gcm(wrapKey, nonce, key, streamAd(topic, sender)) };
    benchStreams.set(id, s);
  }
  return s;
}

/**
 * `sealEnvelope` written again for envelopes sealed before a run (the samples opened with the
 * client's `openEnvelope` check it): synchronous, without the SDK's per-call key import.
 */
export function sealFast(wrapKey: Uint8Array, sender: string, topic: string, seq: number, plaintext: Uint8Array, topicTag = topicTagOf(topic)): Uint8Array {
  const s = benchStream(wrapKey, sender, topic);
  const counter = Buffer.alloc(16); // u64 seq | u64 0
  counter.writeBigUInt64BE(BigInt(seq));
  const derived = createCipheriv('aes-256-ctr', s.key, counter).update(Buffer.alloc(STREAM_DERIVED_BYTES)); // sequence tag | data key | payload nonce
  const payloadNonce = derived.subarray(STREAM_NONCE_AT, STREAM_NONCE_AT + 12);
  const payload = gcm(derived.subarray(STREAM_KEY_AT, STREAM_KEY_AT + 32), payloadNonce, plaintext, payloadAd(seq, topic, sender));
  const seqTag = derived.subarray(0, SEQ_TAG_BYTES);
  return joinEnvelope(encodeHeader({ version: ENVELOPE_VERSION, kind: KIND_SENDER, seq, topicTag, sender, recipient: '', payloadNonce, wrapNonce: s.nonce, wrappedKey: s.wrapped, seqTag }), payload);
}

/** The header's topic tag (a topic's envelopes all carry the same one). */
export function topicTagOf(topic: string): Uint8Array {
  return createHash('sha256').update(topicTagInput(topic)).digest().subarray(0, 8);
}

let streamTag: Uint8Array | undefined;

/** One pool entry: the QoS 1 PUBLISH of envelope `k` (its plaintext's first 4 bytes: k). */
export function sealPacket(wrapKey: Uint8Array, seqBase: number, k: number, payloadBytes: number): { packet: Buffer; envelopeBytes: number } {
  const plaintext = new Uint8Array(payloadBytes).fill(0x61);
  new DataView(plaintext.buffer).setUint32(0, k);
  const env = sealFast(wrapKey, PUBLISHER_ID, STREAM_TOPIC, seqBase + k, plaintext, (streamTag ??= topicTagOf(STREAM_TOPIC)));
  return { packet: encodePublish(STREAM_TOPIC, Buffer.from(env.buffer, env.byteOffset, env.byteLength), 1, 1), envelopeBytes: env.byteLength };
}

/** What the pool worker (bench/pool-worker.ts) seals: envelopes [from, n) into `sab`. */
export interface PoolJob {
  sab: SharedArrayBuffer;
  wrapKey: Uint8Array;
  seqBase: number;
  from: number;
  n: number;
  payloadBytes: number;
  packetLength: number;
}

/** The sequence number in an envelope's header (publisher's or re-wrapped), read without allocating. */
export function envelopeSeq(buf: Buffer, start: number): number {
  return buf.readUInt32BE(start + SEQ_OFFSET) * 4294967296 + buf.readUInt32BE(start + SEQ_OFFSET + 4);
}

/** Largest envelope pool kept: a run that needs more starts a new one (sealed afresh). */
const POOL_MAX_BYTES = 3.5 * 2 ** 30;

/**
 * Envelopes of PUBLISHER_ID on STREAM_TOPIC, `payloadBytes` of plaintext each (its first 4 bytes:
 * the pool index), as QoS 1 PUBLISH packets of one length, back to back. Sequence number = seqBase + index.
 */
export class EnvelopePool {
  readonly seqBase = Date.now() * 1024;
  packetLength = 0;
  idOffset = 0;
  private bytes: Buffer = Buffer.alloc(0);
  private sealed = 0;

  constructor(readonly payloadBytes: number) {}

  get size(): number {
    return this.sealed;
  }

  /**
   * Whether `broker` can take `budget` more envelopes from this pool without it outgrowing
   * POOL_MAX_BYTES (one Buffer holds at most 4 GiB on Node 20; many rounds at 1 -> 1 pass that).
   */
  fits(broker: BrokerProcess, budget: number): boolean {
    const packet = this.packetLength || this.payloadBytes + 256;
    return ((stateOf(broker).cursors.get(this) ?? 0) + budget) * packet <= POOL_MAX_BYTES;
  }

  /**
   * Seals until the pool holds at least `n` envelopes. The pool lives in a SharedArrayBuffer and is
   * sealed by a worker thread: an ArrayBuffer of this size (hundreds of MB), or the garbage of
   * sealing it, left in the load generator's own heap kept it in back-to-back major collections and
   * doubled its CPU per delivery (measured: 5 -> 9-12 µs) in every run after the first seal.
   */
  async fill(n: number): Promise<void> {
    if (n <= this.sealed) return;
    await clientKey(PUBLISHER_ID);
    const wrapKey = wrapKeyOf(PUBLISHER_ID);
    if (this.packetLength === 0) {
      const first = sealPacket(wrapKey, this.seqBase, 0, this.payloadBytes);
      this.packetLength = first.packet.length;
      this.idOffset = first.packet.length - first.envelopeBytes - 2; // the packet id sits right before the payload
    }
    const from = this.sealed;
    const grown = Buffer.from(new SharedArrayBuffer(n * this.packetLength));
    this.bytes.copy(grown, 0, 0, from * this.packetLength);
    // one worker per core: sealing (~90 µs an envelope) runs between timed loops, and a 1 -> 1 round
    // at today's rates needs a few hundred thousand envelopes
    const workers = Math.max(1, Math.min(availableParallelism(), Math.ceil((n - from) / 10_000)));
    const step = Math.ceil((n - from) / workers);
    await Promise.all(
      Array.from({ length: workers }, async (_, w) => {
        const job: PoolJob = {
          sab: grown.buffer as SharedArrayBuffer, wrapKey, seqBase: this.seqBase, from: from + w * step, n: Math.min(n, from + (w + 1) * step),
          payloadBytes: this.payloadBytes, packetLength: this.packetLength,
        };
        const worker = new Worker(new URL('./pool-worker.js', import.meta.url), { workerData: job });
        await new Promise<void>((resolve, reject) => {
          worker.once('message', () => resolve());
          worker.once('error', reject);
          worker.once('exit', (code) => reject(new Error(`pool worker exited with ${code} before finishing`)));
        });
        await worker.terminate();
      }),
    );
    this.bytes = grown;
    this.sealed = n;
  }

  /** `count` packets from index `from`: a view into the pool (ids are stamped in place by the sender). */
  view(from: number, count: number): Buffer {
    return this.bytes.subarray(from * this.packetLength, (from + count) * this.packetLength);
  }
}

/** Hands a broker's stretch of the pool to one run; the cursor moves on so nothing is sent twice. */
export class PoolCursor {
  private at: number;
  private end: number;

  constructor(
    readonly pool: EnvelopePool,
    private readonly broker: BrokerProcess,
    /** Envelopes the run may send at most (sealed before it starts). */
    budget: number,
  ) {
    this.at = stateOf(broker).cursors.get(pool) ?? 0;
    this.end = this.at + budget;
  }

  /** Seals what the run may need; call before the timed loop. */
  reserve(): Promise<void> {
    return this.pool.fill(this.end);
  }

  /** Index in the pool of the next envelope to send. */
  get position(): number {
    return this.at;
  }

  /** The next `count` packets, or undefined when the run's budget is spent. */
  take(count: number): Buffer | undefined {
    if (this.at + count > this.end) return undefined;
    const v = this.pool.view(this.at, count);
    this.at += count;
    stateOf(this.broker).cursors.set(this.pool, this.at);
    return v;
  }
}

/**
 * Copies every `every`-th delivery of one subscriber (at most `max`), to open after the run.
 * Opening checks the key, the replay window and that the plaintext's pool index matches the header's
 * sequence number.
 */
export class Sampler {
  private readonly copies: Buffer[] = [];
  private seen = 0;

  constructor(
    private readonly every = 100,
    private readonly max = 200,
  ) {}

  offer(buf: Buffer, start: number, end: number): void {
    if (this.seen++ % this.every !== 0 || this.copies.length >= this.max) return;
    this.copies.push(Buffer.from(buf.subarray(start, end)));
  }

  async verify(identity: string, pool: EnvelopePool): Promise<{ opened: number; openFailures: number }> {
    const key = await clientKey(identity);
    const replay = new ReplayWindow();
    let opened = 0;
    let openFailures = 0;
    for (const c of this.copies) {
      try {
        const m = await openEnvelope({ key, identity, topic: STREAM_TOPIC, envelope: c, replay });
        const index = new DataView(m.payload.buffer, m.payload.byteOffset).getUint32(0);
        if (m.sender !== PUBLISHER_ID || m.seq - pool.seqBase !== index || m.payload.length !== pool.payloadBytes) throw new Error('wrong content');
        opened++;
      } catch {
        openFailures++;
      }
    }
    return { opened, openFailures };
  }
}

/**
 * Traffic of the protected runs: envelopes from the pool (PUBLISHER_ID → enrolled subscribers on
 * STREAM_FILTER), send times by pool index, every delivery of subscriber 0 offered to the sampler.
 */
export function poolTraffic(cursor: PoolCursor, subscribers: number, budget: number, sampler: Sampler): Traffic {
  const pool = cursor.pool;
  const first = cursor.position;
  const sendAt = new Float64Array(budget).fill(Infinity);
  return {
    publisherIds: [PUBLISHER_ID],
    subscriberIds: subscriberIds(subscribers),
    filter: STREAM_FILTER,
    packetLength: [pool.packetLength],
    idOffset: [pool.idOffset],
    next(_i, count, now) {
      const at = cursor.position - first;
      const v = cursor.take(count);
      if (v !== undefined) sendAt.fill(now, at, at + count);
      return v;
    },
    sentAt: (buf, start) => sendAt[envelopeSeq(buf, start) - pool.seqBase - first] ?? Infinity,
    onDelivery: (j, buf, start, end) => {
      if (j === 0) sampler.offer(buf, start, end);
    },
  };
}

/** Seals and enrols what a run needs (outside its timed loop); runs it; opens the sample. */
export async function withPool<R extends object>(
  broker: BrokerProcess,
  pool: EnvelopePool,
  subscribers: number,
  budget: number,
  run: (traffic: Traffic) => Promise<R>,
): Promise<R & { budget: number; opened: number; openFailures: number }> {
  await ensureEnrolled(broker, [PUBLISHER_ID, ...subscriberIds(subscribers)]);
  const cursor = new PoolCursor(pool, broker, budget);
  await cursor.reserve();
  const sampler = new Sampler();
  const r = await run(poolTraffic(cursor, subscribers, budget, sampler));
  return { ...r, budget, ...(await sampler.verify(subscriberIds(1)[0]!, pool)) };
}
