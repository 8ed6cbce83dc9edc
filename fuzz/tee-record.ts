// A real session with the trusted process, through the host code the broker uses (src/tee/host.ts,
// `process` backend), with the pipe tapped: the frames recorded here are what the hostile host
// later replays and mutates. Also collects the secrets the trusted side must never send back.
import { createCipheriv, createDecipheriv, hkdfSync } from 'node:crypto';
import { cpSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildEnrolmentRequest, buildRotationRequest, verifyKeyResponse } from '../src/client/crypto/enrol.js';
import { sealEnvelope } from '../src/client/crypto/envelope.js';
import { generateClientKeyBytes, importClientKey, type ClientKey } from '../src/client/crypto/keys.js';
import { SequenceCounter } from '../src/client/crypto/replay.js';
import { createOperatorKey, issueToken, signPolicy, signRevocation, signStatement } from '../src/protect/operator.js';
import { fromHex } from '../src/envelope/bytes.js';
import { STREAM_DERIVED_BYTES, STREAM_KEY_AT, parseHeader, splitEnvelope, streamAd } from '../src/envelope/envelope-layout.js';
import { openTrustedComponent, type BlobStore, type PipeTap, type TrustedComponent } from '../src/tee-client/host.js';
import { BUILD_PRODUCTION, encodeEndorsementBody, LABELS, MODE_TOKEN } from '../src/envelope/messages.js';
import { FRAME_COMMAND, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FrameReader, type RecordedFrame } from './tee-frames.js';

export interface Recording {
  /** Folder of the recording: the trusted process runs in it. */
  dir: string;
  /** The trusted process's own state folder (device secret), restored from `snapshot` before each case. */
  stateDir: string;
  snapshot: string;
  /** The first command of the session (init), replayed before the others. */
  init: RecordedFrame;
  /** Every other command the host sent, in order. */
  commands: RecordedFrame[];
  /** A command answered without storage (stats): the liveness probe. */
  probe: RecordedFrame;
  /** The host's answers to each storage request, keyed by `code:payload hex` of the request. */
  storeAnswers: Map<string, RecordedFrame[]>;
  /** Byte strings the trusted side must never send: device secret, client keys and their subkeys, data keys. */
  secrets: Buffer[];
}

export function storeKey(f: RecordedFrame): string {
  return `${f.code}:${f.payload.toString('hex')}`;
}

/** The answers the real host gave to this storage request (same operation, same parameters). */
export function recordedAnswers(rec: Recording, request: RecordedFrame): RecordedFrame[] {
  return rec.storeAnswers.get(storeKey(request)) ?? [];
}

function memoryStore(): BlobStore {
  const blobs = new Map<string, Uint8Array>();
  return { get: (n) => blobs.get(n), put: (n, b) => void blobs.set(n, Uint8Array.from(b)), delete: (n) => void blobs.delete(n) };
}

/** The subkeys the trusted component derives from a client key (docs/protocol.md §2). */
function subkeys(raw: Uint8Array): Buffer[] {
  return [LABELS.wrapKey, LABELS.confirmKey].map((label) => Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), label, 32)));
}

/** The stream key of a sender envelope (opened with the sender's wrap subkey) and its data key (docs/protocol.md §3). */
function streamSecrets(envelope: Uint8Array, topic: string, raw: Uint8Array): Buffer[] {
  const h = parseHeader(splitEnvelope(envelope).header);
  const d = createDecipheriv('aes-256-gcm', subkeys(raw)[0]!, h.wrapNonce);
  d.setAAD(streamAd(topic, h.sender));
  d.setAuthTag(h.wrappedKey.subarray(-16));
  const streamKey = Buffer.concat([d.update(h.wrappedKey.subarray(0, -16)), d.final()]);
  const counter = Buffer.alloc(16);
  counter.writeBigUInt64BE(BigInt(h.seq));
  const keystream = createCipheriv('aes-256-ctr', streamKey, counter).update(Buffer.alloc(STREAM_DERIVED_BYTES));
  return [streamKey, keystream.subarray(STREAM_KEY_AT, STREAM_KEY_AT + 32)];
}

/** Collects the frames of the sessions recorded, one tap per trusted process (ids restart in each). */
class Recorder {
  readonly sent: RecordedFrame[] = [];
  readonly storeAnswers = new Map<string, RecordedFrame[]>();

  tap(): PipeTap {
    const requests = new Map<number, RecordedFrame>();
    const fromHost = new FrameReader((f) => {
      this.sent.push(f);
      const request = requests.get(f.id);
      if (f.type !== FRAME_STORE_REPLY || request === undefined) return;
      const key = storeKey(request);
      this.storeAnswers.set(key, [...(this.storeAnswers.get(key) ?? []), f]);
    });
    const fromTee = new FrameReader((f) => {
      if (f.type === FRAME_STORE_REQUEST) requests.set(f.id, f);
    });
    return { toTee: (b) => fromHost.push(b), fromTee: (b) => fromTee.push(b) };
  }
}

/**
 * Two sessions on one store: the first creates the trusted component's keys and enrols clients,
 * the second starts on that sealed state, so storage answers holding each blob get recorded too.
 */
export async function recordSession(): Promise<Recording> {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-fuzz-tee-'));
  const stateDir = join(dir, 'tee');
  const deviceSecretPath = join(stateDir, 'device.secret');
  const operator = createOperatorKey(join(dir, 'operator.key'));
  const store = memoryStore();
  const recorder = new Recorder();
  // A small key cache: keys are read and unsealed from storage again, so more storage answers get recorded.
  const open = (): Promise<TrustedComponent> => openTrustedComponent({ store, stateDir, operatorPublicKey: operator.publicKey, cacheSize: 2, tap: recorder.tap() });
  let tee = await open();
  const secrets: Buffer[] = [readFileSync(deviceSecretPath)];
  let headers: Uint8Array[];
  try {
    const info = await tee.info();
    const pinned = { x25519: fromHex(info.x25519), ed25519: fromHex(info.ed25519) };
    await tee.setEndorsement(signStatement(operator, encodeEndorsementBody({ x25519: pinned.x25519, ed25519: pinned.ed25519, measurement: fromHex(info.measurement), mode: MODE_TOKEN, build: BUILD_PRODUCTION, issuedAt: Date.now() })));
    const keys = new Map<string, { raw: Uint8Array; key: ClientKey }>();
    for (const identity of ['tz-a', 'tz-b', 'tz-c']) {
      const raw = generateClientKeyBytes();
      const { request, pending } = await buildEnrolmentRequest({ tee: pinned, identity, key: raw, token: issueToken(operator, identity, 3600, { publish: ['secure/#'], read: ['secure/#'] }) });
      keys.set(identity, { raw, key: await verifyKeyResponse(pending, await tee.enrol(request)) });
      secrets.push(Buffer.from(raw), ...subkeys(raw));
    }
    const a = keys.get('tz-a')!;
    const seq = new SequenceCounter();
    const envelopes: Uint8Array[] = [];
    for (const size of [0, 100, 3000]) {
      const envelope = await sealEnvelope({ key: a.key, sender: 'tz-a', topic: 'secure/a', seq: seq.next(), payload: new Uint8Array(size).fill(0x62) });
      envelopes.push(envelope);
      secrets.push(...streamSecrets(envelope, 'secure/a', a.raw));
    }
    headers = envelopes.map((e) => splitEnvelope(e).header);
    await tee.formGroup(1, 'secure/a', ['tz-a', 'tz-b', 'tz-c', 'tz-x']);
    await Promise.allSettled(headers.map((h) => tee.groupRewrap(1, h, 'secure/a', 'tz-a'))); // one batch: same turn
    await tee.rewrap(headers[1]!, 'secure/a', 'tz-a', ['tz-b', 'tz-c', 'tz-x']);
    const newRaw = generateClientKeyBytes();
    const rotation = await buildRotationRequest({ tee: pinned, identity: 'tz-c', currentKey: keys.get('tz-c')!.key, newKey: newRaw });
    await verifyKeyResponse(rotation.pending, await tee.rotate(rotation.request));
    secrets.push(Buffer.from(newRaw), ...subkeys(newRaw));
    await tee.loadPolicy(signPolicy(operator, JSON.stringify({ rules: [{ identity: 'tz-a', publish: ['secure/#'], read: ['secure/#'] }, { identity: 'tz-b', read: ['secure/a'] }] })));
    await tee.revoke(signRevocation(operator, 'tz-b'));
  } finally {
    await tee.close();
  }
  tee = await open();
  try {
    await tee.info();
    await tee.isEnrolled('tz-a');
    await tee.formGroup(2, 'secure/a', ['tz-a', 'tz-b', 'tz-c']);
    await tee.groupRewrap(2, headers[2]!, 'secure/a', 'tz-a');
    await tee.groupRewrap(2, headers[0]!, 'secure/a', 'tz-a');
    await tee.stats();
  } finally {
    await tee.close();
  }
  const commands = recorder.sent.filter((f) => f.type === FRAME_COMMAND);
  const init = commands.filter((f) => f.code === commands[0]?.code).at(-1); // the init of the restart
  const rest = commands.filter((f) => f.code !== init?.code);
  if (init === undefined || rest.length === 0) throw new Error('the recorded sessions hold no commands');
  const snapshot = join(dir, 'state-snapshot');
  cpSync(stateDir, snapshot, { recursive: true });
  return { dir, stateDir, snapshot, init, commands: rest, probe: rest[rest.length - 1]!, storeAnswers: recorder.storeAnswers, secrets };
}
