// Entry point of the `process` backend: the trusted component as its own OS process, spoken to
// over stdin/stdout frames. Sealed storage is asked of the host over the same pipes.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Writer } from '../envelope/bytes.js';
import { Dispatcher } from './commands.js';
import type { SealedStorage } from '../envelope/wire.js';
import { TEE_ERRORS, TeeError } from '../envelope/errors.js';
import { FRAME_COMMAND, FRAME_RESULT, FRAME_STORE_REPLY, FRAME_STORE_REQUEST, FrameDecoder, STORE_ABSENT, STORE_DELETE, STORE_GET, STORE_OK, STORE_PUT, corkedWriter, encodeFrame, type Frame } from '../envelope/wire.js';

// Set by whoever starts this process, never by the host over the pipe: `--user UID:GID` drops root
// before any state is read (changing uid also makes the kernel mark the process non-dumpable when
// fs.suid_dumpable is 0, so its memory is closed even to other processes of that user);
// `--state-dir DIR` (mqt-tz tee serve) fixes the state directory whatever init names.
const { values: launch } = parseArgs({ options: { user: { type: 'string' }, 'state-dir': { type: 'string' } } });
if (launch.user !== undefined) {
  const [uid, gid] = launch.user.split(':').map(Number);
  process.setgroups!([gid!]);
  process.setgid!(gid!);
  process.setuid!(uid!);
}

const waiting = new Map<number, { resolve: (f: Frame) => void }>();
let nextId = 1;

function storeCall(op: number, name: string, blob?: Uint8Array): Promise<Frame> {
  const id = nextId++ >>> 0;
  const w = new Writer().str16(name);
  if (blob !== undefined) w.raw(blob);
  process.stdout.write(encodeFrame(FRAME_STORE_REQUEST, id, op, w.finish()));
  return new Promise((resolve) => waiting.set(id, { resolve }));
}

async function expectDone(reply: Promise<Frame>, name: string): Promise<Frame> {
  const f = await reply;
  if (f.code !== STORE_OK && f.code !== STORE_ABSENT) throw new TeeError('store-failure', `host storage failed for ${name}: ${f.payload.toString()}`);
  return f;
}

const storage: SealedStorage = {
  async get(name) {
    const f = await expectDone(storeCall(STORE_GET, name), name);
    return f.code === STORE_ABSENT ? undefined : f.payload;
  },
  async put(name, blob) {
    await expectDone(storeCall(STORE_PUT, name, blob), name);
  },
  async delete(name) {
    await expectDone(storeCall(STORE_DELETE, name), name);
  },
};

/** Results finished in one turn of the event loop go back to the host in one write. */
const reply = corkedWriter(process.stdout);

const dispatcher = new Dispatcher(storage, dirname(fileURLToPath(import.meta.url)), launch['state-dir']);

function fail(id: number, err: unknown): void {
  const e = err instanceof TeeError ? err : new TeeError('internal', String(err));
  reply(encodeFrame(FRAME_RESULT, id, TEE_ERRORS[e.code], Buffer.from(e.detail)));
}

const decoder = new FrameDecoder((frame) => {
  if (frame.type === FRAME_STORE_REPLY) {
    waiting.get(frame.id)?.resolve(frame);
    waiting.delete(frame.id);
    return;
  }
  if (frame.type !== FRAME_COMMAND) return;
  let result: Uint8Array | Promise<Uint8Array>;
  try {
    result = dispatcher.handle(frame.code, frame.payload);
  } catch (err) {
    fail(frame.id, err);
    return;
  }
  if (result instanceof Promise) result.then((r) => reply(encodeFrame(FRAME_RESULT, frame.id, 0, r)), (err: unknown) => fail(frame.id, err));
  else reply(encodeFrame(FRAME_RESULT, frame.id, 0, result));
});

process.stdin.on('data', (chunk: Buffer) => {
  try {
    decoder.push(chunk);
  } catch (err) {
    process.stderr.write(`trusted component: ${(err as Error).message}\n`);
    process.exit(2); // a framing error means the host no longer speaks the protocol
  }
});
process.stdin.on('end', () => process.exit(0));
