// One trusted process under a hostile host: every byte written to it is recorded, every frame it
// sends back is checked for secrets, and the case ends with a liveness probe and its exit status.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { killOnExit } from './broker-child.js';
import type { StreamEvent } from './case-file.js';
import { HANG_MS } from './probe.js';
import { FRAME_COMMAND, FRAME_RESULT, FrameReader, frameBytes, type RecordedFrame } from './tee-frames.js';

const TEE_MAIN = fileURLToPath(new URL('../src/tee/main.js', import.meta.url));
/** The probe's request id: one the generated commands never use. */
export const PROBE_ID = 0xfffffff0;

/** Each secret as raw bytes and as the text forms an error message could carry. */
export function needles(secrets: readonly Buffer[]): Buffer[] {
  return secrets.flatMap((s) => [s, Buffer.from(s.toString('hex')), Buffer.from(s.toString('base64')), Buffer.from(s.toString('base64url'))]);
}

export class TeeSession {
  readonly events: StreamEvent[] = [];
  failure: string | undefined;
  private readonly child: ChildProcess;
  private readonly started = Date.now();
  private readonly stderr: string[] = [];
  private exitStatus: string | undefined;
  private readonly exited: Promise<void>;
  private probeAnswered: (() => void) | undefined;
  private readonly results = new Map<number, (f: RecordedFrame) => void>();

  /** `cwd`: the recording's folder; `onFrame`: the host's reaction to each frame (storage answers). */
  constructor(cwd: string, private readonly secrets: readonly Buffer[], onFrame: (f: RecordedFrame) => void) {
    this.child = spawn(process.execPath, [TEE_MAIN], { cwd, env: {}, stdio: ['pipe', 'pipe', 'pipe'] });
    killOnExit(this.child);
    this.child.stdin!.on('error', () => undefined); // writing after it ended: its exit says why
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (t: string) => this.stderr.push(t));
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code, signal) => {
        this.exitStatus = signal !== null ? `signal ${signal}` : `exit code ${code}`;
        resolve();
      }),
    );
    const reader = new FrameReader((f) => {
      this.check(f);
      if (f.type === FRAME_RESULT && f.id === PROBE_ID) this.probeAnswered?.();
      if (f.type === FRAME_RESULT) this.results.get(f.id)?.(f);
      onFrame(f);
    });
    this.child.stdout!.on('data', (chunk: Buffer) => {
      try {
        reader.push(chunk);
      } catch (err) {
        this.fail(`the trusted process wrote bytes that are not frames: ${(err as Error).message}`);
        this.child.stdout!.removeAllListeners('data');
      }
    });
  }

  private fail(message: string): void {
    this.failure ??= message;
  }

  private check(f: RecordedFrame): void {
    for (const n of this.secrets) {
      if (f.payload.includes(n)) this.fail(`secret material in a frame from the trusted process (type ${f.type}, code ${f.code}, id ${f.id}): ${n.length} bytes of a known secret`);
    }
  }

  write(bytes: Buffer): void {
    if (this.exitStatus !== undefined) return;
    this.events.push({ at: Date.now() - this.started, hex: bytes.toString('hex') });
    this.child.stdin!.write(bytes);
  }

  /** The result of the command with this id, or undefined after `ms` (or once the process has ended). */
  async result(id: number, ms: number): Promise<RecordedFrame | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const answer = await Promise.race([
      new Promise<RecordedFrame>((resolve) => this.results.set(id, resolve)),
      new Promise<undefined>((resolve) => {
        timer = setTimeout(() => resolve(undefined), ms);
      }),
      this.exited.then(() => undefined),
    ]);
    clearTimeout(timer);
    this.results.delete(id);
    return answer;
  }

  /** Sends `probe` and waits for its answer; a hang or a crash before it is the case's failure. */
  async probe(probe: RecordedFrame): Promise<void> {
    if (this.exitStatus !== undefined) return this.fail(`crash: the trusted process ended (${this.exitStatus})${this.stderrTail()}`);
    const answered = new Promise<boolean>((resolve) => (this.probeAnswered = () => resolve(true)));
    this.write(frameBytes({ ...probe, type: FRAME_COMMAND, id: PROBE_ID }));
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), HANG_MS)));
    const ok = await Promise.race([answered, late, this.exited.then(() => false)]);
    clearTimeout(timer);
    if (ok) return;
    this.fail(this.exitStatus !== undefined ? `crash: the trusted process ended (${this.exitStatus})${this.stderrTail()}` : `hang: no answer to the liveness command within ${HANG_MS} ms`);
  }

  /** Ends the session with `last` (or by closing stdin) and checks the exit status is `expected`. */
  async end(last: Buffer | undefined, expected: number): Promise<void> {
    if (last !== undefined) this.write(last);
    this.events.push({ at: Date.now() - this.started, close: 'end' });
    this.child.stdin!.end();
    let killed = false;
    const timer = setTimeout(() => (killed = this.child.kill('SIGKILL')), HANG_MS);
    await this.exited;
    clearTimeout(timer);
    if (killed) this.fail(`hang: the trusted process did not exit within ${HANG_MS} ms of its input's end`);
    else if (this.exitStatus !== `exit code ${expected}`) this.fail(`crash: the trusted process ended with ${this.exitStatus}, expected exit code ${expected}${this.stderrTail()}`);
  }

  /** Kills a process left running (after a failure). */
  async kill(): Promise<void> {
    if (this.exitStatus === undefined) this.child.kill('SIGKILL');
    await this.exited;
  }

  private stderrTail(): string {
    const text = this.stderr.join('').trim();
    return text === '' ? '' : `\n${text.split('\n').slice(-20).join('\n')}`;
  }
}
