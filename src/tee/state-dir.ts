// The trusted component's own state directory (DATA/tee/ in the simulation; its own OS user's once
// the trusted process gets one): the device secret (the stand-in for a hardware unique key) and the
// monotonic counter of the sealed manifest (the stand-in for RPMB). Only the trusted process reads
// or writes these files; the host reaches sealed state only as blobs through the storage RPC.
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasyncSync, fsyncSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { TeeError } from '../envelope/errors.js';

export const DEVICE_SECRET_FILE = 'device.secret';
export const COUNTER_FILE = 'counter';
const SECRET_BYTES = 32;
const COUNTER_BYTES = 8;

function readIfPresent(path: string): Buffer | undefined {
  try {
    return readFileSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TeeError('store-failure', `cannot read ${path}: ${(err as Error).message}`);
  }
}

/** Creates `path` with `bytes` (mode 0600), never overwriting, and makes it durable. */
function createDurable(path: string, bytes: Uint8Array): void {
  const fd = openSync(path, 'wx', 0o600);
  try {
    writeSync(fd, bytes);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

export interface ProvisionedState {
  secret: Buffer;
  counter: number;
}

export class StateDir {
  readonly secretPath: string;
  readonly counterPath: string;

  constructor(readonly dir: string) {
    this.secretPath = join(dir, DEVICE_SECRET_FILE);
    this.counterPath = join(dir, COUNTER_FILE);
  }

  /**
   * The device secret and counter of a provisioned component, or undefined when the directory holds
   * neither (never provisioned). One without the other is refused: re-provisioning silently would
   * hand the host a fresh identity whenever it deletes a file.
   */
  read(): ProvisionedState | undefined {
    const secret = readIfPresent(this.secretPath);
    const counter = readIfPresent(this.counterPath);
    if (secret === undefined && counter === undefined) return undefined;
    if (secret === undefined || counter === undefined) {
      const [has, lacks] = secret === undefined ? [this.counterPath, this.secretPath] : [this.secretPath, this.counterPath];
      throw new TeeError('state-incomplete', `${has} exists but ${lacks} does not: provisioning was interrupted or a file was removed; refusing to start (delete ${this.dir} to provision a new component, with a new fingerprint)`);
    }
    if (secret.length !== SECRET_BYTES) throw new TeeError('state-incomplete', `device secret ${this.secretPath} is ${secret.length} bytes, not ${SECRET_BYTES}`);
    if (counter.length !== COUNTER_BYTES) throw new TeeError('state-incomplete', `counter ${this.counterPath} is ${counter.length} bytes, not ${COUNTER_BYTES}`);
    return { secret, counter: Number(counter.readBigUInt64BE(0)) };
  }

  /** The counter as it is on disk now (undefined before the first commit of a new component). */
  counter(): number | undefined {
    const bytes = readIfPresent(this.counterPath);
    return bytes?.length === COUNTER_BYTES ? Number(bytes.readBigUInt64BE(0)) : undefined;
  }

  /** A fresh device secret; the counter file is created by the first `writeCounter`. */
  createSecret(): Buffer {
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    const secret = randomBytes(SECRET_BYTES);
    createDurable(this.secretPath, secret);
    return secret;
  }

  /** Raises the counter: 8 bytes written in place (one sector, so never torn) and synced before returning. */
  writeCounter(value: number): void {
    const bytes = Buffer.alloc(COUNTER_BYTES);
    bytes.writeBigUInt64BE(BigInt(value));
    let fd: number;
    try {
      fd = openSync(this.counterPath, 'r+');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new TeeError('store-failure', `cannot open ${this.counterPath}: ${(err as Error).message}`);
      createDurable(this.counterPath, bytes);
      return;
    }
    try {
      writeSync(fd, bytes, 0, COUNTER_BYTES, 0);
      fdatasyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
