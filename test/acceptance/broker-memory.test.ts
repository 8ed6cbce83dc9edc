// Acceptance (issue 4): after a protected exchange, the memory of the broker process (the CLI
// broker, which owns the listening sockets; its trusted component is a child process) holds no
// plaintext and no client key or derived subkey. Scanned through /proc/PID/mem, every readable
// region: JS heap, Buffers, native allocations and stacks alike.
import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { splitEnvelope, type ProtectedClient } from '../../src/client/index.js';
import { waitUntil } from '../helpers/broker.js';
import { Events } from '../helpers/protected-broker.js';
import { MASK, scanProcessMemory } from '../helpers/memscan.js';
import { processState, startCliBroker, type CliBroker } from '../helpers/cli-broker.js';

const masked = (b: Uint8Array): Buffer => Buffer.from(b.map((x) => x ^ MASK));
const subkey = (raw: Uint8Array, info: string): Buffer => Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), info, 32));

let b: CliBroker;
let alice: ProtectedClient;
let bob: ProtectedClient;
before(async () => {
  b = await startCliBroker();
  [alice, bob] = await Promise.all([b.enrolled('alice'), b.enrolled('bob')]);
});
after(() => b?.close());

/** Scans the stopped broker process for each value; the process runs on afterwards. */
async function scanBroker(values: readonly Uint8Array[]): Promise<ReturnType<typeof scanProcessMemory>> {
  process.kill(b.pid, 'SIGSTOP');
  try {
    await waitUntil(() => processState(b.pid) === 'T', 'the broker process to stop');
    return scanProcessMemory(b.pid, values.map(masked));
  } finally {
    process.kill(b.pid, 'SIGCONT');
  }
}

test('the broker process holds neither the plaintext nor any client key or subkey after protected traffic, while the same scan finds the ciphertext and topic it routed', async () => {
  const tee = b.children().filter((c) => /\btee\/main\.js\b/.test(c.command));
  assert.equal(tee.length, 1, `the trusted component runs as the broker's child process: ${JSON.stringify(b.children())}`);

  const topic = `secure/ward-${randomBytes(6).toString('hex')}`;
  const plaintext = `patient 17 heart rate 61 bpm ${randomBytes(12).toString('hex')}`;
  const events = new Events(bob);
  const envelopes: Buffer[] = [];
  bob.mqtt.on('message', (t, payload) => {
    if (t === topic) envelopes.push(Buffer.from(payload));
  });
  await bob.subscribeAsync(topic, { qos: 1 });
  const sends = [{ qos: 0, retain: false }, { qos: 1, retain: false }, { qos: 0, retain: false }, { qos: 1, retain: true }] as const;
  for (const o of sends) await alice.publishAsync(topic, plaintext, o);
  for (let i = 0; i < sends.length; i++) {
    const e = await events.next(`message ${i} for bob`);
    assert.deepEqual(e.kind === 'message' ? [e.topic, e.text, e.sender] : e, [topic, plaintext, 'alice']);
  }
  assert.equal(envelopes.length, sends.length);
  assert.equal(envelopes.some((e) => e.includes(plaintext)), false, 'bob was sent ciphertext');

  // What the broker must never hold: K_c, K_wrap, K_conf of alice and bob, raw and as hex, and the plaintext.
  const keys = ['alice', 'bob'].flatMap((id) => {
    const raw = b.rawKey(id);
    return [raw, subkey(raw, 'mqt-tz/1 wrap key'), subkey(raw, 'mqt-tz/1 confirm key')];
  });
  const text = Buffer.from(plaintext);
  const secrets = [...keys, ...keys.map((k) => Buffer.from(k.toString('hex'))), text, Buffer.from(text.toString('hex'))];
  // What it must hold: the retained message's payload ciphertext, and the topic name.
  const controls = [Buffer.from(splitEnvelope(envelopes.at(-1)!).payload), Buffer.from(topic)];

  const report = await scanBroker([...secrets, ...controls]);
  assert.ok(report.bytes > 10_000_000, `scanned ${report.bytes} bytes in ${report.regions} regions of process ${b.pid}`);
  assert.deepEqual(report.found.slice(secrets.length), [true, true], 'control: the scan finds the ciphertext and topic the broker routed');
  assert.deepEqual(report.found.slice(0, secrets.length), secrets.map(() => false), 'no key, subkey or plaintext in the broker process');
});
