// Target 2: the trusted component's command interface, fuzzed by a hostile host. Each case runs
// a fresh trusted process on the sealed state of a recorded real session, sends it recorded
// commands (replayed, mutated, with other commands' parameters or unknown codes), answers its
// storage requests with recorded, mutated, missing, repeated or misaddressed answers, then checks
// it still answers (no hang), exits as the protocol says (no crash) and never sent a secret.
import { cpSync, existsSync, rmSync } from 'node:fs';
import { dirname } from 'node:path';
import type { RunOptions, TargetResult } from './broker-target.js';
import { failurePath, writeFailure, type TeeCaseRecord, type TeeFixture } from './case-file.js';
import { mutate } from './mutate.js';
import { Prng } from './prng.js';
import { TEE_ERRORS } from '../src/envelope/errors.js';
import { FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FRAMING_ATTACKS, FRAMING_EXIT_CODE, frameBytes, type RecordedFrame } from './tee-frames.js';
import { recordedAnswers, recordSession, type Recording } from './tee-record.js';
import { needles, TeeSession } from './tee-session.js';

export const TEE_STREAM = 2;
const KEPT_CASES = 3;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The hostile host's answer to a storage request: usually the recorded one, often not. */
function storeAnswer(p: Prng, rec: Recording, request: RecordedFrame, hostile: boolean): Buffer[] {
  const recorded = recordedAnswers(rec, request);
  const anyOfOp = [...rec.storeAnswers.entries()].filter(([k]) => k.startsWith(`${request.code}:`)).flatMap(([, v]) => v);
  const base = recorded.length > 0 ? p.pick(recorded) : anyOfOp.length > 0 ? p.pick(anyOfOp) : { type: FRAME_STORE_REPLY, id: 0, code: 1, payload: Buffer.alloc(0) };
  const reply = (f: Omit<RecordedFrame, 'type' | 'id'>, id = request.id): Buffer => frameBytes({ ...f, type: FRAME_STORE_REPLY, id });
  // while init runs the host is mostly honest: an init that fails leaves only not-initialised refusals
  const r = hostile ? p.int(100) : p.chance(0.97) ? 0 : p.range(60, 99);
  if (r < 60) return [reply(base)];
  if (r < 80) return [reply({ code: p.chance(0.8) ? base.code : p.int(256), payload: mutate(p, base.payload, p.pick(anyOfOp.length > 0 ? anyOfOp : [base]).payload) })];
  if (r < 88) return [reply({ code: p.pick([1, 2, 3, 255]), payload: p.bytes(p.int(64)) })];
  if (r < 93) return []; // never answered: that command waits forever, the others must not
  if (r < 97) return [reply(base), reply(base)];
  return [reply(base, request.id + 1)];
}

/** A command to send: recorded, mutated, another command's parameters, or an unknown code. */
function command(p: Prng, rec: Recording, id: number): Buffer {
  const f = p.pick(rec.commands);
  const codes = [...new Set(rec.commands.map((c) => c.code))];
  const r = p.int(100);
  let out: RecordedFrame = { ...f, id };
  if (r < 35) out = { ...out };
  else if (r < 80) out.payload = mutate(p, f.payload, p.pick(rec.commands).payload);
  else if (r < 90) out.code = p.pick(codes);
  else if (r < 95) out.code = p.int(256);
  else out.type = p.pick([0, 2, 3, 5, 255]);
  if (out.code === rec.init.code) out.code = f.code; // a second init is refused; a mutated one could name any path
  return frameBytes(out);
}

/** The init command: as recorded, cut short (a prefix never names another path), or left out. */
function init(p: Prng, rec: Recording, id: number): Buffer | undefined {
  const r = p.int(100);
  if (r < 90) return frameBytes({ ...rec.init, id });
  if (r < 95) return frameBytes({ ...rec.init, id, payload: rec.init.payload.subarray(0, p.int(rec.init.payload.length)) });
  return undefined;
}

interface CaseOutcome {
  session: TeeSession;
  expectedExit: number;
  /** Answers `internal` (an exception the trusted code did not expect), with their details. */
  internal: string[];
}

/** Every case starts on the state the recording left (a case may change it: a device secret made anew). */
function restoreState(stateDir: string, from: string): void {
  rmSync(stateDir, { recursive: true, force: true });
  cpSync(from, stateDir, { recursive: true });
}

async function runCase(p: Prng, rec: Recording, secrets: Buffer[]): Promise<CaseOutcome> {
  restoreState(rec.stateDir, rec.snapshot);
  let hostile = false;
  const internal: string[] = [];
  const session: TeeSession = new TeeSession(rec.dir, secrets, (f) => {
    if (f.type === FRAME_STORE_REQUEST) for (const b of storeAnswer(p, rec, f, hostile)) session.write(b);
    if (f.type === FRAME_RESULT && f.code === TEE_ERRORS.internal) internal.push(f.payload.toString());
  });
  let id = 1;
  const first = init(p, rec, id);
  if (first !== undefined) {
    // the host waits for init (it reads sealed state through storage requests) before anything else
    const answer = session.result(id, 1000);
    session.write(first);
    await answer;
  }
  hostile = true;
  id++;
  for (let n = p.range(1, 25); n > 0 && session.failure === undefined; n--) {
    const batch: Buffer[] = [];
    for (let k = p.chance(0.8) ? 1 : p.range(2, 6); k > 0; k--) batch.push(command(p, rec, p.chance(0.05) ? id - 1 : id++));
    session.write(Buffer.concat(batch));
    await sleep(p.int(4));
  }
  await sleep(20);
  await session.probe(rec.probe);
  const expectedExit = p.chance(0.1) ? FRAMING_EXIT_CODE : 0;
  if (session.failure !== undefined) await session.kill();
  else await session.end(expectedExit === 0 ? undefined : p.pick(FRAMING_ATTACKS)(p.pick(rec.commands)), expectedExit);
  return { session, expectedExit, internal };
}

export async function fuzzTee(o: RunOptions): Promise<TargetResult> {
  const rec = await recordSession();
  try {
    const secrets = needles(rec.secrets);
    const recent: TeeCaseRecord[] = [];
    const end = Date.now() + o.ms;
    let index = 0;
    let failure: string | undefined;
    const internal = new Map<string, number>();
    while (Date.now() < end && failure === undefined) {
      const outcome = await runCase(new Prng(o.seed, TEE_STREAM, index), rec, secrets);
      const { session, expectedExit } = outcome;
      for (const detail of outcome.internal) internal.set(detail, (internal.get(detail) ?? 0) + 1);
      recent.push({ index, events: session.events, expectedExit });
      if (recent.length > KEPT_CASES) recent.shift();
      failure = session.failure;
      index++;
    }
    o.log(`tee: ${index} cases (${rec.commands.length} recorded commands, ${rec.storeAnswers.size} recorded storage requests, ${rec.secrets.length} secrets watched); ${[...internal.values()].reduce((a, b) => a + b, 0)} internal-error answers`);
    for (const [detail, n] of [...internal].slice(0, 5)) o.log(`  internal (${n}x): ${detail}`);
    if (failure === undefined) return {};
    const state = failurePath('tee', o.seed, index - 1, '.state');
    cpSync(rec.snapshot, state, { recursive: true });
    const fixture: TeeFixture = {
      stateDir: rec.stateDir,
      state,
      probe: { code: rec.probe.code, payloadHex: rec.probe.payload.toString('hex') },
      secretsHex: rec.secrets.map((s) => s.toString('hex')),
    };
    return { failure, failureFile: writeFailure({ target: 'tee', seed: o.seed, caseIndex: index - 1, failure, fixture, cases: recent }) };
  } finally {
    rmSync(rec.dir, { recursive: true, force: true });
  }
}

/** Writes each recorded case's bytes again, at the same times, to a fresh trusted process. */
export async function replayTee(fixture: TeeFixture, cases: readonly TeeCaseRecord[], log: (line: string) => void): Promise<TargetResult> {
  // The recorded init names the state folder by its path: the replay recreates it there.
  const dir = dirname(fixture.stateDir);
  if (existsSync(dir)) throw new Error(`${dir} exists: the replay recreates the trusted state there and will not overwrite it`);
  const probe: RecordedFrame = { type: FRAME_COMMAND, id: 0, code: fixture.probe.code, payload: Buffer.from(fixture.probe.payloadHex, 'hex') };
  const secrets = needles(fixture.secretsHex.map((h) => Buffer.from(h, 'hex')));
  try {
    for (const c of cases) {
      log(`replaying case ${c.index} (${c.events.length} writes)`);
      restoreState(fixture.stateDir, fixture.state);
      const session = new TeeSession(dir, secrets, () => undefined);
      const started = Date.now();
      for (const e of c.events) {
        await sleep(started + e.at - Date.now());
        if (e.hex !== undefined) session.write(Buffer.from(e.hex, 'hex'));
      }
      if (c.expectedExit === 0) await session.probe(probe);
      if (session.failure === undefined) await session.end(undefined, c.expectedExit);
      else await session.kill();
      if (session.failure !== undefined) return { failure: session.failure };
    }
    return {};
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
