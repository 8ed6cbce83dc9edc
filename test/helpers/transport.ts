import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { ensureDevCertificates } from '../../src/transport/dev-certs.js';
import type { CertificateAndKey } from '../../src/transport/x509.js';
import type { ConnectionHandler, TransportInfo } from '../../src/transport/types.js';

export interface Accepted {
  stream: Duplex;
  info: TransportInfo;
}

/** A connection handler that records what it is given and can be awaited. */
export class Acceptor {
  readonly accepted: Accepted[] = [];
  private waiters: Array<(a: Accepted) => void> = [];

  readonly handler: ConnectionHandler = (stream, info) => {
    const entry = { stream, info };
    this.accepted.push(entry);
    this.waiters.shift()?.(entry);
  };

  /** The n-th accepted connection (0-based), once it arrives. */
  nth(n: number): Promise<Accepted> {
    const ready = this.accepted[n];
    if (ready) return Promise.resolve(ready);
    return new Promise((resolve) => this.waiters.push(resolve));
  }
}

/** A handler that sends every byte back, prefixed with "echo:" per chunk. */
export const echoHandler: ConnectionHandler = (stream) => {
  stream.on('data', (chunk: Buffer) => stream.write(Buffer.concat([Buffer.from('echo:'), chunk])));
  stream.on('end', () => stream.end());
};

export async function makeTempDir(): Promise<{ path: string; remove: () => Promise<void> }> {
  const path = await mkdtemp(join(tmpdir(), 'mqt-tz-transport-'));
  return { path, remove: () => rm(path, { recursive: true, force: true }) };
}

export interface DevPki {
  dir: string;
  ca: CertificateAndKey;
  server: CertificateAndKey;
  remove: () => Promise<void>;
}

/** A development CA and server certificate, freshly made in a temp folder. */
export async function makeDevPki(): Promise<DevPki> {
  const temp = await makeTempDir();
  const paths = await ensureDevCertificates(temp.path);
  const read = (p: string): Promise<string> => readFile(p, 'utf8');
  return {
    dir: temp.path,
    ca: { cert: await read(paths.caCert), key: await read(paths.caKey) },
    server: { cert: await read(paths.serverCert), key: await read(paths.serverKey) },
    remove: temp.remove,
  };
}

/** Reads from `stream` until `expected` bytes have arrived; rejects if it ends first. */
export function readBytes(stream: NodeJS.ReadableStream, expected: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    const stop = (): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('close', onEnd);
      stream.pause(); // keep later bytes buffered for the next reader
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      length += chunk.length;
      if (length < expected) return;
      stop();
      resolve(Buffer.concat(chunks));
    };
    const onEnd = (): void => {
      stop();
      reject(new Error(`stream ended after ${length} of ${expected} bytes`));
    };
    stream.on('data', onData);
    stream.once('end', onEnd);
    stream.once('close', onEnd);
  });
}

/** Resolves on 'close' whatever errors came first (events.once would reject on 'error'). */
export function whenClosed(emitter: NodeJS.EventEmitter): Promise<void> {
  return new Promise((resolve) => emitter.once('close', () => resolve()));
}

/** Test options: a regression that leaves a socket open fails the test instead of hanging the run. */
export const guard = { timeout: 10_000 } as const;

/** The handler was told the transport and a loopback peer, and no certificate identity. */
export function assertAnonymousLoopback(info: TransportInfo, transport: TransportInfo['transport']): void {
  assert.equal(info.transport, transport);
  assert.equal(info.remoteAddress, '127.0.0.1');
  assert.ok(Number.isInteger(info.remotePort) && (info.remotePort ?? 0) > 0);
  assert.equal(info.certificateIdentity, undefined);
}
