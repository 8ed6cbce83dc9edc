// Command dispatch: decodes a command's parameters, runs it, encodes its result (docs/protocol.md §8).
// Shared by both backends, so `inline` and `process` differ only by the process boundary.
import { Reader, Writer } from '../envelope/bytes.js';
import { TeeError } from '../envelope/errors.js';
import { TeeState, measureTrustedCode } from './core.js';
import { enrol, rotate } from './enrol.js';
import { groupRewrapBatch } from './group-batch.js';
import { formGroup, type RecipientOutput } from './groups.js';
import { CMD, NOT_ASKED, STATS_FIELDS, type SealedStorage } from '../envelope/wire.js';

const EMPTY = new Uint8Array(0);

/** `u16 n | n x (u8 0 | bytes32 header  or  u8 refusal)`, written into one exactly sized buffer. */
function encodeOutputs(outputs: readonly RecipientOutput[]): Uint8Array {
  let size = 2;
  for (const o of outputs) size += typeof o === 'number' ? 1 : 5 + o.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  view.setUint16(0, outputs.length);
  let at = 2;
  for (const o of outputs) {
    if (typeof o === 'number') {
      out[at++] = o;
      continue;
    }
    out[at] = 0;
    view.setUint32(at + 1, o.length);
    out.set(o, at + 5);
    at += 5 + o.length;
  }
  return out;
}

/** `u16 n | n x str8 identity`. */
function readIdentities(r: Reader): string[] {
  const ids = new Array<string>(r.u16('identity count'));
  for (let i = 0; i < ids.length; i++) ids[i] = r.str8('identity');
  return ids;
}

function toTeeError(err: unknown): TeeError {
  if (err instanceof TeeError) return err;
  // Truncated or malformed parameters surface as reader errors: name them as such.
  if (err instanceof RangeError || (err as Error).name === 'TruncatedError') return new TeeError('bad-request', (err as Error).message);
  return new TeeError('internal', (err as Error).message);
}

function asTeeError(err: unknown): never {
  throw toTeeError(err);
}

export class Dispatcher {
  private state: TeeState | undefined;

  /** `fixedStateDir`: the state directory of a standalone service, which the host's init cannot change. */
  constructor(private readonly storage: SealedStorage, private readonly codeDir: string, private readonly fixedStateDir?: string) {}

  private ready(): TeeState {
    if (this.state === undefined) throw new TeeError('not-initialised', 'the init command must come first');
    this.state.counters.calls++;
    return this.state;
  }

  /**
   * Runs one command. The re-wrap batch answers synchronously when it can, so batches arriving in
   * one read are answered in the same turn, without a Promise each;
   * errors are thrown (or rejected) as TeeErrors.
   */
  handle(command: number, params: Uint8Array): Uint8Array | Promise<Uint8Array> {
    try {
      const r = command === CMD.groupRewrapBatch ? groupRewrapBatch(this.ready(), params, toTeeError) : this.run(command, params);
      return r instanceof Promise ? r.catch(asTeeError) : r;
    } catch (err) {
      return asTeeError(err);
    }
  }

  private async run(command: number, params: Uint8Array): Promise<Uint8Array> {
    switch (command) {
      case CMD.init: {
        // `u32 cache size | str16 state dir | u8 mode | u8 build (0xff: not asked) | operator key (0 or 32 bytes)`
        if (this.state !== undefined) throw new TeeError('bad-request', 'already initialised');
        const r = new Reader(params);
        const cacheSize = r.u32('cache size');
        const named = r.str16('state directory');
        const stateDir = this.fixedStateDir ?? named;
        const asked = (v: number): number | undefined => (v === NOT_ASKED ? undefined : v);
        const mode = asked(r.u8('mode'));
        const build = asked(r.u8('build'));
        const operator = r.rest();
        if (operator.length !== 0 && operator.length !== 32) throw new TeeError('bad-request', 'the operator public key must be 32 bytes');
        const requested = { mode, build, operatorPublicKey: operator.length === 0 ? undefined : Uint8Array.from(operator) };
        this.state = await TeeState.open({ stateDir, cacheSize, requested }, this.storage, measureTrustedCode(this.codeDir));
        return EMPTY;
      }
      case CMD.info: {
        const s = this.ready();
        return new Writer()
          .raw(s.x25519Public).raw(s.ed25519Public).raw(s.measurement).raw(s.fingerprint).raw(s.provisioning.operator)
          .u8(s.provisioning.mode).u8(s.provisioning.build).u64(s.policy?.serial ?? 0).bytes16(s.endorsement)
          .finish();
      }
      case CMD.enrol:
        return enrol(this.ready(), params);
      case CMD.rotate:
        return rotate(this.ready(), params);
      case CMD.revoke:
        await this.ready().revoke(params);
        return EMPTY;
      case CMD.loadPolicy:
        await this.ready().loadPolicy(params);
        return EMPTY;
      case CMD.setEndorsement:
        await this.ready().setEndorsement(params);
        return EMPTY;
      case CMD.setMode:
        await this.ready().changeMode(params);
        return EMPTY;
      case CMD.setOperator:
        await this.ready().changeOperator(params);
        return EMPTY;
      case CMD.formGroup: {
        // `u32 handle | str16 topic | u16 n | n x str8 member` -> `group id (16) | outputs`
        const s = this.ready();
        const r = new Reader(params);
        const handle = r.u32('group handle');
        const topic = r.str16('topic');
        const members = readIdentities(r);
        r.end('form-group parameters');
        const g = await formGroup(s, handle, topic, members);
        const outputs = encodeOutputs(g.outputs);
        const out = new Uint8Array(g.id.length + outputs.length);
        out.set(g.id);
        out.set(outputs, g.id.length);
        return out;
      }
      case CMD.isEnrolled: {
        const s = this.ready();
        const identity = new Reader(params).str8('identity');
        if (s.revoked.has(identity)) return Uint8Array.of(0);
        try {
          return Uint8Array.of((await s.keysOf(identity)) === undefined ? 0 : 1);
        } catch {
          return Uint8Array.of(0); // an altered blob is not a usable enrolment
        }
      }
      case CMD.stats: {
        const stats = this.ready().stats();
        const w = new Writer();
        for (const f of STATS_FIELDS) w.u64(stats[f]);
        return w.finish();
      }
      default:
        throw new TeeError('unknown-command', `command 0x${command.toString(16)} is not defined`);
    }
  }
}
