// The operator's side of the trusted component: the operator key (it signs tokens, policies,
// revocations and endorsements: the operator's tools read it, the broker never does), and opening
// the trusted component of a data folder with its sealed store (the broker at start, the CLI when
// no broker runs). The broker may create a development operator key on the very first start, for
// the CLI of the quick start; it keeps only the public key.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { openSealedBlobStore, type SealedBlobStore } from '../store/sealed-blobs.js';
import { fromBase64Url, fromHex } from '../envelope/bytes.js';
import { openTrustedComponent, TeeError, type EnrolmentMode, type OpenOptions, type TeeInfo, type TrustedComponent } from '../tee-client/host.js';
import { BUILD_BENCHMARK, BUILD_PRODUCTION, MODE_OPEN, MODE_TOKEN, encodeEndorsementBody, encodeModeBody, encodeOperatorBody, encodePolicyBody, encodeRevocationBody, encodeTokenBody, operatorSignedInput, TOKEN_ID_BYTES, type Grants } from '../envelope/messages.js';

export interface OperatorKey {
  privateKey: KeyObject;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
}

export const OPERATOR_KEY_FILE = 'operator.key';
/** The trusted component's own state directory inside the data folder (device secret, counter). */
export const TEE_STATE_DIR = 'tee';
export const DEFAULT_DATA_DIR = 'data';

function rawEd25519Public(privateKey: KeyObject): Uint8Array {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** The operator key file of the CLI: `--operator-key`, else `<data>/operator.key` (where the quick start's development key is). */
export function operatorKeyPath(dataDir: string, keyFile?: string): string {
  return keyFile ?? join(dataDir, OPERATOR_KEY_FILE);
}

/** Reads an operator private key (Ed25519, PKCS#8 PEM). For the operator's tools only. */
export function loadOperatorKey(path: string): OperatorKey {
  let pem: string;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    throw new Error(`cannot read the operator key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (create one with \`mqt-tz operator-key --out FILE\`)`);
  }
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${path} is not an Ed25519 private key`);
  return { privateKey, publicKey: rawEd25519Public(privateKey) };
}

/** Creates a new operator key pair in `path` (mode 0600, never overwriting an existing file). */
export function createOperatorKey(path: string): OperatorKey {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const privateKey = generateKeyPairSync('ed25519').privateKey;
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, privateKey.export({ format: 'pem', type: 'pkcs8' }).toString());
  } finally {
    closeSync(fd);
  }
  return { privateKey, publicKey: rawEd25519Public(privateKey) };
}

/** A configured operator public key: 64 hex digits. */
export function parseOperatorPublicKey(hex: string): Uint8Array {
  if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new RangeError('must be the 64 hex digits of the raw Ed25519 public key (`mqt-tz operator-key` prints it)');
  return fromHex(hex.toLowerCase());
}

/** body || Ed25519(operator, "mqt-tz/1 operator-signed" || body). */
export function signStatement(operator: OperatorKey, body: Uint8Array): Uint8Array {
  return Buffer.concat([body, sign(null, operatorSignedInput(body), operator.privateKey)]);
}

/** A token granting nothing: the identity enrols, and a policy decides what it may do. */
export const NO_GRANTS: Grants = { publish: [], read: [] };

export function issueToken(operator: OperatorKey, identity: string, ttlSeconds: number, grants: Grants = NO_GRANTS, now = Date.now()): Uint8Array {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('--ttl must be a positive number of seconds');
  return signStatement(operator, encodeTokenBody({ identity, issuedAt: now, expiresAt: now + Math.round(ttlSeconds * 1000), tokenId: randomBytes(TOKEN_ID_BYTES), grants }));
}

export function signPolicy(operator: OperatorKey, json: string, serial: number = Date.now()): Uint8Array {
  return signStatement(operator, encodePolicyBody({ serial, issuedAt: Date.now(), json }));
}

export function signRevocation(operator: OperatorKey, identity: string, now = Date.now()): Uint8Array {
  return signStatement(operator, encodeRevocationBody({ identity, revokedAt: now }));
}

/** The operator's change of the enrolment mode of the component `info` describes (bound to its Ed25519 key). */
export function signModeChange(operator: OperatorKey, info: TeeInfo, mode: EnrolmentMode, now = Date.now()): Uint8Array {
  return signStatement(operator, encodeModeBody({ ed25519: fromHex(info.ed25519), mode: mode === 'open' ? MODE_OPEN : MODE_TOKEN, issuedAt: now }));
}

/** The operator's hand-over of the component `info` describes (bound to its Ed25519 key) to the operator key `next`. */
export function signOperatorChange(operator: OperatorKey, info: TeeInfo, next: Uint8Array, now = Date.now()): Uint8Array {
  return signStatement(operator, encodeOperatorBody({ ed25519: fromHex(info.ed25519), operator: next, issuedAt: now }));
}

/** The operator's endorsement of the component `info` describes: its keys, code, enrolment mode and build. */
export function signEndorsement(operator: OperatorKey, info: TeeInfo, now = Date.now()): Uint8Array {
  const body = encodeEndorsementBody({
    x25519: fromHex(info.x25519), ed25519: fromHex(info.ed25519), measurement: fromHex(info.measurement),
    mode: info.openEnrolment ? MODE_OPEN : MODE_TOKEN, build: info.build === 'benchmark' ? BUILD_BENCHMARK : BUILD_PRODUCTION, issuedAt: now,
  });
  return signStatement(operator, body);
}

/** True when the stored endorsement names the component's current keys and measurement (the code changes with an upgrade). */
export function endorsesCurrentCode(info: TeeInfo): boolean {
  if (info.endorsement === null) return false;
  const body = Buffer.from(fromBase64Url(info.endorsement)).subarray(2, 2 + 96).toString('hex');
  return body === info.x25519 + info.ed25519 + info.measurement;
}

export interface DataTee {
  tee: TrustedComponent;
  store: SealedBlobStore;
  close(): Promise<void>;
}

export interface DataTeeOptions extends Partial<Pick<OpenOptions, 'backend' | 'cacheSize' | 'enrolmentMode' | 'build' | 'scheduling' | 'onWarning' | 'onRestart' | 'operatorPublicKey' | 'channel'>> {
  /**
   * Quick start: when the component is not provisioned and no operator public key is given, create
   * a development operator key pair in `<data>/operator.key` for the CLI and provision with its
   * public key. The private key is never read back.
   */
  createDevOperatorKey?: boolean;
}

/** Opens the trusted component of a data folder: SQLite sealed store, state directory `<data>/tee`. */
export async function openDataTee(dataDir: string, opts: DataTeeOptions = {}): Promise<DataTee> {
  const store = openSealedBlobStore(dataDir);
  const open = (operatorPublicKey: Uint8Array | undefined): Promise<TrustedComponent> =>
    openTrustedComponent({ ...opts, operatorPublicKey, store, stateDir: join(dataDir, TEE_STATE_DIR) });
  let tee: TrustedComponent;
  try {
    try {
      tee = await open(opts.operatorPublicKey);
    } catch (err) {
      if (!(err instanceof TeeError && err.code === 'not-provisioned' && opts.createDevOperatorKey === true && opts.operatorPublicKey === undefined)) throw err;
      tee = await open(createDevOperatorKey(dataDir, opts.onWarning).publicKey);
    }
  } catch (err) {
    store.close();
    throw err;
  }
  return {
    tee,
    store,
    async close() {
      await tee.close();
      store.close();
    },
  };
}

function createDevOperatorKey(dataDir: string, warn: ((m: string) => void) | undefined): { publicKey: Uint8Array } {
  const path = join(dataDir, OPERATOR_KEY_FILE);
  let key: OperatorKey;
  try {
    key = createOperatorKey(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    throw new Error(`the trusted component is not provisioned and ${path} already exists: configure its public key ("tee": {"operatorPublicKey": ...} or --operator-public-key; \`mqt-tz operator-key --show ${path}\` prints it), or move the file away`);
  }
  warn?.(`no operator public key configured: created a development operator key in ${path} for the CLI and provisioned the trusted component with it; move it off this host (the broker never reads it)`);
  return { publicKey: key.publicKey };
}
