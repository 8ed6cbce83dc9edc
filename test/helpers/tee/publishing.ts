// Re-wrap test steps: publish as a client, deliver as the broker would, assert refusals.
import assert from 'node:assert/strict';
import { openEnvelope, sealEnvelope, type ClientKey, type OpenedMessage, type ReplayWindow } from '../../../src/client/crypto/index.js';
import { joinEnvelope, splitEnvelope, type EnvelopeParts } from '../../../src/envelope/envelope-layout.js';
import { TeeError, type TeeErrorCode } from '../../../src/envelope/errors.js';
import type { Enrolled, Fixture } from './fixture.js';

export const text = (s: string): Uint8Array => new TextEncoder().encode(s);

export async function publish(from: Enrolled, topic: string, payload: string | Uint8Array, seq = 1): Promise<EnvelopeParts> {
  return splitEnvelope(await sealEnvelope({ key: from.key, sender: from.identity, topic, seq, payload: typeof payload === 'string' ? text(payload) : payload }));
}

/** Re-wraps for one recipient and opens as that recipient. */
export async function deliver(f: Fixture, parts: EnvelopeParts, topic: string, sender: string, to: { identity: string; key: ClientKey }, replay?: ReplayWindow): Promise<OpenedMessage> {
  const [r] = await f.tee.rewrap(parts.header, topic, sender, [to.identity]);
  assert.ok(r?.header, `re-wrap for ${to.identity} refused: ${r?.refusal}`);
  return openEnvelope({ key: to.key, identity: to.identity, topic, envelope: joinEnvelope(r.header, parts.payload), replay });
}

/** Asserts `work` rejects with a TeeError of `code` and that the sealed store did not change. */
export async function refusedUnchanged(f: Fixture, code: TeeErrorCode, work: () => Promise<unknown>): Promise<void> {
  const before = f.storeState();
  await assert.rejects(work(), (err: unknown) => err instanceof TeeError && err.code === code, `expected ${code}`);
  assert.equal(f.storeState(), before, `store changed by a refused call (${code})`);
}
