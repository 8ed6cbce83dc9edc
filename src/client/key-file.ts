// Node-only key files: written 0600 and atomically (temp file, fsync, then link or rename), so a
// crash never leaves half a key; refused when others can read them. Keys are never logged.
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { decodeStoredKey, encodeStoredKey, KeyFileError, type KeyStore, type StoredKey } from './key-store.js';

export { KeyFileError } from './key-store.js';

/** undefined when the file does not exist. */
export function readKeyFile(path: string): StoredKey | undefined {
  let text: string;
  try {
    if (process.platform !== 'win32') {
      const mode = statSync(path).mode & 0o777;
      if ((mode & 0o077) !== 0) throw new KeyFileError(`${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`);
    }
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(`cannot read key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return decodeStoredKey(text, path);
}

/** Writes the key with mode 0600; without `overwrite`, fails if the file already exists. */
export function writeKeyFile(path: string, key: StoredKey, opts: { overwrite?: boolean } = {}): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, encodeStoredKey(key));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (opts.overwrite) renameSync(tmp, path);
    else linkSync(tmp, path); // atomic, and EEXIST instead of replacing an enrolled key
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileError(`key file ${path} already exists; not replacing an enrolled key`);
    throw err;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed into place
    }
  }
}

/** Throws unless a key file can be created at `path` (it must not exist, its folder must be writable). */
export function checkKeyFileWritable(path: string): void {
  if (existsSync(path)) throw new KeyFileError(`key file ${path} already exists; not replacing an enrolled key`);
  try {
    accessSync(dirname(path), constants.W_OK);
  } catch (err) {
    throw new KeyFileError(`cannot write key file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** A KeyStore over one key file: nothing is written until the trusted component confirmed the key. */
export function fileKeyStore(path: string): KeyStore {
  return {
    load: () => Promise.resolve(readKeyFile(path)),
    save: (key, opts) => Promise.resolve(writeKeyFile(path, key, { overwrite: opts?.replace })),
    prepare: () => Promise.resolve(checkKeyFileWritable(path)),
  };
}
