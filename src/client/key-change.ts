// Enrolment and rotation that neither a crash nor a lost answer can turn into a lock-out. The
// new key and the exact request are saved in the key store before the request is sent; until an
// answer confirms the key, every start sends the same bytes again (the trusted component answers
// a repeat as it answered the first time: docs/protocol.md §4). The stored key is replaced only
// after the confirmation, and the pending change removed only after that.
import { equalBytes } from '../envelope/bytes.js';
import { EnrolmentError } from './crypto/errors.js';
import { importClientKey, type ClientKey } from './crypto/keys.js';
import { enrolOverMqtt, resendOverMqtt, rotateOverMqtt, type BeforeSend, type TeeContact } from './enrolment.js';
import type { KeyStore, PendingKeyChange, StoredKey } from './key-store.js';

function savePending(c: TeeContact, store: KeyStore): BeforeSend {
  return (change) => store.savePending({ ...change, identity: c.identity, teeFingerprint: c.teeFingerprint });
}

/**
 * A refusal signed by the trusted component is final: that request can never be accepted, so it
 * is no longer pending. Anything else (timeout, lost connection, a forged answer) keeps it pending.
 */
async function settled<T>(store: KeyStore, sent: Promise<T>): Promise<T> {
  try {
    return await sent;
  } catch (err) {
    if (err instanceof EnrolmentError && err.code === 'refused') await store.savePending(undefined);
    throw err;
  }
}

async function keep(c: TeeContact, store: KeyStore, key: Uint8Array, replace: boolean): Promise<void> {
  await store.save({ identity: c.identity, key, teeFingerprint: c.teeFingerprint }, { replace });
  await store.savePending(undefined);
}

/** Enrols a fresh key; resolves with its raw bytes once confirmed and stored. */
export async function enrolIntoStore(c: TeeContact, store: KeyStore, token: string | Uint8Array | undefined): Promise<Uint8Array> {
  const raw = await settled(store, enrolOverMqtt(c, token, savePending(c, store)));
  await keep(c, store, raw, false);
  return raw;
}

/**
 * Completes a key change saved before a crash or a lost answer, or removes it when the key store
 * shows it is over; resolves with the key to use.
 */
export async function resumeKeyChange(c: TeeContact, store: KeyStore, pending: PendingKeyChange, stored: StoredKey | undefined): Promise<ClientKey> {
  if (stored !== undefined && (pending.type === 'enrol' || equalBytes(stored.key, pending.key))) {
    // the key was confirmed and stored; only removing the pending change was left undone
    await store.savePending(undefined);
    return importClientKey(stored.key);
  }
  const key = await settled(store, resendOverMqtt(c, pending));
  await keep(c, store, pending.key, stored !== undefined);
  return key;
}

/** Rotates the key (or finishes the rotation still pending); resolves with the new key once confirmed and stored. */
export async function rotateInStore(c: TeeContact, store: KeyStore, current: ClientKey): Promise<ClientKey> {
  const pending = await store.loadPending();
  if (pending?.type === 'rotate') return resumeKeyChange(c, store, pending, await store.load());
  const { raw, key } = await settled(store, rotateOverMqtt(c, current, savePending(c, store)));
  await keep(c, store, raw, true);
  return key;
}
