// Shared setup for trusted-component tests: a fresh data folder, real SQLite store, real
// trusted component (inline or as a child process) and real client-side enrolment.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createOperatorKey, issueToken, loadOperatorKey, openDataTee, type DataTee, type OperatorKey } from '../../../src/protect/operator.js';
import type { Grants } from '../../../src/envelope/messages.js';
import { buildEnrolmentRequest, importClientKey, pinTee, verifyKeyResponse, type ClientKey, type TeePublicKeys } from '../../../src/client/crypto/index.js';
import type { TeeInfo, TeeScheduling } from '../../../src/tee-client/host.js';
import { randomBytes } from 'node:crypto';

export interface Enrolled {
  identity: string;
  raw: Uint8Array;
  key: ClientKey;
}

/** What the fixture's tokens grant unless a test says otherwise: every protected topic. */
export const ALL_GRANTS: Grants = { publish: ['#'], read: ['#'] };

export interface Fixture extends DataTee {
  dir: string;
  info: TeeInfo;
  teeKeys: TeePublicKeys;
  /** The operator key the component was provisioned with (in the fixture's folder, as the operator's CLI would keep it). */
  operator: OperatorKey;
  token(identity: string, ttlSeconds?: number, grants?: Grants): Uint8Array;
  enrol(identity: string, grants?: Grants): Promise<Enrolled>;
  /** The host-side name the current version of a sealed object is stored under (`name#version`). */
  storedName(object: string): string;
  /** Every stored (name, blob) as hex, for "store unchanged" assertions. */
  storeState(): string;
  dispose(): Promise<void>;
}

export interface FixtureOptions {
  openEnrolment?: boolean;
  build?: 'production' | 'benchmark';
  cacheSize?: number;
  dir?: string;
  scheduling?: TeeScheduling;
}

export async function makeFixture(backend: 'inline' | 'process' = 'inline', opts: FixtureOptions = {}): Promise<Fixture> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'mqt-tz-tee-'));
  const keyFile = join(dir, 'operator.key');
  const operator = existsSync(keyFile) ? loadOperatorKey(keyFile) : createOperatorKey(keyFile);
  const d = await openDataTee(dir, {
    backend, enrolmentMode: opts.openEnrolment === true ? 'open' : undefined, build: opts.build, operatorPublicKey: operator.publicKey,
    cacheSize: opts.cacheSize, scheduling: opts.scheduling, onWarning: () => undefined,
  });
  const info = await d.tee.info();
  const teeKeys = await pinTee(info, { fingerprint: info.fingerprint, allowOpenEnrolment: info.openEnrolment, allowBenchmarkBuild: info.build === 'benchmark' });
  const token = (identity: string, ttl = 600, grants = ALL_GRANTS): Uint8Array => issueToken(operator, identity, ttl, grants);
  return {
    ...d,
    dir,
    info,
    teeKeys,
    operator,
    token,
    async enrol(identity, grants) {
      const raw = randomBytes(32);
      const { request, pending } = await buildEnrolmentRequest({ tee: teeKeys, identity, key: raw, token: token(identity, 600, grants) });
      const key = await verifyKeyResponse(pending, await d.tee.enrol(request));
      return { identity, raw, key: key ?? (await importClientKey(raw)) };
    },
    storedName(object) {
      const names = d.store.snapshot().map((e) => e.name).filter((n) => n.startsWith(`${object}#`));
      const newest = names.sort((a, b) => Number(b.slice(object.length + 1)) - Number(a.slice(object.length + 1)))[0];
      if (newest === undefined) throw new Error(`no stored version of ${object}`);
      return newest;
    },
    storeState() {
      return d.store.snapshot().map((e) => `${e.name}=${Buffer.from(e.blob).toString('hex')}`).join('\n');
    },
    async dispose() {
      await d.close();
      if (opts.dir === undefined) rmSync(dir, { recursive: true, force: true });
    },
  };
}
