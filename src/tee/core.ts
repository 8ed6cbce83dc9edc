// State of the trusted component: its identity, how it was provisioned (operator key, enrolment
// mode, build kind), policy, revocations, used tokens and the key cache. Everything persistent is
// a sealed object named in the sealed manifest (sealed-objects.ts); the host keeps the blobs but can
// neither read, forge, drop nor roll them back unnoticed. Nothing that decides trust comes from the
// host: init parameters are only compared with what was sealed at provisioning.
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Reader, Writer, toHex } from '../envelope/bytes.js';
import { checkIdentity } from '../envelope/envelope-layout.js';
import { TeeError, orRefuse, type TeeErrorCode } from '../envelope/errors.js';
import { generateX25519, rawPrivateKey, rawPublicKey, x25519PrivateKey } from './hpke.js';
import { KeyCache, deriveClientKeys, type ClientKeys } from './keys.js';
import {
  BUILD_BENCHMARK, BUILD_PRODUCTION, MODE_OPEN, MODE_TOKEN, fingerprintInput, operatorSignedInput, parseEndorsementBody, parsePolicyBody, parseRevocationBody,
  parseModeBody, parseOperatorBody, readGrants, splitSigned, writeGrants, STATEMENT_ENDORSEMENT, STATEMENT_MODE, STATEMENT_OPERATOR, STATEMENT_POLICY, STATEMENT_REVOCATION, type Grants, type Provisioning,
} from '../envelope/messages.js';
import type { GroupTable } from './groups.js';
import { Lru } from '../envelope/lru.js';
import { Policy, grantAllows } from './policy.js';
import { Sealer } from './seal.js';
import { SealedObjects } from './sealed-objects.js';
import type { SealedStorage, TeeStatsCounters } from '../envelope/wire.js';
import { StateDir } from './state-dir.js';

/**
 * What the host asks for at init. Used once, to provision an empty state directory; a provisioned
 * component only compares them with its sealed record and refuses to start on any difference.
 */
export interface RequestedProvisioning {
  operatorPublicKey?: Uint8Array;
  mode?: number;
  build?: number;
}

export interface CoreConfig {
  /** The trusted component's own state directory: device secret and counter. */
  stateDir: string;
  cacheSize: number;
  requested: RequestedProvisioning;
}

/** The sealed provisioning record: fixed at first start (the mode by operator statements since), bound into the fingerprint. */
export interface ProvisioningRecord extends Provisioning {
  operator: Buffer;
  /** Issue time of the operator's last mode statement (0: none): older ones are replays. */
  modeSince: number;
  /** Issue time of the last operator change (0: none): older ones are replays. */
  operatorSince: number;
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

/**
 * Measurement: SHA-256 over the names and contents of the trusted code's .js files, sorted: those
 * of the trusted core (`teeDir`) and of the shared envelope format next to it, which it imports.
 * The host side (tee-client) is not measured: retuning it leaves the measurement alone.
 */
export function measureTrustedCode(teeDir: string): Buffer {
  const h = createHash('sha256');
  for (const folder of ['envelope', 'tee']) {
    const dir = join(teeDir, '..', folder);
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.js')).sort()) {
      h.update(`${folder}/${name}\0`);
      h.update(readFileSync(join(dir, name)));
    }
  }
  return h.digest();
}

/** Recipient groups kept at once; a forgotten group is formed again by the host on its next use. */
const GROUP_TABLE_SIZE = 16_384;

export const OBJ = {
  identity: 'tee/identity',
  provisioning: 'tee/provisioning',
  policy: 'tee/policy',
  revoked: 'tee/revoked',
  lifted: 'tee/lifted',
  tokens: 'tee/tokens',
  endorsement: 'tee/endorsement',
  key: (identity: string) => `key/${identity}`,
} as const;

/** What an identity enrolled without a token (open-enrolment mode only) may do: everything. */
export const OPEN_GRANTS: Grants = { publish: ['#'], read: ['#'] };

const MODE_NAMES: Record<number, string> = { [MODE_TOKEN]: 'token enrolment', [MODE_OPEN]: 'open enrolment' };
const BUILD_NAMES: Record<number, string> = { [BUILD_PRODUCTION]: 'a production build', [BUILD_BENCHMARK]: 'a benchmark build' };

function encodeProvisioning(p: ProvisioningRecord): Uint8Array {
  return new Writer().raw(p.operator).u8(p.mode).u8(p.build).u64(p.modeSince).u64(p.operatorSince).finish();
}

function parseProvisioning(bytes: Uint8Array): ProvisioningRecord {
  const r = new Reader(bytes);
  const p = { operator: Buffer.from(r.take(32, 'operator key')), mode: r.u8('mode'), build: r.u8('build'), modeSince: r.u64('mode since'), operatorSince: r.u64('operator since') };
  r.end('provisioning record');
  return p;
}

/** Refuses a start whose host asks for anything other than what was sealed at provisioning. */
function checkRequested(sealed: ProvisioningRecord, asked: RequestedProvisioning): void {
  if (asked.operatorPublicKey !== undefined && !sealed.operator.equals(asked.operatorPublicKey)) {
    throw new TeeError('operator-mismatch', `the host asked for operator key ${toHex(asked.operatorPublicKey)}, but this component was provisioned with ${toHex(sealed.operator)}; only a new component (a new fingerprint) can have another operator`);
  }
  if (asked.mode !== undefined && asked.mode !== sealed.mode) {
    throw new TeeError('provisioning-mismatch', `the host asked for ${MODE_NAMES[asked.mode] ?? `mode ${asked.mode}`}, but this component was provisioned for ${MODE_NAMES[sealed.mode]}; an operator-signed mode statement or a new component (a new fingerprint) changes it`);
  }
  if (asked.build !== undefined && asked.build !== sealed.build) {
    throw new TeeError('provisioning-mismatch', `the host asked for ${BUILD_NAMES[asked.build] ?? `build ${asked.build}`}, but this component was provisioned as ${BUILD_NAMES[sealed.build]}; only a new component (a new fingerprint) changes it`);
  }
}

function newIdentity(): Buffer {
  const x = generateX25519().privateKey;
  const ed = generateKeyPairSync('ed25519').privateKey;
  return Buffer.concat([rawPrivateKey(x), ed.export({ format: 'der', type: 'pkcs8' }).subarray(-32)]);
}

export class TeeState {
  readonly cache: KeyCache;
  readonly counters: Omit<TeeStatsCounters, 'cacheHits' | 'cacheMisses' | 'cacheSize'> = {
    calls: 0, rewrapCalls: 0, rewrapped: 0, groupsFormed: 0, refusals: 0, rejectedMessages: 0,
    enrolments: 0, rotations: 0, revocations: 0, storeReads: 0, storeWrites: 0,
  };
  /** The operator's policy; none loaded = each identity's token grants decide (deny by default). */
  policy: Policy | undefined;
  /** identity -> revocation time (ms); an enrolment token issued later lifts it. */
  readonly revoked = new Map<string, number>();
  /** identity -> issue time of the token that lifted its last revocation: revocations up to then are replays. */
  readonly lifted = new Map<string, number>();
  /** token id (hex) -> expiry (ms): single use until they expire anyway. */
  readonly usedTokens = new Map<string, number>();
  endorsement: Uint8Array = new Uint8Array(0);
  /** Moves on with every policy load, revocation and key rotation: older recipient groups are stale. */
  epoch = 0;
  readonly groups: GroupTable;
  /** Read by enrol.ts: token-free enrolment is allowed only in a component provisioned (or switched by the operator) for it. */
  readonly config: { openEnrolment: boolean };
  /** The operator's key: statements verify under it (replaced by an operator change). */
  operatorKey: KeyObject;
  private readonly pending = new Map<string, Promise<ClientKeys | undefined>>();
  /** Identities whose first key is being committed: a concurrent enrolment of the same one is already-enrolled. */
  private readonly enrolling = new Set<string>();

  private constructor(
    readonly objects: SealedObjects,
    public provisioning: ProvisioningRecord,
    readonly x25519: KeyObject,
    readonly x25519Public: Buffer,
    private readonly ed25519: KeyObject,
    readonly ed25519Public: Buffer,
    readonly measurement: Buffer,
    cacheSize: number,
  ) {
    this.cache = new KeyCache(cacheSize);
    this.groups = new Lru(GROUP_TABLE_SIZE);
    this.config = { openEnrolment: provisioning.mode === MODE_OPEN };
    this.operatorKey = ed25519PublicKey(provisioning.operator);
  }

  /**
   * Opens the component of `config.stateDir`: provisions it when the directory is empty (fresh device
   * secret and identity keys, the host's requested operator key, mode and build sealed once),
   * otherwise checks the sealed manifest against the counter and the host's request against the
   * sealed provisioning record.
   */
  static async open(config: CoreConfig, storage: SealedStorage, measurement: Buffer): Promise<TeeState> {
    const dir = new StateDir(config.stateDir);
    const existing = dir.read();
    let objects: SealedObjects;
    let provisioning: ProvisioningRecord;
    let ident: Buffer;
    if (existing === undefined) {
      const operator = config.requested.operatorPublicKey;
      if (operator === undefined) throw new TeeError('not-provisioned', `the trusted component of ${dir.dir} is not provisioned: its first start needs the operator public key`);
      if (operator.length !== 32) throw new TeeError('bad-request', 'the operator public key must be 32 bytes');
      provisioning = { operator: Buffer.from(operator), mode: config.requested.mode ?? MODE_TOKEN, build: config.requested.build ?? BUILD_PRODUCTION, modeSince: 0, operatorSince: 0 };
      if (MODE_NAMES[provisioning.mode] === undefined || BUILD_NAMES[provisioning.build] === undefined) throw new TeeError('bad-request', 'unknown enrolment mode or build kind');
      ident = newIdentity();
      const sealer = new Sealer(dir.createSecret());
      objects = await SealedObjects.provision(storage, sealer, dir, [[OBJ.identity, ident], [OBJ.provisioning, encodeProvisioning(provisioning)]]);
    } else {
      objects = await SealedObjects.open(storage, new Sealer(existing.secret), dir, existing.counter);
      const required = async (name: string): Promise<Buffer> => {
        const plain = await objects.read(name);
        if (plain === undefined) throw new TeeError('sealed-missing', `the sealed manifest names no ${name}`);
        return plain;
      };
      ident = await required(OBJ.identity);
      const record = await required(OBJ.provisioning);
      provisioning = orRefuse('sealed-invalid', () => parseProvisioning(record));
      checkRequested(provisioning, config.requested);
    }
    const x25519 = x25519PrivateKey(ident.subarray(0, 32));
    const ed = createPrivateKey({ key: Buffer.concat([ED25519_PKCS8, ident.subarray(32, 64)]), format: 'der', type: 'pkcs8' });
    ident.fill(0);
    const state = new TeeState(objects, provisioning, x25519, rawPublicKey(x25519), ed, rawPublicKey(ed), measurement, config.cacheSize);
    const policy = await objects.read(OBJ.policy);
    if (policy !== undefined) state.policy = state.verifyPolicy(policy, 0);
    const revoked = await objects.read(OBJ.revoked);
    if (revoked !== undefined) readIdTimes(revoked, (id, at) => state.revoked.set(id, at));
    const lifted = await objects.read(OBJ.lifted);
    if (lifted !== undefined) readIdTimes(lifted, (id, at) => state.lifted.set(id, at));
    const tokens = await objects.read(OBJ.tokens);
    if (tokens !== undefined) readIdTimes(tokens, (id, at) => state.usedTokens.set(id, at));
    state.endorsement = (await objects.read(OBJ.endorsement)) ?? new Uint8Array(0);
    return state;
  }

  get fingerprint(): Buffer {
    return sha256(fingerprintInput(this.x25519Public, this.ed25519Public, this.provisioning.operator, this.provisioning));
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
    const p = this.verifyPolicy(bytes, this.policy?.serial ?? 0);
    await this.put(OBJ.policy, bytes);
    this.policy = p;
    this.epoch++;
  }

  async revoke(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_REVOCATION, 'revocation-invalid');
    const v = orRefuse('revocation-invalid', () => parseRevocationBody(body));
    if (!checkIdentity(v.identity)) throw new TeeError('bad-identity', 'revocation names an invalid identity');
    const previous = this.revoked.get(v.identity) ?? this.lifted.get(v.identity);
    if (previous !== undefined && previous >= v.revokedAt) {
      throw new TeeError('revocation-replayed', `${JSON.stringify(v.identity)} was revoked, or re-enrolled, at or after this revocation's time`);
    }
    // Denied in memory at once; the key record and the list leave the store in one commit.
    this.revoked.set(v.identity, v.revokedAt);
    this.epoch++;
    this.cache.delete(v.identity);
    this.counters.storeWrites += 2;
    await this.objects.write([[OBJ.key(v.identity), null], [OBJ.revoked, writeIdTimes(this.revoked)]]);
    this.counters.revocations++;
  }

  /**
   * The operator's signed change of enrolment mode for this component (named by its Ed25519 key),
   * newer than the last: the fingerprint changes with it, so pinned clients notice.
   */
  async changeMode(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_MODE, 'mode-invalid');
    const m = orRefuse('mode-invalid', () => parseModeBody(body));
    if (!this.ed25519Public.equals(m.ed25519)) throw new TeeError('mode-invalid', 'the mode statement names another trusted component');
    if (MODE_NAMES[m.mode] === undefined) throw new TeeError('mode-invalid', `unknown enrolment mode ${m.mode}`);
    if (m.issuedAt <= this.provisioning.modeSince) throw new TeeError('mode-replayed', 'a mode statement as new or newer was already applied');
    const next = { ...this.provisioning, mode: m.mode, modeSince: m.issuedAt };
    await this.put(OBJ.provisioning, encodeProvisioning(next));
    this.provisioning = next;
    this.config.openEnrolment = m.mode === MODE_OPEN;
  }

  /**
   * The operator's signed hand-over of this component (named by its Ed25519 key) to another
   * operator key, newer than the last: statements verify under the new key from then on, the
   * fingerprint changes with it, and the old operator's endorsement is dropped (clients that pin the
   * new operator need its own).
   */
  async changeOperator(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_OPERATOR, 'operator-change-invalid');
    const o = orRefuse('operator-change-invalid', () => parseOperatorBody(body));
    if (!this.ed25519Public.equals(o.ed25519)) throw new TeeError('operator-change-invalid', 'the operator change names another trusted component');
    const key = orRefuse('operator-change-invalid', () => ed25519PublicKey(o.operator));
    if (o.issuedAt <= this.provisioning.operatorSince) throw new TeeError('operator-change-replayed', 'an operator change as new or newer was already applied');
    const next = { ...this.provisioning, operator: Buffer.from(o.operator), operatorSince: o.issuedAt };
    await this.objects.write([[OBJ.provisioning, encodeProvisioning(next)], [OBJ.endorsement, null]]);
    this.provisioning = next;
    this.operatorKey = key;
    this.endorsement = new Uint8Array(0);
  }

  /** A re-enrolment with a token issued after the revocation: the identity is usable again, and older revocations are replays. */
  liftRevocation(identity: string, tokenIssuedAt: number): Promise<void> {
    this.revoked.delete(identity);
    this.lifted.set(identity, tokenIssuedAt);
    this.counters.storeWrites += 2;
    return this.objects.write([[OBJ.revoked, writeIdTimes(this.revoked)], [OBJ.lifted, writeIdTimes(this.lifted)]]);
  }

  async setEndorsement(bytes: Uint8Array): Promise<void> {
    const body = this.verifyOperator(bytes, STATEMENT_ENDORSEMENT, 'endorsement-invalid');
    const e = orRefuse('endorsement-invalid', () => parseEndorsementBody(body));
    if (!this.x25519Public.equals(e.x25519) || !this.ed25519Public.equals(e.ed25519) || !this.measurement.equals(e.measurement)) {
      throw new TeeError('endorsement-invalid', 'endorsement names other keys or another measurement');
    }
    if (e.mode !== this.provisioning.mode || e.build !== this.provisioning.build) throw new TeeError('endorsement-invalid', 'endorsement names another enrolment mode or build kind');
    await this.put(OBJ.endorsement, bytes);
    this.endorsement = Uint8Array.from(bytes);
  }

  /** Seals and commits one object; queued at once (before the first await), so writes made in one turn share a commit. */
  put(name: string, plaintext: Uint8Array): Promise<void> {
    this.counters.storeWrites++;
    return this.objects.write([[name, plaintext]]);
  }

  /** Whether `identity` may publish to `topic`: the loaded policy if any, else its token grants. */
  mayPublish(identity: string, keys: ClientKeys, topic: string): boolean {
    return this.policy !== undefined ? this.policy.mayPublish(identity, topic) : grantAllows(keys.grants.publish, topic);
  }

  mayRead(identity: string, keys: ClientKeys, topic: string): boolean {
    return this.policy !== undefined ? this.policy.mayRead(identity, topic) : grantAllows(keys.grants.read, topic);
  }

  /** mayPublish for the group streams' fast path: false when the decision needs a key not cached (the general path then decides). */
  mayPublishCached(identity: string, topic: string): boolean {
    if (this.policy !== undefined) return this.policy.mayPublish(identity, topic);
    const keys = this.cache.peek(identity);
    return keys !== undefined && grantAllows(keys.grants.publish, topic);
  }

  /**
   * The enrolled keys of `identity`, from the cache or (one sealed-store read) from the host.
   * undefined when the sealed manifest names no key for it; throws sealed-missing or sealed-invalid
   * when the blob is absent, altered, swapped or older.
   */
  keysOf(identity: string): ClientKeys | undefined | Promise<ClientKeys | undefined> {
    const hit = this.cache.get(identity);
    if (hit !== undefined) return hit;
    if (!this.objects.has(OBJ.key(identity))) return undefined;
    let p = this.pending.get(identity);
    if (p === undefined) {
      p = this.loadKeys(identity).finally(() => this.pending.delete(identity));
      this.pending.set(identity, p);
    }
    return p;
  }

  private async loadKeys(identity: string): Promise<ClientKeys | undefined> {
    this.counters.storeReads++;
    const plain = await this.objects.read(OBJ.key(identity));
    if (plain === undefined) return undefined;
    const r = new Reader(plain);
    const generation = r.u32();
    r.u64();
    const keys = deriveClientKeys(r.take(32), generation, readGrants(r));
    plain.fill(0);
    if (!this.revoked.has(identity)) this.cache.set(identity, keys);
    return keys;
  }

  /**
   * Commits `identity`'s key record (generation 1: a first enrolment, refused as already-enrolled
   * when one exists or is being committed). Queued before the first await, so writes the caller
   * makes right after it join the same commit.
   */
  async storeKey(identity: string, raw: Uint8Array, generation: number, grants: Grants): Promise<ClientKeys> {
    const name = OBJ.key(identity);
    if (generation === 1 && (this.objects.has(name) || this.enrolling.has(identity))) throw new TeeError('already-enrolled', 'identity is enrolled; use rotation to change its key');
    const plain = writeGrants(new Writer().u32(generation).u64(Date.now()).raw(raw), grants).finish();
    const written = this.put(name, plain);
    plain.fill(0);
    this.enrolling.add(identity);
    try {
      await written;
    } finally {
      this.enrolling.delete(identity);
    }
    const keys = deriveClientKeys(raw, generation, grants);
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
