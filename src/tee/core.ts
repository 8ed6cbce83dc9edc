// State of the trusted component: its identity, the pinned operator key, policy, revocations,
// used tokens and the key cache. Everything persistent goes through `SealedStorage` as sealed
// blobs; the host keeps them but can neither read nor forge them.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Reader, Writer } from './bytes.js';
import { checkIdentity } from './envelope-layout.js';
import { TeeError, orRefuse, type TeeErrorCode } from './errors.js';
import { generateX25519, rawPrivateKey, rawPublicKey, x25519PrivateKey } from './hpke.js';
import { KeyCache, deriveClientKeys, type ClientKeys } from './keys.js';
import { fingerprintInput, operatorSignedInput, parseEndorsementBody, parsePolicyBody, parseRevocationBody, splitSigned, STATEMENT_ENDORSEMENT, STATEMENT_POLICY, STATEMENT_REVOCATION } from './messages.js';
import type { GroupTable } from './groups.js';
import { Lru } from './lru.js';
import { Policy } from './policy.js';
import { Sealer, readDeviceSecret } from './seal.js';

/** The host's side of the storage RPC (the tee-supplicant's role in OP-TEE). */
export interface SealedStorage {
  get(name: string): Promise<Uint8Array | undefined>;
  put(name: string, blob: Uint8Array): Promise<void>;
  delete(name: string): Promise<void>;
}

export interface CoreConfig {
  deviceSecretPath: string;
  /** Raw 32-byte Ed25519 public key of the operator; pinned sealed on first start. */
  operatorPublicKey: Uint8Array;
  cacheSize: number;
  /** Development only: enrolment without a token, first come first served. */
  openEnrolment: boolean;
}

export interface TeeStatsCounters {
  calls: number;
  rewrapCalls: number;
  rewrapped: number;
  /** Recipient groups formed (src/tee/groups.ts). */
  groupsFormed: number;
  refusals: number;
  rejectedMessages: number;
  reencryptCalls: number;
  enrolments: number;
  rotations: number;
  revocations: number;
  cacheHits: number;
  cacheMisses: number;
  storeReads: number;
  storeWrites: number;
  cacheSize: number;
}

const ED25519_SPKI = Buffer.from('302a300506032b6570032100', 'hex');
const ED25519_PKCS8 = Buffer.from('302e020100300506032b657004220420', 'hex');

export function ed25519PublicKey(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new RangeError('Ed25519 public key must be 32 bytes');
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI, raw]), format: 'der', type: 'spki' });
}

export function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** Measurement: SHA-256 over the names and contents of the trusted code's .js files, sorted. */
export function measureTrustedCode(dir: string): Buffer {
  const h = createHash('sha256');
  for (const name of readdirSync(dir).filter((n) => n.endsWith('.js')).sort()) {
    h.update(`${name}\0`);
    h.update(readFileSync(`${dir}/${name}`));
  }
  return h.digest();
}

/** Recipient groups kept at once; a forgotten group is formed again by the host on its next use. */
const GROUP_TABLE_SIZE = 16_384;

export const OBJ = {
  identity: 'tee/identity',
  operator: 'tee/operator',
  policy: 'tee/policy',
  revoked: 'tee/revoked',
  tokens: 'tee/tokens',
  endorsement: 'tee/endorsement',
  key: (identity: string) => `key/${identity}`,
} as const;

export class TeeState {
  readonly cache: KeyCache;
  readonly counters: Omit<TeeStatsCounters, 'cacheHits' | 'cacheMisses' | 'cacheSize'> = {
    calls: 0, rewrapCalls: 0, rewrapped: 0, groupsFormed: 0, refusals: 0, rejectedMessages: 0, reencryptCalls: 0,
    enrolments: 0, rotations: 0, revocations: 0, storeReads: 0, storeWrites: 0,
  };
  policy = Policy.open();
  /** identity -> revocation time (ms); an enrolment token issued later lifts it. */
  readonly revoked = new Map<string, number>();
  /** token id (hex) -> expiry (ms): single use until they expire anyway. */
  readonly usedTokens = new Map<string, number>();
  endorsement: Uint8Array = new Uint8Array(0);
  /** Moves on with every policy load, revocation and key rotation: older recipient groups are stale. */
  epoch = 0;
  readonly groups: GroupTable;
  private readonly pending = new Map<string, Promise<ClientKeys | undefined>>();

  private constructor(
    readonly config: CoreConfig,
    readonly storage: SealedStorage,
    readonly sealer: Sealer,
    readonly x25519: KeyObject,
    readonly x25519Public: Buffer,
    private readonly ed25519: KeyObject,
    readonly ed25519Public: Buffer,
    readonly operatorKey: KeyObject,
    readonly measurement: Buffer,
  ) {
    this.cache = new KeyCache(config.cacheSize);
    this.groups = new Lru(GROUP_TABLE_SIZE);
  }

  static async open(config: CoreConfig, storage: SealedStorage, measurement: Buffer): Promise<TeeState> {
    const sealer = new Sealer(readDeviceSecret(config.deviceSecretPath));
    const read = async (name: string): Promise<Buffer | undefined> => {
      const blob = await storage.get(name);
      return blob === undefined ? undefined : sealer.unseal(name, blob);
    };
    const operator = Buffer.from(config.operatorPublicKey);
    const pinned = await read(OBJ.operator);
    if (pinned !== undefined && !pinned.equals(operator)) {
      throw new TeeError('operator-mismatch', 'the operator key differs from the one pinned on first start');
    }
    let ident = await read(OBJ.identity);
    if (ident === undefined) {
      const x = generateX25519().privateKey;
      const ed = generateKeyPairSync('ed25519').privateKey;
      ident = Buffer.concat([rawPrivateKey(x), ed.export({ format: 'der', type: 'pkcs8' }).subarray(-32)]);
      await storage.put(OBJ.identity, sealer.seal(OBJ.identity, ident));
    }
    if (pinned === undefined) await storage.put(OBJ.operator, sealer.seal(OBJ.operator, operator));
    const x25519 = x25519PrivateKey(ident.subarray(0, 32));
    const ed = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, ident.subarray(32, 64)]), format: 'der', type: 'pkcs8' });
    const state = new TeeState(config, storage, sealer, x25519, rawPublicKey(x25519), ed, rawPublicKey(ed), ed25519PublicKey(operator), measurement);
    ident.fill(0);
    const policy = await read(OBJ.policy);
    if (policy !== undefined) state.policy = state.verifyPolicy(policy, 0);
    const revoked = await read(OBJ.revoked);
    if (revoked !== undefined) readIdTimes(revoked, (id, at) => state.revoked.set(id, at));
    const tokens = await read(OBJ.tokens);
    if (tokens !== undefined) readIdTimes(tokens, (id, at) => state.usedTokens.set(id, at));
    state.endorsement = (await read(OBJ.endorsement)) ?? new Uint8Array(0);
    return state;
  }

  get fingerprint(): Buffer {
    return sha256(fingerprintInput(this.x25519Public, this.ed25519Public));
  }

  signAsTee(data: Uint8Array): Buffer {
    return sign(null, data, this.ed25519);
  }

  /** Verifies an operator-signed statement of the given type; returns its body. */
  verifyOperator(bytes: Uint8Array, type: number, code: TeeErrorCode): Uint8Array {
    const s = orRefuse(code, () => splitSigned(bytes));
    if (s.type !== type) throw new TeeError(code, `statement type ${s.type} where ${type} was expected`);
    if (!verify(null, operatorSignedInput(s.body), this.operatorKey, s.signature)) throw new TeeError(code, 'operator signature does not verify');
    return s.body;
  }

  verifyPolicy(bytes: Uint8Array, minSerial: number): Policy {
    const body = this.verifyOperator(bytes, STATEMENT_POLICY, 'policy-invalid');
    const p = orRefuse('policy-malformed', () => {
      const statement = parsePolicyBody(body);
      return Policy.parse(statement.json, statement.serial);
    });
    if (p.serial <= minSerial) throw new TeeError('policy-rollback', `policy serial ${p.serial} is not newer than the loaded ${minSerial}`);
    return p;
  }

  async loadPolicy(bytes: Uint8Array): Promise<void> {
    const p = this.verifyPolicy(bytes, this.policy.serial);
    await this.put(OBJ.policy, bytes);
    this.policy = p;
    this.epoch++;
  }

  async revoke(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_REVOCATION, 'revocation-invalid');
    const v = orRefuse('revocation-invalid', () => parseRevocationBody(body));
    if (!checkIdentity(v.identity)) throw new TeeError('bad-identity', 'revocation names an invalid identity');
    const previous = this.revoked.get(v.identity);
    if (previous !== undefined && previous >= v.revokedAt) return; // an older or repeated revocation changes nothing
    this.revoked.set(v.identity, v.revokedAt);
    this.epoch++;
    this.cache.delete(v.identity);
    await this.storage.delete(OBJ.key(v.identity));
    this.counters.storeWrites++;
    await this.put(OBJ.revoked, writeIdTimes(this.revoked));
    this.counters.revocations++;
  }

  async setEndorsement(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_ENDORSEMENT, 'endorsement-invalid');
    const e = orRefuse('endorsement-invalid', () => parseEndorsementBody(body));
    if (!this.x25519Public.equals(e.x25519) || !this.ed25519Public.equals(e.ed25519) || !this.measurement.equals(e.measurement)) {
      throw new TeeError('endorsement-invalid', 'endorsement names other keys or another measurement');
    }
    await this.put(OBJ.endorsement, bytes);
    this.endorsement = Uint8Array.from(bytes);
  }

  async put(name: string, plaintext: Uint8Array): Promise<void> {
    this.counters.storeWrites++;
    await this.storage.put(name, this.sealer.seal(name, plaintext));
  }

  /**
   * The enrolled keys of `identity`, from the cache or (one sealed-store read) from the host.
   * undefined when not enrolled; throws sealed-invalid when the blob was altered or swapped.
   */
  keysOf(identity: string): ClientKeys | undefined | Promise<ClientKeys | undefined> {
    const hit = this.cache.get(identity);
    if (hit !== undefined) return hit;
    let p = this.pending.get(identity);
    if (p === undefined) {
      p = this.loadKeys(identity).finally(() => this.pending.delete(identity));
      this.pending.set(identity, p);
    }
    return p;
  }

  private async loadKeys(identity: string): Promise<ClientKeys | undefined> {
    this.counters.storeReads++;
    const name = OBJ.key(identity);
    const blob = await this.storage.get(name);
    if (blob === undefined) return undefined;
    const plain = this.sealer.unseal(name, blob);
    const r = new Reader(plain);
    const generation = r.u32();
    r.u64();
    const keys = deriveClientKeys(r.take(32), generation);
    plain.fill(0);
    if (!this.revoked.has(identity)) this.cache.set(identity, keys);
    return keys;
  }

  async storeKey(identity: string, raw: Uint8Array, generation: number): Promise<ClientKeys> {
    const plain = new Writer().u32(generation).u64(Date.now()).raw(raw).finish();
    await this.put(OBJ.key(identity), plain);
    plain.fill(0);
    const keys = deriveClientKeys(raw, generation);
    this.cache.set(identity, keys);
    if (generation > 1) this.epoch++; // a rotation: group keys wrapped under the old key are stale
    return keys;
  }

  stats(): TeeStatsCounters {
    return { ...this.counters, cacheHits: this.cache.hits, cacheMisses: this.cache.misses, cacheSize: this.cache.size };
  }
}

function readIdTimes(bytes: Uint8Array, add: (id: string, at: number) => void): void {
  const r = new Reader(bytes);
  for (let n = r.u32(); n > 0; n--) add(r.str8(), r.u64());
}

export function writeIdTimes(map: Map<string, number>): Uint8Array {
  const w = new Writer().u32(map.size);
  for (const [id, at] of map) w.str8(id).u64(at);
  return w.finish();
}
