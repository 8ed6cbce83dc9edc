// Operator tooling for the trusted component: `tee info`, `token`, `policy sign|load`, `revoke`,
// plus the functions the broker uses to open the trusted component of a data folder.
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { openSealedBlobStore, type SealedBlobStore } from '../store/sealed-blobs.js';
import { fromBase64Url, fromHex, toBase64Url } from '../tee/bytes.js';
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

export interface DataTeeOptions extends Partial<Pick<OpenOptions, 'backend' | 'cacheSize' | 'openEnrolment' | 'onWarning'>> {
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

export interface CliOutput {
  out(line: string): void;
}

const stdoutOutput: CliOutput = { out: (line) => process.stdout.write(`${line}\n`) };

async function withTee<T>(dataDir: string, keyFile: string | undefined, work: (d: DataTee) => Promise<T>): Promise<T> {
  const d = await openDataTee(dataDir, { operatorKeyFile: keyFile });
  try {
    return await work(d);
  } finally {
    await d.close();
  }
}

function readSignedArg(value: string): Uint8Array {
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  const lines = text.trim().split('\n');
  return fromBase64Url(lines[lines.length - 1]!.trim());
}

export function registerTeeCommands(program: Command, io: CliOutput = stdoutOutput): void {
  const dataOpt = ['--data <dir>', 'data folder', DEFAULT_DATA_DIR] as const;
  const keyOpt = ['--operator-key <file>', 'operator Ed25519 private key (PKCS#8 PEM); default <data>/operator.key'] as const;

  const tee = program.command('tee').description('trusted component tools');
  tee
    .command('info')
    .description('print the trusted component identity, measurement, endorsement and fingerprint as JSON')
    .option(...dataOpt)
    .option(...keyOpt)
    .action(async (o: { data: string; operatorKey?: string }) => {
      const info = await withTee(o.data, o.operatorKey, (d) => d.tee.info());
      io.out(JSON.stringify(info, null, 2));
    });

  const policy = tee.command('policy').description('operator-signed re-wrap policy');
  policy
    .command('sign')
    .description('sign a policy JSON file; prints the signed policy (base64url) alone on the last line')
    .requiredOption('--file <policy.json>', 'policy: {"rules":[{"identity":"alice","publish":["a/#"],"read":["a/#"]}]}')
    .option('--serial <n>', 'policy serial, must grow with every policy (default: now in ms)')
    .option(...dataOpt)
    .option(...keyOpt)
    .action((o: { file: string; serial?: string; data: string; operatorKey?: string }) => {
      const serial = o.serial === undefined ? Date.now() : Number(o.serial);
      if (!Number.isSafeInteger(serial) || serial <= 0) throw new RangeError('--serial must be a positive integer');
      const json = readFileSync(o.file, 'utf8');
      JSON.parse(json); // fail here, clearly, rather than inside the trusted component
      io.out(toBase64Url(signPolicy(loadOrCreateOperatorKey(o.data, o.operatorKey), json, serial)));
    });
  policy
    .command('load')
    .description('load a signed policy into the trusted component of the data folder (stored sealed)')
    .requiredOption('--signed <base64url|@file>', 'output of `tee policy sign`')
    .option(...dataOpt)
    .option(...keyOpt)
    .action(async (o: { signed: string; data: string; operatorKey?: string }) => {
      const serial = await withTee(o.data, o.operatorKey, async (d) => {
        await d.tee.loadPolicy(readSignedArg(o.signed));
        return (await d.tee.info()).policySerial;
      });
      io.out(`policy serial ${serial} loaded`);
    });

  program
    .command('token')
    .description('issue an operator-signed enrolment token; printed alone on the last line')
    .requiredOption('--id <identity>', 'identity (MQTT client id) the token enrols')
    .option('--ttl <seconds>', 'validity in seconds', '86400')
    .option(...dataOpt)
    .option(...keyOpt)
    .action((o: { id: string; ttl: string; data: string; operatorKey?: string }) => {
      const operator = loadOrCreateOperatorKey(o.data, o.operatorKey);
      const token = issueToken(operator, o.id, Number(o.ttl));
      io.out(`enrolment token for ${JSON.stringify(o.id)}, valid ${Number(o.ttl)} s:`);
      io.out(toBase64Url(token));
    });

  program
    .command('revoke')
    .description('revoke an identity: its key leaves the trusted component cache and store at once')
    .requiredOption('--id <identity>', 'identity to revoke')
    .option(...dataOpt)
    .option(...keyOpt)
    .action(async (o: { id: string; data: string; operatorKey?: string }) => {
      const signed = await withTee(o.data, o.operatorKey, async (d) => {
        const revocation = signRevocation(d.operator, o.id);
        await d.tee.revoke(revocation);
        return revocation;
      });
      io.out(`revoked ${JSON.stringify(o.id)}; signed revocation:`);
      io.out(toBase64Url(signed));
    });
}
