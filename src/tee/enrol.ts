// Enrolment and rotation: a client's 256-bit key arrives HPKE-sealed to the trusted component's
// X25519 key; the answer carries a key confirmation (MAC under the client key over the
// transcript) and is signed by the trusted component, so the host can forge neither.
import { createHmac, timingSafeEqual, verify } from 'node:crypto';
import { toHex } from '../envelope/bytes.js';
import { checkIdentity } from '../envelope/envelope-layout.js';
import { TEE_ERRORS, TeeError, orRefuse } from '../envelope/errors.js';
import { AEAD_AES_256_GCM, setupBaseR } from './hpke.js';
import { deriveClientKeys, type ClientKeys } from './keys.js';
import { OBJ, OPEN_GRANTS, TeeState, sha256, writeIdTimes } from './core.js';
import {
  LABELS, MSG_ENROL, MSG_ENROL_RESPONSE, MSG_ROTATE, MSG_ROTATE_RESPONSE, STATEMENT_TOKEN, encodeKeyResponseBody, keyConfirmInput,
  operatorSignedInput, parseEnrolPlaintext, parseKeyRequest, parseRotatePlaintext, parseTokenBody, responseSignedInput, rotateProofInput, splitSigned,
  type KeyRequest, type Token,
} from '../envelope/messages.js';

const ZERO_CONFIRM = new Uint8Array(32);

function respond(state: TeeState, request: Uint8Array, type: number, status: number, confirm: Uint8Array): Uint8Array {
  const body = encodeKeyResponseBody(type, status, confirm);
  const signature = state.signAsTee(responseSignedInput(sha256(request), body));
  return Buffer.concat([body, signature]);
}

function hmac(key: Uint8Array, data: Uint8Array): Buffer {
  return createHmac('sha256', key).update(data).digest();
}

/** Opens the HPKE layer of an enrolment or rotation request; returns the plaintext. */
function openRequest(state: TeeState, bytes: Uint8Array, type: number): { req: KeyRequest; plaintext: Buffer } {
  const req: KeyRequest = orRefuse('enrol-malformed', () => parseKeyRequest(bytes, type));
  const info = Buffer.concat([type === MSG_ENROL ? LABELS.enrolInfo : LABELS.rotateInfo, state.x25519Public]);
  try {
    const { ctx } = setupBaseR(req.enc, state.x25519, info, AEAD_AES_256_GCM);
    return { req, plaintext: ctx.open(req.prefix, req.ciphertext) };
  } catch {
    throw new TeeError('enrol-decrypt-failed', 'request does not decrypt under this trusted component key');
  }
}

function checkToken(state: TeeState, tokenBytes: Uint8Array, identity: string, now: number): Token | undefined {
  if (tokenBytes.length === 0) {
    if (state.config.openEnrolment) return undefined;
    throw new TeeError('token-missing', 'enrolment needs an operator-signed token');
  }
  const token: Token = orRefuse('token-invalid', () => {
    const s = splitSigned(tokenBytes);
    if (s.type !== STATEMENT_TOKEN || !verify(null, operatorSignedInput(s.body), state.operatorKey, s.signature)) throw new Error('token is not signed by the operator');
    return parseTokenBody(s.body);
  });
  if (token.identity !== identity) throw new TeeError('token-identity-mismatch', `token is for ${JSON.stringify(token.identity)}`);
  if (token.expiresAt <= now) throw new TeeError('token-expired', 'token has expired');
  if (state.usedTokens.has(toHex(token.tokenId))) throw new TeeError('token-replayed', 'token was already used');
  return token;
}

/** Runs `work`; a TeeError becomes a signed refusal response with its code as status. */
async function answer(state: TeeState, request: Uint8Array, type: number, work: () => Promise<Uint8Array>): Promise<Uint8Array> {
  try {
    return respond(state, request, type, 0, await work());
  } catch (err) {
    if (!(err instanceof TeeError)) throw err;
    return respond(state, request, type, TEE_ERRORS[err.code], ZERO_CONFIRM);
  }
}

function confirmation(state: TeeState, keys: ClientKeys, request: Uint8Array, identity: string): Uint8Array {
  return hmac(keys.confirm, keyConfirmInput(sha256(request), state.x25519Public, identity));
}

/**
 * The identity's current keys when they are the very key `key` (not revoked): the request repeats
 * one already carried out, sent again because its answer was lost or the client crashed before
 * storing it. Only the client and this component know the key, so the repeat asks for nothing
 * new; it gets the answer the first one got (same confirmation; Ed25519 signs deterministically).
 */
async function alreadyHolds(state: TeeState, identity: string, key: Uint8Array): Promise<ClientKeys | undefined> {
  if (state.revoked.has(identity)) return undefined;
  const current = await state.keysOf(identity);
  if (current === undefined) return undefined;
  return timingSafeEqual(deriveClientKeys(key, current.generation, current.grants).confirm, current.confirm) ? current : undefined;
}

export function enrol(state: TeeState, request: Uint8Array): Promise<Uint8Array> {
  return answer(state, request, MSG_ENROL_RESPONSE, async () => {
    const { plaintext } = openRequest(state, request, MSG_ENROL);
    const p = orRefuse('enrol-malformed', () => parseEnrolPlaintext(plaintext));
    if (!checkIdentity(p.identity)) throw new TeeError('bad-identity', 'identity must be 1-255 bytes of UTF-8');
    const repeated = await alreadyHolds(state, p.identity, p.key);
    if (repeated !== undefined) {
      plaintext.fill(0);
      return confirmation(state, repeated, request, p.identity);
    }
    const now = Date.now();
    const token = checkToken(state, p.token, p.identity, now);
    const revokedAt = state.revoked.get(p.identity);
    if (revokedAt !== undefined && (token === undefined || token.issuedAt <= revokedAt)) {
      throw new TeeError('identity-revoked', 'identity was revoked; a token issued after the revocation is needed');
    }
    if ((await state.keysOf(p.identity)) !== undefined) throw new TeeError('already-enrolled', 'identity is enrolled; use rotation to change its key');
    // The key record (with the token's grants), the used token and the lifted revocation go out in one commit.
    const stored = state.storeKey(p.identity, p.key, 1, token?.grants ?? OPEN_GRANTS);
    const writes: Promise<unknown>[] = [stored];
    if (token !== undefined) {
      for (const [id, exp] of state.usedTokens) if (exp <= now) state.usedTokens.delete(id);
      state.usedTokens.set(toHex(token.tokenId), token.expiresAt);
      writes.push(state.put(OBJ.tokens, writeIdTimes(state.usedTokens)));
    }
    if (revokedAt !== undefined) writes.push(state.liftRevocation(p.identity, token!.issuedAt));
    await Promise.all(writes);
    const keys = await stored;
    p.key.fill(0); // a view into the plaintext
    state.counters.enrolments++;
    return confirmation(state, keys, request, p.identity);
  });
}

export function rotate(state: TeeState, request: Uint8Array): Promise<Uint8Array> {
  return answer(state, request, MSG_ROTATE_RESPONSE, async () => {
    const { req, plaintext } = openRequest(state, request, MSG_ROTATE);
    const p = orRefuse('enrol-malformed', () => parseRotatePlaintext(plaintext));
    if (!checkIdentity(p.identity)) throw new TeeError('bad-identity', 'identity must be 1-255 bytes of UTF-8');
    if (state.revoked.has(p.identity)) throw new TeeError('identity-revoked', 'identity was revoked');
    const repeated = await alreadyHolds(state, p.identity, p.key);
    if (repeated !== undefined) {
      plaintext.fill(0);
      return confirmation(state, repeated, request, p.identity);
    }
    const old = await state.keysOf(p.identity);
    if (old === undefined) throw new TeeError('unknown-identity', 'identity is not enrolled');
    const expected = hmac(old.confirm, rotateProofInput(p.identity, p.key, p.nonce, req.enc));
    if (!timingSafeEqual(expected, p.proof)) throw new TeeError('rotate-proof-invalid', 'proof of the current key does not verify');
    const keys = await state.storeKey(p.identity, p.key, old.generation + 1, old.grants);
    plaintext.fill(0);
    state.counters.rotations++;
    return confirmation(state, keys, request, p.identity);
  });
}
