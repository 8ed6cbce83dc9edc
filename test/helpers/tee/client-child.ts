// A client in its own process, for the memory-isolation test: it holds the keys and plaintexts,
// and hands the test only opaque protocol bytes and XOR-masked copies of its secrets.
import { createInterface } from 'node:readline';
import { hkdfSync, randomBytes } from 'node:crypto';
import { buildEnrolmentRequest, openEnvelope, pinTee, sealEnvelope, verifyKeyResponse, type ClientKey, type PendingKeyRequest, type TeeInfoJson } from '../../../src/client/crypto/index.js';
import { MASK } from '../memscan.js';

const mask = (b: Uint8Array): string => Buffer.from(b.map((x) => x ^ MASK)).toString('hex');
const unmask = (hex: string): Buffer => Buffer.from(Buffer.from(hex, 'hex').map((x) => x ^ MASK));
const clients = new Map<string, { raw: Buffer; key?: ClientKey; pending?: PendingKeyRequest }>();
const plaintexts: Uint8Array[] = [];

interface Command { op: string; identity: string; info?: TeeInfoJson; token?: string; response?: string; topic?: string; seq?: number; maskedText?: string; envelope?: string }

async function handle(c: Command): Promise<unknown> {
  switch (c.op) {
    case 'enrol': {
      const raw = randomBytes(32);
      const tee = await pinTee(c.info!, (c.info as TeeInfoJson & { fingerprint: string }).fingerprint);
      const { request, pending } = await buildEnrolmentRequest({ tee, identity: c.identity, key: raw, token: c.token });
      clients.set(c.identity, { raw, pending });
      return { request: Buffer.from(request).toString('base64') };
    }
    case 'confirm': {
      const client = clients.get(c.identity)!;
      client.key = await verifyKeyResponse(client.pending!, Buffer.from(c.response!, 'base64'));
      return { ok: true };
    }
    case 'publish': {
      const text = unmask(c.maskedText!);
      plaintexts.push(text);
      const envelope = await sealEnvelope({ key: clients.get(c.identity)!.key!, sender: c.identity, topic: c.topic!, seq: c.seq!, payload: text });
      return { envelope: Buffer.from(envelope).toString('base64') };
    }
    case 'open': {
      const m = await openEnvelope({ key: clients.get(c.identity)!.key!, identity: c.identity, topic: c.topic!, envelope: Buffer.from(c.envelope!, 'base64') });
      return { sender: m.sender, maskedText: mask(m.payload) };
    }
    case 'secrets': {
      // Raw keys, the subkeys the trusted component derives from them, and the plaintexts; raw and as hex text.
      const secrets: Uint8Array[] = [];
      for (const { raw } of clients.values()) {
        secrets.push(raw, Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), 'mqt-tz/1 wrap key', 32)), Buffer.from(hkdfSync('sha256', raw, new Uint8Array(0), 'mqt-tz/1 confirm key', 32)));
      }
      secrets.push(...plaintexts);
      const all = [...secrets, ...secrets.map((s) => Buffer.from(Buffer.from(s).toString('hex')))];
      return { masked: all.map(mask) };
    }
    default:
      throw new Error(`unknown op ${c.op}`);
  }
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  handle(JSON.parse(line) as Command).then(
    (r) => process.stdout.write(`${JSON.stringify({ ok: r })}\n`),
    (e: Error) => process.stdout.write(`${JSON.stringify({ error: `${e.name}: ${e.message}` })}\n`),
  );
});
