// Shared setup for trusted-component tests: a fresh data folder, real SQLite store, real
// trusted component (inline or as a child process) and real client-side enrolment.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { issueToken, openDataTee, type DataTee } from '../../src/protect/operator.js';
import { buildEnrolmentRequest, importClientKey, pinTee, verifyKeyResponse, type ClientKey, type TeePublicKeys } from '../../src/client/crypto/index.js';
import type { TeeInfo, TeeScheduling } from '../../src/tee/host.js';
import { randomBytes } from 'node:crypto';

export interface Enrolled {
  identity: string;
  raw: Uint8Array;
  key: ClientKey;
}

export interface Fixture extends DataTee {
  dir: string;
  info: TeeInfo;
  teeKeys: TeePublicKeys;
  token(identity: string, ttlSeconds?: number): Uint8Array;
  enrol(identity: string): Promise<Enrolled>;
  /** Every stored (name, blob) as hex, for "store unchanged" assertions. */
  storeState(): string;
  dispose(): Promise<void>;
}

export async function makeFixture(backend: 'inline' | 'process' = 'inline', opts: { openEnrolment?: boolean; cacheSize?: number; dir?: string; scheduling?: TeeScheduling } = {}): Promise<Fixture> {
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'mqt-tz-tee-'));
  const d = await openDataTee(dir, { backend, openEnrolment: opts.openEnrolment, cacheSize: opts.cacheSize, scheduling: opts.scheduling, onWarning: () => undefined });
  const info = await d.tee.info();
  const teeKeys = await pinTee(info, info.fingerprint);
  const token = (identity: string, ttl = 600): Uint8Array => issueToken(d.operator, identity, ttl);
  return {
    ...d,
    dir,
    info,
    teeKeys,
    token,
    async enrol(identity) {
      const raw = randomBytes(32);
      const { request, pending } = await buildEnrolmentRequest({ tee: teeKeys, identity, key: raw, token: token(identity) });
      const key = await verifyKeyResponse(pending, await d.tee.enrol(request));
      return { identity, raw, key: key ?? (await importClientKey(raw)) };
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
