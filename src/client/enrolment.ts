// Enrolment and rotation over MQTT: fetch the trusted component's info, accept it only if it
// matches the pin (fingerprint over keys, operator, mode and build; optionally the operator's
// endorsement; no open enrolment or benchmark build unless opted in), send the HPKE-sealed key,
// and accept the key only once the signed answer carries a valid key confirmation. The caller
// stores the key after that, not before.
import type { MqttClient } from 'mqtt';
import { fromUtf8 } from '../envelope/bytes.js';
import { buildEnrolmentRequest, buildRotationRequest, fingerprintOf, pendingKeyRequest, pinTee, verifyKeyResponse, type TeeInfoJson, type TeePin, type TeePublicKeys } from './crypto/enrol.js';
import { generateClientKeyBytes, type ClientKey } from './crypto/keys.js';
import { bs } from './crypto/webcrypto.js';
import { TeeRequestError, withTeeRequests, type TeeRequest } from './tee-requests.js';

export interface TeeContact extends Pick<TeePin, 'operatorPublicKey' | 'allowOpenEnrolment' | 'allowBenchmarkBuild'> {
  client: MqttClient;
  identity: string;
  teeFingerprint: string;
  timeoutMs: number;
}

async function teeInfo(request: TeeRequest): Promise<TeeInfoJson> {
  try {
    return JSON.parse(fromUtf8(await request('info', new Uint8Array(0)))) as TeeInfoJson;
  } catch (err) {
    if (err instanceof TeeRequestError) throw err;
    throw new TeeRequestError('the trusted component info is not JSON');
  }
}

/**
 * For a client that pins the operator rather than a fingerprint: the fingerprint of the broker's
 * trusted component, once it is provisioned for that operator and carries its endorsement of
 * exactly its keys, code, mode and build. The key file then records it, as if it had been pinned.
 */
export function fingerprintEndorsedBy(c: Omit<TeeContact, 'teeFingerprint' | 'identity'> & { operatorPublicKey: string }): Promise<string> {
  return withTeeRequests(c.client, c.timeoutMs, async (request) => {
    const info = await teeInfo(request);
    await pinTee(info, { operatorPublicKey: c.operatorPublicKey, allowOpenEnrolment: c.allowOpenEnrolment, allowBenchmarkBuild: c.allowBenchmarkBuild });
    return fingerprintOf(info);
  });
}

async function pinnedTee(request: TeeRequest, c: TeeContact): Promise<TeePublicKeys> {
  const info = await teeInfo(request);
  const tee = await pinTee(info, { fingerprint: c.teeFingerprint, operatorPublicKey: c.operatorPublicKey, allowOpenEnrolment: c.allowOpenEnrolment, allowBenchmarkBuild: c.allowBenchmarkBuild });
  await requireCurves(tee);
  return tee;
}

/**
 * Without WebCrypto X25519 and Ed25519 (Chromium 137+, Firefox 130+, Safari 17+) a signed answer
 * would only fail as 'bad-signature'; say what is missing instead.
 */
async function requireCurves(tee: TeePublicKeys): Promise<void> {
  for (const [name, raw, usages] of [['X25519', tee.x25519, []], ['Ed25519', tee.ed25519, ['verify']]] as const) {
    try {
      await globalThis.crypto.subtle.importKey('raw', bs(raw), { name }, false, [...usages]);
    } catch (err) {
      throw new TeeRequestError(`this runtime's WebCrypto lacks ${name} (${(err as Error).name}); enrolment needs Chromium 137+, Firefox 130+, Safari 17+ or Node 20`);
    }
  }
}

/** A key change about to be sent: handed to `beforeSend` first, so a restart can send the same bytes again. */
export interface OutgoingKeyChange {
  type: 'enrol' | 'rotate';
  /** The new raw key. */
  key: Uint8Array;
  request: Uint8Array;
}

export type BeforeSend = (change: OutgoingKeyChange) => Promise<void>;

/** Enrols a fresh key for `identity`; resolves with its raw bytes once confirmed. */
export function enrolOverMqtt(c: TeeContact, token: string | Uint8Array | undefined, beforeSend?: BeforeSend): Promise<Uint8Array> {
  return withTeeRequests(c.client, c.timeoutMs, async (request) => {
    const tee = await pinnedTee(request, c);
    const raw = generateClientKeyBytes();
    const { request: body, pending } = await buildEnrolmentRequest({ tee, identity: c.identity, key: raw, token });
    await beforeSend?.({ type: 'enrol', key: raw, request: body });
    await verifyKeyResponse(pending, await request('enrol', body));
    return raw;
  });
}

/** Replaces the enrolled key; resolves with the new raw key and its derived subkeys once confirmed. */
export function rotateOverMqtt(c: TeeContact, currentKey: ClientKey, beforeSend?: BeforeSend): Promise<{ raw: Uint8Array; key: ClientKey }> {
  return withTeeRequests(c.client, c.timeoutMs, async (request) => {
    const tee = await pinnedTee(request, c);
    const raw = generateClientKeyBytes();
    const { request: body, pending } = await buildRotationRequest({ tee, identity: c.identity, currentKey, newKey: raw });
    await beforeSend?.({ type: 'rotate', key: raw, request: body });
    return { raw, key: await verifyKeyResponse(pending, await request('rotate', body)) };
  });
}

/**
 * Sends a saved key change again, byte for byte (after a crash or a lost answer): the trusted
 * component answers a repeat with the answer it gave the first time. Resolves with the key once confirmed.
 */
export function resendOverMqtt(c: TeeContact, change: OutgoingKeyChange): Promise<ClientKey> {
  return withTeeRequests(c.client, c.timeoutMs, async (request) => {
    const tee = await pinnedTee(request, c);
    const pending = await pendingKeyRequest(change.type, tee, c.identity, change.request, change.key);
    return verifyKeyResponse(pending, await request(change.type, change.request));
  });
}
