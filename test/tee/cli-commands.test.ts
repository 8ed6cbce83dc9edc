import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { registerTeeCommands } from '../../src/cli/tee-commands.js';
import { verifyEndorsement } from '../../src/client/crypto/index.js';
import { fromBase64Url } from '../../src/tee/bytes.js';
import { parseTokenBody, splitSigned } from '../../src/tee/messages.js';
import type { TeeInfo } from '../../src/tee/host.js';

async function run(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = new Command().exitOverride();
  registerTeeCommands(program, { out: (l) => lines.push(l) });
  await program.parseAsync(['node', 'mqt-tz', ...args]);
  return lines;
}

test('tee info, token, policy sign/load and revoke work on one data folder with a persistent operator key', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-cli-'));
  try {
    const info = JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo;
    assert.equal(statSync(join(dir, 'operator.key')).mode & 0o777, 0o600);
    assert.match(info.fingerprint, /^[0-9a-f]{64}$/);
    assert.ok(await verifyEndorsement(info, info.operatorPublicKey));
    const again = JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo;
    assert.equal(again.fingerprint, info.fingerprint, 'identity persists');

    const tokenLines = await run(['token', '--id', 'alice', '--ttl', '60', '--data', dir]);
    const token = parseTokenBody(splitSigned(fromBase64Url(tokenLines.at(-1)!)).body);
    assert.equal(token.identity, 'alice');
    assert.ok(Math.abs(token.expiresAt - token.issuedAt - 60_000) < 1);

    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['#'] }] }));
    const signed = (await run(['tee', 'policy', 'sign', '--file', join(dir, 'policy.json'), '--serial', '7', '--data', dir])).at(-1)!;
    assert.deepEqual(await run(['tee', 'policy', 'load', '--signed', signed, '--data', dir]), ['policy serial 7 loaded']);
    assert.equal((JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo).policySerial, 7);

    const revoked = await run(['revoke', '--id', 'alice', '--data', dir]);
    assert.match(revoked[0]!, /revoked "alice"/);
    await assert.rejects(run(['token', '--id', 'x', '--ttl', '-1', '--data', dir]), /--ttl must be a positive/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
