import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { splitEnvelope, joinEnvelope } from '../../src/envelope/envelope-layout.js';
import { toBase64Url } from '../../src/envelope/bytes.js';
import { makeFixture } from '../helpers/tee/fixture.js';
import { scanHeapSnapshot, scanOwnMemory } from '../helpers/memscan.js';

/** Drives a client process over JSON lines. */
function startClient(): { call(cmd: object): Promise<Record<string, unknown>>; stop(): void } {
  const child = spawn(process.execPath, [fileURLToPath(new URL('../helpers/tee/client-child.js', import.meta.url))], { stdio: ['pipe', 'pipe', 'inherit'] });
  const waiting: Array<(v: Record<string, unknown>) => void> = [];
  createInterface({ input: child.stdout }).on('line', (line) => waiting.shift()?.(JSON.parse(line) as Record<string, unknown>));
  return {
    call(cmd) {
      child.stdin.write(`${JSON.stringify(cmd)}\n`);
      return new Promise((resolve, reject) =>
        waiting.push((v) => (v.error !== undefined ? reject(new Error(String(v.error))) : resolve(v.ok as Record<string, unknown>))),
      );
    },
    stop: () => child.kill(),
  };
}

/** alice and bob enrol and exchange one protected message through the trusted component; returns the masked secrets. */
async function exchange(backend: 'inline' | 'process'): Promise<{ secrets: Uint8Array[]; close: () => Promise<void> }> {
  const f = await makeFixture(backend);
  const client = startClient();
  for (const identity of ['alice', 'bob']) {
    const { request } = await client.call({ op: 'enrol', identity, info: f.info, token: toBase64Url(f.token(identity)) });
    const response = await f.tee.enrol(Buffer.from(request as string, 'base64'));
    await client.call({ op: 'confirm', identity, response: Buffer.from(response).toString('base64') });
  }
  const maskedText = randomBytes(48).toString('hex'); // the plaintext is this XOR mask: never unmasked here
  const { envelope } = await client.call({ op: 'publish', identity: 'alice', topic: 'home/secret', seq: 1, maskedText });
  const parts = splitEnvelope(Buffer.from(envelope as string, 'base64'));
  const [forBob] = await f.tee.rewrap(parts.header, 'home/secret', 'alice', ['bob']);
  const opened = await client.call({ op: 'open', identity: 'bob', topic: 'home/secret', envelope: Buffer.from(joinEnvelope(forBob!.header!, parts.payload)).toString('base64') });
  assert.equal(opened.maskedText, maskedText, 'bob reads what alice sent');
  const { masked } = await client.call({ op: 'secrets' });
  client.stop();
  return { secrets: (masked as string[]).map((h) => Buffer.from(h, 'hex')), close: () => f.dispose() };
}

test('with the process backend no client key, derived subkey or plaintext is anywhere in the caller memory', async () => {
  const { secrets, close } = await exchange('process');
  try {
    assert.equal(secrets.length, 2 * (2 * 3 + 1));
    const mem = scanOwnMemory(secrets);
    assert.ok(mem.bytes > 10_000_000, `scanned ${mem.bytes} bytes in ${mem.regions} regions`);
    assert.deepEqual(mem.found, secrets.map(() => false), 'no secret in /proc/self/mem');
    const heap = scanHeapSnapshot(secrets, join(tmpdir(), `mqt-tz-${process.pid}.heapsnapshot`));
    assert.deepEqual(heap, secrets.map(() => false), 'no secret in the heap snapshot');
  } finally {
    await close();
  }
});

test('the scan does find keys when the trusted component runs inline in the same process', async () => {
  const { secrets, close } = await exchange('inline');
  try {
    const mem = scanOwnMemory(secrets);
    // Cached subkeys of alice and bob (wrap, confirm) live in the inline component's key cache.
    const wrapSubkeys = [1, 4].map((i) => mem.found[i]);
    assert.deepEqual(wrapSubkeys, [true, true], 'the memory scan sees the inline component\'s cached wrap subkeys');
  } finally {
    await close();
  }
});
