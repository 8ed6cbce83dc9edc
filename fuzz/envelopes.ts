// Valid envelopes for the broker target: the harness enrols a few identities with the broker's
// trusted component (as any client would, over MQTT) and seals envelopes on protected topics.
import { join } from 'node:path';
import { connectProtected, readKeyFile } from '../src/client/index.js';
import { sealEnvelope } from '../src/client/crypto/envelope.js';
import { importClientKey } from '../src/client/crypto/keys.js';
import { SequenceCounter } from '../src/client/crypto/replay.js';
import { issueToken, loadOperatorKey, OPERATOR_KEY_FILE } from '../src/protect/operator.js';
import { toBase64Url } from '../src/envelope/bytes.js';
import { ENROLLED, SECURE_TOPICS, type EnvelopePool } from './mqtt-gen.js';

const PAYLOAD_SIZES = [0, 16, 200, 1000, 4000, 16];

export async function enrolAndSeal(port: number, dataDir: string, fingerprint: string): Promise<EnvelopePool> {
  // the development operator key the broker created on its first start
  const operator = loadOperatorKey(join(dataDir, OPERATOR_KEY_FILE));
  const pool = new Map<string, Map<string, Buffer[]>>();
  for (const identity of ENROLLED) {
    const keyFile = join(dataDir, `${identity}.key`);
    const client = await connectProtected(`mqtt://127.0.0.1:${port}`, {
      identity, teeFingerprint: fingerprint, keyFile, token: toBase64Url(issueToken(operator, identity, 600, { publish: ['secure/#'], read: ['secure/#'] })), protectedTopics: ['secure/#'], reconnectPeriod: 0,
    });
    await client.endAsync(true);
    const stored = readKeyFile(keyFile);
    if (stored === undefined) throw new Error(`enrolment of ${identity} wrote no key file`);
    const key = await importClientKey(stored.key);
    const seq = new SequenceCounter();
    const byTopic = new Map<string, Buffer[]>();
    for (const topic of SECURE_TOPICS) {
      const envelopes: Buffer[] = [];
      for (const size of PAYLOAD_SIZES) envelopes.push(Buffer.from(await sealEnvelope({ key, sender: identity, topic, seq: seq.next(), payload: new Uint8Array(size).fill(0x61) })));
      byTopic.set(topic, envelopes);
    }
    pool.set(identity, byTopic);
  }
  return pool;
}
