// Client side of enrolment and rotation: the key goes HPKE-sealed to the pinned trusted
// component; its answer must carry the trusted component's signature and a key confirmation
// (MAC under the new key over the transcript), neither of which the broker can forge.
import { fromBase64Url, fromHex, toHex, type Bytes } from '../../envelope/bytes.js';
import { codeFromNumber } from '../../envelope/errors.js';
import {
  CLIENT_NONCE_BYTES, LABELS, MSG_ENROL, MSG_ENROL_RESPONSE, MSG_ROTATE, MSG_ROTATE_RESPONSE, encodeEnrolPlaintext, encodeRotatePlaintext,
  fingerprintInput, keyConfirmInput, keyRequestPrefix, operatorSignedInput, parseEndorsementBody, parseKeyResponse, responseSignedInput,
  rotateProofInput, splitSigned, BUILD_BENCHMARK, BUILD_PRODUCTION, MODE_OPEN, MODE_TOKEN, STATEMENT_ENDORSEMENT, type Provisioning,
} from '../../envelope/messages.js';
import { concat, equalBytes } from '../../envelope/bytes.js';
import { EnrolmentError } from './errors.js';
import { setupBaseS } from './hpke.js';
import { importClientKey, type ClientKey } from './keys.js';
import { ed25519Verify, hmac, randomBytes, sha256 } from './webcrypto.js';

export interface TeePublicKeys {
  x25519: Bytes;
  ed25519: Bytes;
}

/** The public part of `mqt-tz tee info` a client needs (hex strings as printed). */
export interface TeeInfoJson {
  x25519: string;
  ed25519: string;
  operatorPublicKey: string;
  openEnrolment: boolean;
  build: string;
  measurement?: string;
  endorsement?: string | null;
}

/** What a client trusts a trusted component by, and what it accepts beyond a production, token-mode one. */
export interface TeePin {
  /** The component's fingerprint (keys, operator, mode, build), from `mqt-tz tee info`. */
  fingerprint?: string;
  /** The operator's public key (hex): the component must be provisioned with it and carry its endorsement. */
  operatorPublicKey?: string;
  /** Accept a component provisioned for open enrolment (development only: anyone may enrol any unused identity). */
  allowOpenEnrolment?: boolean;
  /** Accept a benchmark build (provisioned for measurements, not for real data). */
  allowBenchmarkBuild?: boolean;
}

function provisioningOf(info: TeeInfoJson): Provisioning {
  if (typeof info.openEnrolment !== 'boolean' || (info.build !== 'production' && info.build !== 'benchmark')) {
    throw new EnrolmentError('fingerprint-mismatch', 'trusted component info lacks its enrolment mode or build kind');
  }
  return { mode: info.openEnrolment ? MODE_OPEN : MODE_TOKEN, build: info.build === 'benchmark' ? BUILD_BENCHMARK : BUILD_PRODUCTION };
}

function key32(hex: string | undefined, what: string): Bytes {
  if (typeof hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(hex)) throw new EnrolmentError('fingerprint-mismatch', `trusted component ${what} must be 32 bytes of hex`);
  return fromHex(hex.toLowerCase());
}

/** SHA-256 over the component's keys, operator key, enrolment mode and build kind (docs/protocol.md §2). */
export async function fingerprintOf(info: TeeInfoJson): Promise<string> {
  return toHex(await sha256(fingerprintInput(key32(info.x25519, 'X25519 key'), key32(info.ed25519, 'Ed25519 key'), key32(info.operatorPublicKey, 'operator key'), provisioningOf(info))));
}

/**
 * Accepts the trusted component only if it matches what the client pins: its fingerprint, and/or
 * the operator's key with the operator's endorsement of exactly these keys, mode and build. Open
 * enrolment and benchmark builds are refused unless the pin allows them.
 */
export async function pinTee(info: TeeInfoJson, pin: string | TeePin): Promise<TeePublicKeys> {
  const p: TeePin = typeof pin === 'string' ? { fingerprint: pin } : pin;
  if (p.fingerprint === undefined && p.operatorPublicKey === undefined) throw new EnrolmentError('fingerprint-mismatch', 'pin the trusted component by its fingerprint or by the operator public key');
  const keys = { x25519: key32(info.x25519, 'X25519 key'), ed25519: key32(info.ed25519, 'Ed25519 key') };
  if (p.fingerprint !== undefined && (await fingerprintOf(info)) !== p.fingerprint.toLowerCase()) {
    throw new EnrolmentError('fingerprint-mismatch', 'trusted component keys, operator, enrolment mode or build do not match the pinned fingerprint');
  }
  if (p.operatorPublicKey !== undefined) {
    if (String(info.operatorPublicKey).toLowerCase() !== p.operatorPublicKey.toLowerCase()) throw new EnrolmentError('endorsement-invalid', 'trusted component was provisioned for another operator');
    await verifyEndorsement(info, p.operatorPublicKey);
  }
  const provisioning = provisioningOf(info);
  if (provisioning.mode === MODE_OPEN && p.allowOpenEnrolment !== true) {
    throw new EnrolmentError('open-enrolment-refused', 'trusted component is in open-enrolment mode (anyone may enrol any unused identity); opt in with allowOpenEnrolment / --allow-open-enrolment, for development only');
  }
  if (provisioning.build === BUILD_BENCHMARK && p.allowBenchmarkBuild !== true) {
    throw new EnrolmentError('benchmark-build-refused', 'trusted component is a benchmark build (provisioned for measurements, not for real data); opt in with allowBenchmarkBuild / --allow-benchmark-build');
  }
  return keys;
}

/** Checks the operator's endorsement of these keys, this measurement, mode and build; returns its time. */
export async function verifyEndorsement(info: TeeInfoJson, operatorPublicKeyHex: string): Promise<number> {
  try {
    const s = splitSigned(fromBase64Url(info.endorsement ?? ''));
    if (s.type !== STATEMENT_ENDORSEMENT) throw new Error('not an endorsement');
    if (!(await ed25519Verify(fromHex(operatorPublicKeyHex), s.signature, operatorSignedInput(s.body)))) throw new Error('signature does not verify');
    const e = parseEndorsementBody(s.body);
    if (toHex(e.x25519) !== info.x25519 || toHex(e.ed25519) !== info.ed25519 || toHex(e.measurement) !== info.measurement) throw new Error('names other keys or code');
    const p = provisioningOf(info);
    if (e.mode !== p.mode || e.build !== p.build) throw new Error('names another enrolment mode or build');
    return e.issuedAt;
  } catch (err) {
    throw new EnrolmentError('endorsement-invalid', `endorsement: ${(err as Error).message}`);
  }
}

export interface PendingKeyRequest {
  readonly type: 'enrol' | 'rotate';
  readonly tee: TeePublicKeys;
  readonly identity: string;
  readonly requestHash: Bytes;
  readonly newKey: ClientKey;
}

async function sealRequest(tee: TeePublicKeys, type: number, plaintext: Uint8Array, proofFor?: (enc: Uint8Array) => Promise<Uint8Array>): Promise<Bytes> {
  const info = concat(type === MSG_ENROL ? LABELS.enrolInfo : LABELS.rotateInfo, tee.x25519);
  const ctx = await setupBaseS(tee.x25519, info, 2);
  const body = proofFor === undefined ? plaintext : concat(plaintext, await proofFor(ctx.enc));
  const prefix = keyRequestPrefix(type);
  const request = concat(prefix, ctx.enc, await ctx.seal(prefix, body));
  body.fill(0);
  return request;
}

export interface EnrolmentInput {
  tee: TeePublicKeys;
  identity: string;
  /** The raw 256-bit client key (kept by the client in its key file). */
  key: Uint8Array;
  /** Operator-signed token, raw or as printed by `mqt-tz token` (base64url); omit in open-enrolment mode. */
  token?: Uint8Array | string;
}

export async function buildEnrolmentRequest(o: EnrolmentInput): Promise<{ request: Bytes; pending: PendingKeyRequest }> {
  const token = o.token === undefined ? new Uint8Array(0) : typeof o.token === 'string' ? fromBase64Url(o.token.trim()) : o.token;
  const plaintext = encodeEnrolPlaintext({ identity: o.identity, key: o.key, nonce: randomBytes(CLIENT_NONCE_BYTES), token });
  const request = await sealRequest(o.tee, MSG_ENROL, plaintext);
  return { request, pending: await pendingKeyRequest('enrol', o.tee, o.identity, request, o.key) };
}

/** What verifyKeyResponse needs to check the answer to `request` (also for a request sent again after a restart). */
export async function pendingKeyRequest(type: 'enrol' | 'rotate', tee: TeePublicKeys, identity: string, request: Uint8Array, newKey: Uint8Array): Promise<PendingKeyRequest> {
  return { type, tee, identity, requestHash: await sha256(request), newKey: await importClientKey(newKey) };
}

export interface RotationInput {
  tee: TeePublicKeys;
  identity: string;
  currentKey: ClientKey;
  newKey: Uint8Array;
}

export async function buildRotationRequest(o: RotationInput): Promise<{ request: Bytes; pending: PendingKeyRequest }> {
  const nonce = randomBytes(CLIENT_NONCE_BYTES);
  // Proof = MAC under the current key over (identity, new key, nonce, this encapsulation).
  const unproven = encodeRotatePlaintext({ identity: o.identity, key: o.newKey, nonce, proof: new Uint8Array(32) }).subarray(0, -32);
  const request = await sealRequest(o.tee, MSG_ROTATE, unproven, (enc) => hmac(o.currentKey.confirm, rotateProofInput(o.identity, o.newKey, nonce, enc)));
  return { request, pending: await pendingKeyRequest('rotate', o.tee, o.identity, request, o.newKey) };
}

/** Verifies the trusted component's answer; resolves with the now-enrolled key, throws EnrolmentError otherwise. */
export async function verifyKeyResponse(pending: PendingKeyRequest, response: Uint8Array): Promise<ClientKey> {
  let r;
  try {
    r = parseKeyResponse(response);
  } catch (err) {
    throw new EnrolmentError('bad-response', (err as Error).message);
  }
  const expectedType = pending.type === 'enrol' ? MSG_ENROL_RESPONSE : MSG_ROTATE_RESPONSE;
  if (r.type !== expectedType) throw new EnrolmentError('bad-response', `response type 0x${r.type.toString(16)} does not answer a ${pending.type} request`);
  if (!(await ed25519Verify(pending.tee.ed25519, r.signature, responseSignedInput(pending.requestHash, r.body)))) {
    throw new EnrolmentError('bad-signature', 'response is not signed by the pinned trusted component for this request');
  }
  if (r.status !== 0) {
    const code = codeFromNumber(r.status);
    throw new EnrolmentError('refused', `trusted component refused the ${pending.type === 'enrol' ? 'enrolment' : 'rotation'}: ${code}`, code);
  }
  const expected = await hmac(pending.newKey.confirm, keyConfirmInput(pending.requestHash, pending.tee.x25519, pending.identity));
  if (!equalBytes(expected, r.confirm)) throw new EnrolmentError('bad-confirmation', 'key confirmation does not verify');
  return pending.newKey;
}
