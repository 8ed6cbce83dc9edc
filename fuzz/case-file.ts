// A failing run written out: the seed, the case index and the exact bytes each connection (or
// the hostile host) sent, with their times, so `npm run fuzz -- --replay FILE` sends them again.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** One write (hex bytes) or the end of a connection, `at` ms after its case started. */
export interface StreamEvent {
  at: number;
  hex?: string;
  close?: 'end' | 'destroy';
}

export interface ConnectionRecord {
  events: StreamEvent[];
}

export interface BrokerCaseRecord {
  index: number;
  /** ms from the start of the run: cases overlap (several run at once) and are replayed so. */
  startedAt: number;
  connections: ConnectionRecord[];
}

export interface TeeCaseRecord {
  index: number;
  /** Everything the hostile host wrote to the trusted process's stdin, in order. */
  events: StreamEvent[];
  /** Its exit status once its stdin ends: 0, or 2 after bytes that break the framing. */
  expectedExit: number;
}

/** What a replay of a trusted-component case needs besides the bytes: the state it ran on. */
export interface TeeFixture {
  /** The folder the trusted process keeps its own state in (device secret): its path is inside the recorded init command. */
  stateDir: string;
  /** A copy of that folder as every case started with it. */
  state: string;
  /** The liveness command (answered without storage): its code and parameters. */
  probe: { code: number; payloadHex: string };
  /** The secrets no frame from the trusted process may contain. */
  secretsHex: string[];
}

export type FailureFile =
  | {
      target: 'broker';
      seed: number;
      caseIndex: number;
      failure: string;
      /** Copy of the broker's data folder taken after the harness enrolled its identities: a replay starts on it, so the recorded envelopes are still valid. */
      data?: string;
      cases: BrokerCaseRecord[];
    }
  | { target: 'tee'; seed: number; caseIndex: number; failure: string; fixture: TeeFixture; cases: TeeCaseRecord[] };

export const FAILURE_DIR = join('.tmp', 'fuzz');

/** Where the failure file of this run goes (and, beside it, what else it keeps). */
export function failurePath(target: string, seed: number, caseIndex: number, suffix = '.json'): string {
  mkdirSync(FAILURE_DIR, { recursive: true });
  return join(FAILURE_DIR, `${target}-seed${seed}-case${caseIndex}${suffix}`);
}

export function writeFailure(f: FailureFile): string {
  const path = failurePath(f.target, f.seed, f.caseIndex);
  writeFileSync(path, `${JSON.stringify(f, null, 1)}\n`);
  return path;
}

export function readFailure(path: string): FailureFile {
  const f = JSON.parse(readFileSync(path, 'utf8')) as Partial<FailureFile>;
  if ((f.target !== 'broker' && f.target !== 'tee') || !Array.isArray(f.cases)) throw new Error(`${path} is not a fuzz failure file (target and cases expected)`);
  return f as FailureFile;
}
