// The operator's side of the trusted component, for a data folder: the operator key (it signs
// tokens, policies, revocations and the endorsement), and opening the trusted component with its
// sealed store. Used by the broker at start and by the operator commands of the CLI.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { openSealedBlobStore, type SealedBlobStore } from '../store/sealed-blobs.js';
import { fromBase64Url, fromHex } from '../tee/bytes.js';
import { openTrustedComponent, type OpenOptions, type TeeInfo, type TrustedComponent } from '../tee/host.js';
import { encodeEndorsementBody, encodePolicyBody, encodeRevocationBody, encodeTokenBody, operatorSignedInput, TOKEN_ID_BYTES } from '../tee/messages.js';

export interface OperatorKey {
  privateKey: KeyObject;
  /** Raw 32-byte Ed25519 public key. */
  publicKey: Uint8Array;
}

export const OPERATOR_KEY_FILE = 'operator.key';
export const DEVICE_SECRET_FILE = join('tee', 'device.secret');
export const DEFAULT_DATA_DIR = 'data';

function rawEd25519Public(privateKey: KeyObject): Uint8Array {
  return createPublicKey(privateKey).export({ format: 'der', type: 'spki' }).subarray(-32);
}

/** Reads the operator key (PKCS#8 PEM) from `keyFile`, or `<dataDir>/operator.key`, creating the latter (0600) on first start. */
export function loadOrCreateOperatorKey(dataDir: string, keyFile?: string): OperatorKey {
  const path = keyFile ?? join(dataDir, OPERATOR_KEY_FILE);
  let pem: string | undefined;
  try {
    pem = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || keyFile !== undefined) throw err;
  }
  if (pem === undefined) {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    pem = generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
    const fd = openSync(path, 'wx', 0o600);
    try {
      writeSync(fd, pem);
    } finally {
      closeSync(fd);
    }
  }
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`${path} is not an Ed25519 private key`);
  return { privateKey, publicKey: rawEd25519Public(privateKey) };
}

/** body || Ed25519(operator, "mqt-tz/1 operator-signed" || body). */
export function signStatement(operator: OperatorKey, body: Uint8Array): Uint8Array {
  return Buffer.concat([body, sign(null, operatorSignedInput(body), operator.privateKey)]);
}

export function issueToken(operator: OperatorKey, identity: string, ttlSeconds: number, now = Date.now()): Uint8Array {
  if (!Number.isFinite(ttlSeconds) || ttlSeconds <= 0) throw new RangeError('--ttl must be a positive number of seconds');
  return signStatement(operator, encodeTokenBody({ identity, issuedAt: now, expiresAt: now + Math.round(ttlSeconds * 1000), tokenId: randomBytes(TOKEN_ID_BYTES) }));
}

export function signPolicy(operator: OperatorKey, json: string, serial: number = Date.now()): Uint8Array {
  return signStatement(operator, encodePolicyBody({ serial, issuedAt: Date.now(), json }));
}

export function signRevocation(operator: OperatorKey, identity: string, now = Date.now()): Uint8Array {
  return signStatement(operator, encodeRevocationBody({ identity, revokedAt: now }));
}

export interface DataTee {
  tee: TrustedComponent;
  store: SealedBlobStore;
  operator: OperatorKey;
  close(): Promise<void>;
}

export interface DataTeeOptions extends Partial<Pick<OpenOptions, 'backend' | 'cacheSize' | 'openEnrolment' | 'scheduling' | 'onWarning'>> {
  operatorKeyFile?: string;
}

/**
 * Opens the trusted component of a data folder: SQLite sealed store, device secret, operator key;
 * (re)endorses it with the operator key when it has no endorsement of its current keys and code.
 */
export async function openDataTee(dataDir: string, opts: DataTeeOptions = {}): Promise<DataTee> {
  const operator = loadOrCreateOperatorKey(dataDir, opts.operatorKeyFile);
  const store = openSealedBlobStore(dataDir);
  let tee: TrustedComponent;
  try {
    tee = await openTrustedComponent({ ...opts, store, deviceSecretPath: join(dataDir, DEVICE_SECRET_FILE), operatorPublicKey: operator.publicKey });
  } catch (err) {
    store.close();
    throw err;
  }
  const info = await tee.info();
  if (!endorses(info)) {
    const body = encodeEndorsementBody({ x25519: fromHex(info.x25519), ed25519: fromHex(info.ed25519), measurement: fromHex(info.measurement), issuedAt: Date.now() });
    await tee.setEndorsement(signStatement(operator, body));
  }
  return {
    tee,
    store,
    operator,
    async close() {
      await tee.close();
      store.close();
    },
  };
}

/** True when the stored endorsement covers the current keys and measurement. */
function endorses(info: TeeInfo): boolean {
  if (info.endorsement === null) return false;
  const body = Buffer.from(fromBase64Url(info.endorsement)).subarray(2, 2 + 96).toString('hex');
  return body === info.x25519 + info.ed25519 + info.measurement;
}

