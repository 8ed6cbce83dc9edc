// Byte layouts of enrolment, rotation, operator-signed statements and the trusted component's
// public info (docs/protocol.md §4–§7). Pure: hashing, MACs and signatures are done by each side
// with its own crypto (node:crypto inside the trusted component, WebCrypto in the client).
import { Reader, Writer, concat, utf8, type Bytes } from './bytes.js';

export const PROTOCOL_VERSION = 1;
export const MSG_ENROL = 0x10;
export const MSG_ROTATE = 0x11;
export const MSG_ENROL_RESPONSE = 0x90;
export const MSG_ROTATE_RESPONSE = 0x91;
export const STATEMENT_TOKEN = 1;
export const STATEMENT_POLICY = 2;
export const STATEMENT_REVOCATION = 3;
export const STATEMENT_ENDORSEMENT = 4;
export const STATEMENT_MODE = 5;
export const STATEMENT_OPERATOR = 6;
export const SIGNATURE_BYTES = 64;
export const CLIENT_NONCE_BYTES = 16;
export const TOKEN_ID_BYTES = 16;
export const ENC_BYTES = 32;

export const LABELS = {
  enrolInfo: utf8('mqt-tz/1 enrol'),
  rotateInfo: utf8('mqt-tz/1 rotate'),
  wrapKey: utf8('mqt-tz/1 wrap key'),
  confirmKey: utf8('mqt-tz/1 confirm key'),
  keyConfirm: utf8('mqt-tz/1 key-confirm'),
  rotateProof: utf8('mqt-tz/1 rotate-proof'),
  response: utf8('mqt-tz/1 response'),
  operatorSigned: utf8('mqt-tz/1 operator-signed'),
  fingerprint: utf8('mqt-tz/1 fingerprint'),
} as const;

// ---- operator-signed statements: body (starting with version, type) followed by a 64-byte Ed25519 signature over label || body

export interface SignedStatement {
  type: number;
  body: Uint8Array;
  signature: Uint8Array;
}

export function splitSigned(bytes: Uint8Array): SignedStatement {
  if (bytes.length < 2 + SIGNATURE_BYTES) throw new RangeError(`signed statement of ${bytes.length} bytes is too short`);
  if (bytes[0] !== PROTOCOL_VERSION) throw new RangeError(`signed statement version ${bytes[0]} is not supported`);
  const body = bytes.subarray(0, bytes.length - SIGNATURE_BYTES);
  return { type: bytes[1]!, body, signature: bytes.subarray(bytes.length - SIGNATURE_BYTES) };
}

export function operatorSignedInput(body: Uint8Array): Bytes {
  return concat(LABELS.operatorSigned, body);
}

/** Topic filters an identity may publish to and read from, granted by its enrolment token. */
export interface Grants {
  publish: string[];
  read: string[];
}

/** At most this many filters per list: a grant is a handful of filters, not a policy. */
export const MAX_GRANT_FILTERS = 255;

/** `u8 n | n x str16 publish filter | u8 m | m x str16 read filter`. */
export function writeGrants(w: Writer, g: Grants): Writer {
  for (const list of [g.publish, g.read]) {
    if (list.length > MAX_GRANT_FILTERS) throw new RangeError(`at most ${MAX_GRANT_FILTERS} filters per grant list`);
    w.u8(list.length);
    for (const f of list) w.str16(f);
  }
  return w;
}

export function readGrants(r: Reader): Grants {
  const list = (what: string): string[] => Array.from({ length: r.u8(what) }, () => r.str16(what));
  return { publish: list('publish grants'), read: list('read grants') };
}

export interface Token {
  identity: string;
  issuedAt: number;
  expiresAt: number;
  tokenId: Uint8Array;
  grants: Grants;
}

export function encodeTokenBody(t: Token): Bytes {
  const w = new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_TOKEN).str8(t.identity).u64(t.issuedAt).u64(t.expiresAt).raw(t.tokenId);
  return writeGrants(w, t.grants).finish();
}

export function parseTokenBody(body: Uint8Array): Token {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_TOKEN) throw new RangeError('statement is not an enrolment token');
  const t = { identity: r.str8('token identity'), issuedAt: r.u64('issuedAt'), expiresAt: r.u64('expiresAt'), tokenId: r.take(TOKEN_ID_BYTES, 'token id'), grants: readGrants(r) };
  r.end('token');
  return t;
}

export interface PolicyStatement {
  serial: number;
  issuedAt: number;
  json: string;
}

export function encodePolicyBody(p: PolicyStatement): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_POLICY).u64(p.serial).u64(p.issuedAt).bytes32(utf8(p.json)).finish();
}

export function parsePolicyBody(body: Uint8Array): PolicyStatement {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_POLICY) throw new RangeError('statement is not a policy');
  const serial = r.u64('serial');
  const issuedAt = r.u64('issuedAt');
  const json = new TextDecoder('utf-8', { fatal: true }).decode(r.bytes32('policy json'));
  r.end('policy');
  return { serial, issuedAt, json };
}

export interface Revocation {
  identity: string;
  revokedAt: number;
}

export function encodeRevocationBody(v: Revocation): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_REVOCATION).str8(v.identity).u64(v.revokedAt).finish();
}

export function parseRevocationBody(body: Uint8Array): Revocation {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_REVOCATION) throw new RangeError('statement is not a revocation');
  const v = { identity: r.str8('revoked identity'), revokedAt: r.u64('revokedAt') };
  r.end('revocation');
  return v;
}

/** How the component was provisioned: enrolment mode (0 token, 1 open) and build kind (0 production, 1 benchmark). */
export interface Provisioning {
  mode: number;
  build: number;
}

export const MODE_TOKEN = 0;
export const MODE_OPEN = 1;
export const BUILD_PRODUCTION = 0;
export const BUILD_BENCHMARK = 1;

export interface Endorsement extends Provisioning {
  x25519: Uint8Array;
  ed25519: Uint8Array;
  measurement: Uint8Array;
  issuedAt: number;
}

export function encodeEndorsementBody(e: Endorsement): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_ENDORSEMENT).raw(e.x25519).raw(e.ed25519).raw(e.measurement).u8(e.mode).u8(e.build).u64(e.issuedAt).finish();
}

export function parseEndorsementBody(body: Uint8Array): Endorsement {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_ENDORSEMENT) throw new RangeError('statement is not an endorsement');
  const e = { x25519: r.take(32, 'x25519'), ed25519: r.take(32, 'ed25519'), measurement: r.take(32, 'measurement'), mode: r.u8('mode'), build: r.u8('build'), issuedAt: r.u64('issuedAt') };
  r.end('endorsement');
  return e;
}

/** The operator changing a provisioned component's enrolment mode; it names the component by its Ed25519 key. */
export interface ModeChange {
  ed25519: Uint8Array;
  mode: number;
  issuedAt: number;
}

export function encodeModeBody(m: ModeChange): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_MODE).raw(m.ed25519).u8(m.mode).u64(m.issuedAt).finish();
}

export function parseModeBody(body: Uint8Array): ModeChange {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_MODE) throw new RangeError('statement is not a mode change');
  const m = { ed25519: r.take(32, 'ed25519'), mode: r.u8('mode'), issuedAt: r.u64('issuedAt') };
  r.end('mode change');
  return m;
}

/** The operator handing a provisioned component (named by its Ed25519 key) to another operator key. */
export interface OperatorChange {
  ed25519: Uint8Array;
  operator: Uint8Array;
  issuedAt: number;
}

export function encodeOperatorBody(o: OperatorChange): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(STATEMENT_OPERATOR).raw(o.ed25519).raw(o.operator).u64(o.issuedAt).finish();
}

export function parseOperatorBody(body: Uint8Array): OperatorChange {
  const r = new Reader(body);
  r.u8();
  if (r.u8() !== STATEMENT_OPERATOR) throw new RangeError('statement is not an operator change');
  const o = { ed25519: r.take(32, 'ed25519'), operator: r.take(32, 'operator key'), issuedAt: r.u64('issuedAt') };
  r.end('operator change');
  return o;
}

// ---- enrolment and rotation

/** `u8 version | u8 type | enc(32) | HPKE ciphertext`; the first two bytes are the HPKE aad. */
export interface KeyRequest {
  type: number;
  prefix: Uint8Array;
  enc: Uint8Array;
  ciphertext: Uint8Array;
}

export function parseKeyRequest(bytes: Uint8Array, expectedType: number): KeyRequest {
  const r = new Reader(bytes);
  const version = r.u8('version');
  if (version !== PROTOCOL_VERSION) throw new RangeError(`request version ${version} is not supported`);
  const type = r.u8('type');
  if (type !== expectedType) throw new RangeError(`request type 0x${type.toString(16)} where 0x${expectedType.toString(16)} was expected`);
  return { type, prefix: bytes.subarray(0, 2), enc: r.take(ENC_BYTES, 'enc'), ciphertext: r.rest() };
}

export function keyRequestPrefix(type: number): Bytes {
  return new Uint8Array([PROTOCOL_VERSION, type]);
}

export interface EnrolPlaintext {
  identity: string;
  key: Uint8Array;
  nonce: Uint8Array;
  token: Uint8Array;
}

export function encodeEnrolPlaintext(p: EnrolPlaintext): Bytes {
  return new Writer().str8(p.identity).raw(p.key).raw(p.nonce).bytes16(p.token).finish();
}

export function parseEnrolPlaintext(bytes: Uint8Array): EnrolPlaintext {
  const r = new Reader(bytes);
  const p = { identity: r.str8('identity'), key: r.take(32, 'key'), nonce: r.take(CLIENT_NONCE_BYTES, 'nonce'), token: r.bytes16('token') };
  r.end('enrolment');
  return p;
}

export interface RotatePlaintext {
  identity: string;
  key: Uint8Array;
  nonce: Uint8Array;
  proof: Uint8Array;
}

export function encodeRotatePlaintext(p: RotatePlaintext): Bytes {
  return new Writer().str8(p.identity).raw(p.key).raw(p.nonce).raw(p.proof).finish();
}

export function parseRotatePlaintext(bytes: Uint8Array): RotatePlaintext {
  const r = new Reader(bytes);
  const p = { identity: r.str8('identity'), key: r.take(32, 'key'), nonce: r.take(CLIENT_NONCE_BYTES, 'nonce'), proof: r.take(32, 'proof') };
  r.end('rotation');
  return p;
}

/** MAC input proving possession of the old key: binds the identity, the new key and this encapsulation. */
export function rotateProofInput(identity: string, newKey: Uint8Array, nonce: Uint8Array, enc: Uint8Array): Bytes {
  return new Writer().raw(LABELS.rotateProof).str8(identity).raw(newKey).raw(nonce).raw(enc).finish();
}

/** MAC input of the key confirmation, under the (new) client key's confirm subkey. */
export function keyConfirmInput(requestHash: Uint8Array, teeX25519: Uint8Array, identity: string): Bytes {
  return new Writer().raw(LABELS.keyConfirm).raw(requestHash).raw(teeX25519).str8(identity).finish();
}

/** `u8 version | u8 type | u8 status | confirm(32) | signature(64)`. */
export interface KeyResponse {
  type: number;
  status: number;
  confirm: Uint8Array;
  body: Uint8Array;
  signature: Uint8Array;
}

export const KEY_RESPONSE_BYTES = 3 + 32 + SIGNATURE_BYTES;

export function encodeKeyResponseBody(type: number, status: number, confirm: Uint8Array): Bytes {
  return new Writer().u8(PROTOCOL_VERSION).u8(type).u8(status).raw(confirm).finish();
}

export function parseKeyResponse(bytes: Uint8Array): KeyResponse {
  if (bytes.length !== KEY_RESPONSE_BYTES) throw new RangeError(`key response of ${bytes.length} bytes, expected ${KEY_RESPONSE_BYTES}`);
  if (bytes[0] !== PROTOCOL_VERSION) throw new RangeError(`response version ${bytes[0]} is not supported`);
  return { type: bytes[1]!, status: bytes[2]!, confirm: bytes.subarray(3, 35), body: bytes.subarray(0, 35), signature: bytes.subarray(35) };
}

/** The trusted component signs every key response, so even a refusal cannot be forged by the host. */
export function responseSignedInput(requestHash: Uint8Array, body: Uint8Array): Bytes {
  return concat(LABELS.response, requestHash, body);
}

/** What clients pin: the keys, the operator and how the component was provisioned (docs/protocol.md §2). */
export function fingerprintInput(x25519: Uint8Array, ed25519: Uint8Array, operator: Uint8Array, p: Provisioning): Bytes {
  return concat(LABELS.fingerprint, x25519, ed25519, operator, Uint8Array.of(p.mode, p.build));
}
