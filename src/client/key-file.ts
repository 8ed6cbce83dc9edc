// Node-only key files: written 0600 and atomically (temp file, fsync, then link or rename), so a
// crash never leaves half a key; refused when others can read them. Keys are never logged.
// Next to KEY_FILE: KEY_FILE.pending (a key change in flight, with its new key) and
// KEY_FILE.replay (the subscriber's replay window), written the same way.
import { randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { decodePendingKeyChange, decodeStoredKey, encodePendingKeyChange, encodeStoredKey, KeyFileError, type KeyStore, type StoredKey } from './key-store.js';
import { decodeReplayState } from './replay-journal.js';

export { KeyFileError } from './key-store.js';

/** The file's text; undefined when it does not exist. Files holding keys must not be readable by others. */
function readPrivateFile(path: string, what: string, holdsKey: boolean): string | undefined {
  try {
    if (holdsKey && process.platform !== 'win32') {
      const mode = statSync(path).mode & 0o777;
      if ((mode & 0o077) !== 0) throw new KeyFileError(`${path} is readable by others (mode ${mode.toString(8)}); run chmod 600 ${path}`);
    }
    return readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    if (err instanceof KeyFileError) throw err;
    throw new KeyFileError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

const tempPathFor = (path: string): string => join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);

/**
 * Replaces `path` atomically as writeAtomically does, without blocking the event loop on the fsync
 * (the replay state is written every second while messages arrive); failures are KeyFileErrors.
 */
async function writePrivateFile(path: string, what: string, text: string): Promise<void> {
  const tmp = tempPathFor(path);
  try {
    const file = await open(tmp, 'wx', 0o600);
    try {
      await file.writeFile(text);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw new KeyFileError(`cannot write ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

/** Temp file (0600), fsync, then rename over `path` (or, without `overwrite`, link: EEXIST rather than replace). */
function writeAtomically(path: string, text: string, overwrite: boolean): void {
  const tmp = tempPathFor(path);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (overwrite) renameSync(tmp, path);
    else linkSync(tmp, path);
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed into place
    }
  }
}

/** undefined when the file does not exist. */
export function readKeyFile(path: string): StoredKey | undefined {
  const text = readPrivateFile(path, 'key file', true);
  return text === undefined ? undefined : decodeStoredKey(text, path);
}

/** Writes the key with mode 0600; without `overwrite`, fails if the file already exists. */
export function writeKeyFile(path: string, key: StoredKey, opts: { overwrite?: boolean } = {}): void {
  try {
    writeAtomically(path, encodeStoredKey(key), opts.overwrite === true);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new KeyFileError(`key file ${path} already exists; not replacing an enrolled key`);
    throw err;
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

function removeFile(path: string): void {
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** A KeyStore over one key file: the key is written only once the trusted component confirmed it. */
export function fileKeyStore(path: string): KeyStore {
  const pendingPath = `${path}.pending`;
  const replayPath = `${path}.replay`;
  // async: a failure is a rejected promise, never a throw from the call itself
  return {
    load: async () => readKeyFile(path),
    save: async (key, opts) => writeKeyFile(path, key, { overwrite: opts?.replace }),
    prepare: async () => checkKeyFileWritable(path),
    loadPending: async () => {
      const text = readPrivateFile(pendingPath, 'pending key change', true);
      return text === undefined ? undefined : decodePendingKeyChange(text, pendingPath);
    },
    savePending: async (change) => (change === undefined ? removeFile(pendingPath) : await writePrivateFile(pendingPath, 'pending key change', encodePendingKeyChange(change))),
    loadReplayState: async () => {
      const text = readPrivateFile(replayPath, 'replay state', false);
      if (text !== undefined) decodeReplayState(text, replayPath); // a bad file is named here, by its path
      return text;
    },
    saveReplayState: (text) => writePrivateFile(replayPath, 'replay state', text),
  };
}
