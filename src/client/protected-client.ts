// The protected MQTT client: MQTT.js underneath, with payloads of protected topics sealed on
// publish and opened on receive. Browser-safe (no `node:` imports); key files are in key-file.ts.
import mqtt from 'mqtt';
import type { IClientOptions, IClientPublishOptions, IClientSubscribeOptions, IConnackPacket, IPublishPacket, ISubscriptionGrant, MqttClient, Packet } from 'mqtt';
import { topicMatches } from '../mqtt/topic.js';
import { utf8 } from '../envelope/bytes.js';
import { openEnvelope, sealEnvelope } from './crypto/envelope.js';
import { EnrolmentError, ReplayedMessageError } from './crypto/errors.js';
import { importClientKey, type ClientKey } from './crypto/keys.js';
import { ReplayWindow, SequenceCounter } from './crypto/replay.js';
import { TypedEmitter } from './emitter.js';
import { fingerprintEndorsedBy, type TeeContact } from './enrolment.js';
import { enrolIntoStore, resumeKeyChange, rotateInStore } from './key-change.js';
import { KeyFileError, type KeyStore } from './key-store.js';
import { openReplayWindow, ReplayJournal, type RestoredReplay } from './replay-journal.js';
import { TEE_RESPONSE_PREFIX } from '../mqtt/tee-topics.js';
import { wire } from './wire.js';

export interface ProtectedClientOptions extends IClientOptions {
  /** Identity the key is enrolled under; default: the key store's, else `clientId`. Also the default client id. */
  identity?: string;
  /** Fingerprint of the trusted component to pin (from `mqt-tz tee info`); this or operatorPublicKey is needed to enrol. */
  teeFingerprint?: string;
  /**
   * The operator's public key (hex): the component must be provisioned for it and carry its
   * endorsement. Without teeFingerprint, the endorsed component's fingerprint is pinned on enrolment.
   */
  operatorPublicKey?: string;
  /** Accept a component provisioned for open enrolment (development only). */
  allowOpenEnrolment?: boolean;
  /** Accept a benchmark build (provisioned for measurements, not for real data). */
  allowBenchmarkBuild?: boolean;
  /**
   * The raw 256-bit enrolled key, when the application keeps it itself. (Not `key`: MQTT.js
   * already uses that name for the TLS client private key.)
   */
  clientKey?: Uint8Array;
  /** Where the key is loaded from and, after enrolment or rotation, saved to. */
  keyStore?: KeyStore;
  /** Operator-signed enrolment token (as printed by `mqt-tz token`): enrol when the store holds no key yet. */
  token?: string | Uint8Array;
  /** Enrol without a token (only brokers in open-enrolment development mode accept this). */
  enrolWithoutToken?: boolean;
  /** Topic filters whose payloads are sealed on publish and opened on receive; more via protect(). */
  protectedTopics?: readonly string[];
  /** Per-sender replay window in sequence numbers (multiple of 32); default 1024. */
  replayWindowSize?: number;
  /**
   * Refuse protected messages sent longer ago than this (by the time in their sequence number) as
   * replayed. Closes the replay window a crash leaves open (docs/protocol.md §3); default: no limit.
   */
  maxAgeSeconds?: number;
  /**
   * The replay window is kept in the key store (next to the key file) so a restarted subscriber
   * refuses messages it already took; written at most this often, and on close. Default 1000 ms.
   */
  replayStateIntervalMs?: number;
  /** How long to wait for each answer of the trusted component; default 10 000 ms. */
  teeTimeoutMs?: number;
}

/** What the SDK knows of a delivered message besides topic and payload. */
export interface MessageInfo {
  /** True when the payload was opened from an envelope (then sender and seq are authenticated). */
  protected: boolean;
  sender?: string;
  seq?: number;
}

export type ProtectedClientEvents = {
  /** `payload` is the plaintext (a Buffer in Node); `packet.payload` too. */
  message: (topic: string, payload: Uint8Array, packet: IPublishPacket, info: MessageInfo) => void;
  /** A rejected protected message (with its topic: a ProtectedMessageError subclass) or a connection error. */
  error: (err: Error, topic?: string) => void;
  connect: (connack: IConnackPacket) => void;
  reconnect: () => void;
  offline: () => void;
  close: () => void;
  end: () => void;
};

const noop = (): void => undefined;

type PinOption = 'operatorPublicKey' | 'allowOpenEnrolment' | 'allowBenchmarkBuild';

function pinOptions(o: Pick<ProtectedClientOptions, PinOption>): Pick<ProtectedClientOptions, PinOption> {
  return { operatorPublicKey: o.operatorPublicKey, allowOpenEnrolment: o.allowOpenEnrolment, allowBenchmarkBuild: o.allowBenchmarkBuild };
}

export function checkIdentity(identity: string): void {
  const n = utf8(identity).length;
  if (n < 1 || n > 255) throw new RangeError(`identity must be 1 to 255 bytes of UTF-8, got ${n}`);
}

export class ProtectedClient extends TypedEmitter<ProtectedClientEvents> {
  private readonly filters: string[];
  private readonly seq = new SequenceCounter();
  private readonly replay: ReplayWindow;
  private readonly journal: ReplayJournal | undefined;
  private key: Promise<ClientKey>;
  private setKey: (key: ClientKey) => void = noop;
  // Sealing and opening are asynchronous: these chains keep publish and delivery order.
  private sendChain: Promise<unknown> = Promise.resolve();
  private receiveChain: Promise<unknown> = Promise.resolve();

  constructor(
    /** The underlying MQTT.js client: whatever is sent through it directly is not protected. */
    readonly mqtt: MqttClient,
    readonly identity: string,
    private readonly opts: Pick<ProtectedClientOptions, 'protectedTopics' | 'replayWindowSize' | 'teeFingerprint' | 'keyStore' | 'teeTimeoutMs' | PinOption>,
    /** A window restored after a restart, and where to keep it (see replay-journal.ts). */
    replay?: RestoredReplay,
  ) {
    super();
    checkIdentity(identity);
    this.filters = [...(opts.protectedTopics ?? [])];
    this.replay = replay?.window ?? new ReplayWindow(opts.replayWindowSize);
    const keep = replay?.keep;
    this.journal = keep && new ReplayJournal(this.replay, keep.save, keep.intervalMs, (err) => this.emit('error', err));
    this.key = new Promise((resolve) => (this.setKey = resolve));
    mqtt.on('message', (topic, payload, packet) => this.receive(topic, payload, packet));
    mqtt.on('connect', (connack) => this.emit('connect', connack));
    for (const event of ['reconnect', 'offline', 'close', 'end'] as const) mqtt.on(event, () => this.emit(event));
  }

  /** Supplies the enrolled key; until then protected messages wait (connectProtected does this). */
  useKey(key: ClientKey): void {
    this.setKey(key);
    this.key = Promise.resolve(key);
  }

  /** Starts forwarding connection errors (once the application can listen to them). */
  forwardErrors(): void {
    this.mqtt.on('error', (err) => this.emit('error', err));
  }

  get connected(): boolean {
    return this.mqtt.connected;
  }

  /** Adds topic filters whose payloads are protected. */
  protect(...filters: string[]): this {
    this.filters.push(...filters);
    return this;
  }

  isProtected(topic: string): boolean {
    return this.filters.some((f) => topicMatches(f, topic));
  }

  publishAsync(topic: string, payload: string | Uint8Array, opts: IClientPublishOptions = {}): Promise<Packet | undefined> {
    const bytes = typeof payload === 'string' ? utf8(payload) : payload;
    let body: Promise<Uint8Array>;
    if (this.isProtected(topic)) {
      const seq = this.seq.next(); // taken now, so numbers follow call order
      body = this.key.then((key) => sealEnvelope({ key, sender: this.identity, topic, seq, payload: bytes }));
    } else body = Promise.resolve(bytes);
    body.catch(noop); // handled below, in turn; not an unhandled rejection meanwhile
    const turn = this.sendChain.then(() => body);
    this.sendChain = turn.then(noop, noop);
    return turn.then((b) => this.mqtt.publishAsync(topic, wire(b), opts));
  }

  publish(topic: string, payload: string | Uint8Array, opts?: IClientPublishOptions, cb?: (err?: Error) => void): this {
    this.publishAsync(topic, payload, opts).then(() => cb?.(), (err: Error) => cb?.(err));
    return this;
  }

  subscribeAsync(filter: string | string[], opts?: IClientSubscribeOptions): Promise<ISubscriptionGrant[]> {
    return opts === undefined ? this.mqtt.subscribeAsync(filter) : this.mqtt.subscribeAsync(filter, opts);
  }

  subscribe(filter: string | string[], opts?: IClientSubscribeOptions, cb?: (err: Error | null, granted?: ISubscriptionGrant[]) => void): this {
    this.subscribeAsync(filter, opts).then((g) => cb?.(null, g), (err: Error) => cb?.(err));
    return this;
  }

  async unsubscribeAsync(filter: string | string[]): Promise<void> {
    await this.mqtt.unsubscribeAsync(filter);
  }

  unsubscribe(filter: string | string[], cb?: (err?: Error) => void): this {
    this.unsubscribeAsync(filter).then(() => cb?.(), (err: Error) => cb?.(err));
    return this;
  }

  /**
   * Closes the connection; unless forced, after the messages still being sealed were handed to
   * MQTT.js. Then writes the replay state (forced or not: it only ever grows).
   */
  async endAsync(force = false): Promise<void> {
    if (!force) await this.sendChain;
    await this.mqtt.endAsync(force);
    await this.receiveChain;
    await this.journal?.flush();
  }

  end(force = false, cb?: () => void): this {
    this.endAsync(force).then(() => cb?.(), () => cb?.());
    return this;
  }

  /**
   * Replaces the enrolled key (proof under the current one). Messages already re-wrapped under the
   * old key fail to open afterwards, as 'tampered'.
   */
  async rotateKey(): Promise<void> {
    const { keyStore } = this.opts;
    const teeFingerprint = this.opts.teeFingerprint ?? (await keyStore?.load())?.teeFingerprint; // pinned by operator: the one recorded at enrolment
    if (teeFingerprint === undefined || keyStore === undefined) throw new TypeError('rotateKey needs teeFingerprint and a key store (or key file)');
    const contact = { ...pinOptions(this.opts), client: this.mqtt, identity: this.identity, teeFingerprint: teeFingerprint.toLowerCase(), timeoutMs: this.opts.teeTimeoutMs ?? 10_000 };
    this.useKey(await rotateInStore(contact, keyStore, await this.key));
  }

  private receive(topic: string, payload: Buffer, packet: IPublishPacket): void {
    if (topic.startsWith(TEE_RESPONSE_PREFIX)) return; // answers of the trusted component: handled in tee-requests.ts
    const opened = this.isProtected(topic)
      ? this.key.then((key) => openEnvelope({ key, identity: this.identity, topic, envelope: payload, replay: this.replay }))
      : Promise.resolve(undefined);
    opened.catch(noop); // handled below, in turn; not an unhandled rejection meanwhile
    const turn = this.receiveChain.then(() => opened);
    this.receiveChain = turn.then(noop, noop);
    turn.then(
      (m) => {
        if (m === undefined) this.emit('message', topic, payload, packet, { protected: false });
        else {
          this.journal?.changed();
          const plaintext = wire(m.payload);
          this.emit('message', topic, plaintext, { ...packet, payload: plaintext }, { protected: true, sender: m.sender, seq: m.seq });
        }
      },
      (err: Error) => {
        // QoS 1/2 is at-least-once: a retransmission (DUP) of a message already delivered is
        // dropped quietly; a replay without DUP is an attack and reported.
        if (packet.dup && err instanceof ReplayedMessageError) return;
        this.emit('error', err, topic);
      },
    );
  }
}

/** Resolves on CONNACK; rejects with one readable line on the first error or close before it. */
function whenConnected(client: MqttClient, url: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (err: Error): void => {
      cleanup();
      const code = (err as Error & { code?: unknown }).code;
      reject(new Error(`cannot connect to ${url}: ${typeof code === 'string' ? code : err.message}`));
    };
    const onClose = (): void => fail(new Error('connection closed by the broker'));
    const onConnect = (): void => {
      cleanup();
      resolve();
    };
    const cleanup = (): void => {
      client.removeListener('error', fail);
      client.removeListener('close', onClose);
      client.removeListener('connect', onConnect);
    };
    client.on('error', fail);
    client.on('close', onClose);
    client.on('connect', onConnect);
  });
}

/**
 * Connects, loads the key (or enrols one on first use when given a token, storing it only once the
 * trusted component confirmed it; or completes an enrolment or rotation a crash or a lost answer
 * left pending) and resolves with a connected ProtectedClient.
 */
export async function connectProtected(url: string, options: ProtectedClientOptions): Promise<ProtectedClient> {
  const {
    identity: givenIdentity, teeFingerprint, clientKey, keyStore, token, enrolWithoutToken, protectedTopics, replayWindowSize, maxAgeSeconds, replayStateIntervalMs,
    teeTimeoutMs = 10_000, operatorPublicKey, allowOpenEnrolment, allowBenchmarkBuild, ...mqttOptions
  } = options;
  const pin = { operatorPublicKey, allowOpenEnrolment, allowBenchmarkBuild };
  const stored = clientKey === undefined ? await keyStore?.load() : undefined;
  const pending = clientKey === undefined ? await keyStore?.loadPending() : undefined;
  const identity = givenIdentity ?? stored?.identity ?? pending?.identity ?? mqttOptions.clientId;
  if (identity === undefined) throw new TypeError('connectProtected needs an identity (or a clientId, or a stored key that names one)');
  for (const [what, saved] of [['stored key is enrolled', stored], ['pending key change is', pending]] as const) {
    if (saved !== undefined && saved.identity !== identity) throw new KeyFileError(`the ${what} for ${JSON.stringify(saved.identity)}, not ${JSON.stringify(identity)}`);
  }
  const fingerprint = teeFingerprint?.toLowerCase() ?? stored?.teeFingerprint ?? pending?.teeFingerprint;
  for (const [what, saved] of [['stored key was enrolled', stored], ['pending key change was made for', pending]] as const) {
    if (saved !== undefined && fingerprint !== saved.teeFingerprint) {
      throw new EnrolmentError('fingerprint-mismatch', `the ${what} with trusted component ${saved.teeFingerprint}, not the pinned ${fingerprint}`);
    }
  }
  const raw = clientKey ?? stored?.key;
  if (raw === undefined && pending === undefined) {
    if (keyStore === undefined) throw new TypeError('connectProtected needs a clientKey, or a key store (key file) to load it from or enrol into');
    if (token === undefined && !enrolWithoutToken) throw new KeyFileError('no enrolled key yet, and no enrolment token to enrol one');
    if (fingerprint === undefined && operatorPublicKey === undefined) throw new TypeError('teeFingerprint or operatorPublicKey is required to enrol');
    await keyStore.prepare?.();
  }
  const replay = await openReplayWindow(keyStore, { windowSize: replayWindowSize, maxAgeSeconds, saveIntervalMs: replayStateIntervalMs });
  const client = new ProtectedClient(mqtt.connect(url, { clientId: identity, ...mqttOptions }), identity, { protectedTopics, replayWindowSize, teeFingerprint: fingerprint, keyStore, teeTimeoutMs, ...pin }, replay);
  try {
    await whenConnected(client.mqtt, url);
    // pinned by the operator alone: the fingerprint of the component it endorses, recorded in the key file
    const contact = async (): Promise<TeeContact> => ({
      ...pin, client: client.mqtt, identity, timeoutMs: teeTimeoutMs,
      teeFingerprint: fingerprint ?? (await fingerprintEndorsedBy({ ...pin, operatorPublicKey: operatorPublicKey!, client: client.mqtt, timeoutMs: teeTimeoutMs })),
    });
    if (pending !== undefined) client.useKey(await resumeKeyChange(await contact(), keyStore!, pending, stored));
    else if (raw !== undefined) client.useKey(await importClientKey(raw));
    else client.useKey(await importClientKey(await enrolIntoStore(await contact(), keyStore!, token)));
  } catch (err) {
    await client.mqtt.endAsync(true).catch(noop);
    throw err;
  }
  client.forwardErrors();
  return client;
}
