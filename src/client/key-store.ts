// Where an enrolled key lives. Browser-safe: the file-backed store is in key-file.ts (Node only).
// The serialised form is JSON; parse errors never echo the text, since it holds the key.
import { fromBase64Url, toBase64Url } from '../envelope/bytes.js';

export interface StoredKey {
  /** Identity the key is enrolled under (the MQTT client id by default). */
  identity: string;
  /** The raw 256-bit client key K_c. */
  key: Uint8Array;
  /** Fingerprint of the trusted component it was enrolled with (lowercase hex). */
  teeFingerprint: string;
}

/**
 * A new key and the exact request that asks the trusted component to take it, saved before the
 * request is sent: after a crash or a lost answer the same bytes are sent again (see key-change.ts).
 */
export interface PendingKeyChange {
  type: 'enrol' | 'rotate';
  identity: string;
  teeFingerprint: string;
  /** The new raw 256-bit key. */
  key: Uint8Array;
  /** The request as sent (HPKE-sealed to the trusted component). */
  request: Uint8Array;
}

export interface KeyStore {
  /** undefined when no key has been stored yet. */
  load(): Promise<StoredKey | undefined>;
  /** Called only after the trusted component confirmed the key; `replace` on rotation. */
  save(key: StoredKey, opts?: { replace?: boolean }): Promise<void>;
  /** Optional check, before enrolling, that save() will be able to write (an enrolment cannot be undone). */
  prepare?(): Promise<void>;
  /** The key change in flight, if any. */
  loadPending(): Promise<PendingKeyChange | undefined>;
  /** Saves the key change before its request is sent (durably: it holds the new key); undefined removes it. */
  savePending(change: PendingKeyChange | undefined): Promise<void>;
  /** The subscriber's replay state (text made by the SDK); a store without these forgets it on restart. */
  loadReplayState?(): Promise<string | undefined>;
  saveReplayState?(text: string): Promise<void>;
}

export class KeyFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyFileError';
  }
}

const FORMAT = 'mqt-tz client key';

export function encodeStoredKey(k: StoredKey): string {
  return `${JSON.stringify({ format: FORMAT, version: 1, identity: k.identity, teeFingerprint: k.teeFingerprint, key: toBase64Url(k.key) }, null, 2)}\n`;
}

function parseJson(text: string, where: string, what: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    throw new KeyFileError(`${where} is not an ${what} (not JSON)`);
  }
  return (typeof raw === 'object' && raw !== null ? raw : {}) as Record<string, unknown>;
}

function bytesField(o: Record<string, unknown>, field: string): Uint8Array {
  try {
    return typeof o[field] === 'string' ? fromBase64Url(o[field]) : new Uint8Array(0);
  } catch {
    return new Uint8Array(0);
  }
}

/** identity, teeFingerprint and a 32-byte key, or a KeyFileError naming what is missing. */
function keyFields(o: Record<string, unknown>, where: string): StoredKey {
  if (typeof o.identity !== 'string' || o.identity.length === 0) throw new KeyFileError(`${where} has no identity`);
  if (typeof o.teeFingerprint !== 'string' || !/^[0-9a-f]{64}$/.test(o.teeFingerprint)) throw new KeyFileError(`${where} has no valid teeFingerprint`);
  const key = bytesField(o, 'key');
  if (key.length !== 32) throw new KeyFileError(`${where} does not hold a 32-byte key`);
  return { identity: o.identity, key, teeFingerprint: o.teeFingerprint };
}

/** `where` names the source in errors (a path); the text itself is never quoted. */
export function decodeStoredKey(text: string, where: string): StoredKey {
  const o = parseJson(text, where, 'mqt-tz key file');
  if (o.format !== FORMAT || o.version !== 1) throw new KeyFileError(`${where} is not an mqt-tz key file (version 1)`);
  return keyFields(o, where);
}

const PENDING_FORMAT = 'mqt-tz pending key change';

export function encodePendingKeyChange(p: PendingKeyChange): string {
  const fields = { format: PENDING_FORMAT, version: 1, type: p.type, identity: p.identity, teeFingerprint: p.teeFingerprint, key: toBase64Url(p.key), request: toBase64Url(p.request) };
  return `${JSON.stringify(fields, null, 2)}\n`;
}

export function decodePendingKeyChange(text: string, where: string): PendingKeyChange {
  const o = parseJson(text, where, 'mqt-tz pending key change');
  if (o.format !== PENDING_FORMAT || o.version !== 1) throw new KeyFileError(`${where} is not an mqt-tz pending key change (version 1)`);
  if (o.type !== 'enrol' && o.type !== 'rotate') throw new KeyFileError(`${where} names no key change type (enrol or rotate)`);
  const request = bytesField(o, 'request');
  if (request.length === 0) throw new KeyFileError(`${where} holds no request`);
  return { type: o.type, ...keyFields(o, where), request };
}

/** Keeps the key in memory only (browsers, tests); `initial` is what load() returns first. */
export function memoryKeyStore(initial?: StoredKey): KeyStore & { current: StoredKey | undefined; pending: PendingKeyChange | undefined; replayState: string | undefined } {
  const store = {
    current: initial,
    pending: undefined as PendingKeyChange | undefined,
    replayState: undefined as string | undefined,
    load: () => Promise.resolve(store.current),
    save: (k: StoredKey) => {
      store.current = k;
      return Promise.resolve();
    },
    loadPending: () => Promise.resolve(store.pending),
    savePending: (p: PendingKeyChange | undefined) => {
      store.pending = p;
      return Promise.resolve();
    },
    loadReplayState: () => Promise.resolve(store.replayState),
    saveReplayState: (text: string) => {
      store.replayState = text;
      return Promise.resolve();
    },
  };
  return store;
}
