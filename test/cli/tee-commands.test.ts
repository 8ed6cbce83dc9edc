import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { registerTeeCommands } from '../../src/cli/tee-commands.js';
import { verifyEndorsement } from '../../src/client/crypto/index.js';
import { fromBase64Url } from '../../src/envelope/bytes.js';
import { parseTokenBody, splitSigned } from '../../src/envelope/messages.js';
import type { TeeInfo } from '../../src/tee-client/host.js';
import { openDataTee } from '../../src/protect/operator.js';

async function run(args: string[]): Promise<string[]> {
  const lines: string[] = [];
  const program = new Command().exitOverride();
  registerTeeCommands(program, { out: (l) => lines.push(l) });
  await program.parseAsync(['node', 'mqt-tz', ...args]);
  return lines;
}

test('operator-key, tee info, endorse, mode, token with grants, policy sign/load and revoke work on one data folder, the operator key kept apart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-cli-'));
  const keyFile = join(dir, 'elsewhere', 'op.key'); // the operator's machine, in the test a folder the broker does not use
  try {
    const [publicHex] = await run(['operator-key', '--out', keyFile]);
    assert.match(publicHex!, /^[0-9a-f]{64}$/);
    assert.equal(statSync(keyFile).mode & 0o777, 0o600);
    assert.deepEqual(await run(['operator-key', '--show', keyFile]), [publicHex]);
    await assert.rejects(run(['tee', 'info', '--data', dir]), /not-provisioned/);
    // The broker's first start provisions the component with the operator's public key alone.
    await (await openDataTee(dir, { backend: 'inline', operatorPublicKey: Buffer.from(publicHex!, 'hex') })).close();

    const info = JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo;
    assert.match(info.fingerprint, /^[0-9a-f]{64}$/);
    assert.deepEqual([info.operatorPublicKey, info.endorsement], [publicHex, null]);
    const endorsed = await run(['tee', 'endorse', '--data', dir, '--operator-key', keyFile, '--tee-fingerprint', info.fingerprint]);
    assert.equal(endorsed[0], 'endorsement stored; signed endorsement:');
    const again = JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo;
    assert.equal(again.fingerprint, info.fingerprint, 'identity persists');
    assert.ok(await verifyEndorsement(again, publicHex!));
    const stranger = join(dir, 'stranger.key');
    await run(['operator-key', '--out', stranger]);
    await assert.rejects(run(['tee', 'endorse', '--data', dir, '--operator-key', stranger]), /provisioned for operator/);

    const opened = await run(['tee', 'mode', 'open', '--data', dir, '--operator-key', keyFile]);
    assert.match(opened[0]!, /enrolment mode open/);
    assert.notEqual(opened[1], info.fingerprint);
    assert.equal((await run(['tee', 'mode', 'token', '--data', dir, '--operator-key', keyFile]))[1], info.fingerprint);
    await assert.rejects(run(['tee', 'mode', 'closed', '--data', dir, '--operator-key', keyFile]), /mode must be token or open/);

    const tokenLines = await run(['token', '--id', 'alice', '--ttl', '60', '--read', 'secure/#', '--publish', 'secure/alice/#', '--operator-key', keyFile]);
    const token = parseTokenBody(splitSigned(fromBase64Url(tokenLines.at(-1)!)).body);
    assert.equal(token.identity, 'alice');
    assert.deepEqual(token.grants, { publish: ['secure/alice/#'], read: ['secure/#'] });
    assert.ok(Math.abs(token.expiresAt - token.issuedAt - 60_000) < 1);
    assert.match((await run(['token', '--id', 'bob', '--operator-key', keyFile]))[0]!, /grants nothing/);
    await assert.rejects(run(['token', '--id', 'x', '--read', 'a/#/b', '--operator-key', keyFile]), /--read: "a\/#\/b" is not a valid MQTT topic filter/);
    await assert.rejects(run(['token', '--id', 'x', '--data', dir]), /cannot read the operator key/, 'no key in the data folder: nothing is created silently');

    writeFileSync(join(dir, 'policy.json'), JSON.stringify({ rules: [{ identity: '*', publish: ['#'], read: ['#'] }] }));
    const signed = (await run(['tee', 'policy', 'sign', '--file', join(dir, 'policy.json'), '--serial', '7', '--operator-key', keyFile])).at(-1)!;
    assert.deepEqual(await run(['tee', 'policy', 'load', '--signed', signed, '--data', dir]), ['policy serial 7 loaded']);
    assert.equal((JSON.parse((await run(['tee', 'info', '--data', dir])).join('\n')) as TeeInfo).policySerial, 7);

    const revoked = await run(['revoke', '--id', 'alice', '--data', dir, '--operator-key', keyFile]);
    assert.match(revoked[0]!, /revoked "alice"/);
    await assert.rejects(run(['token', '--id', 'x', '--ttl', '-1', '--operator-key', keyFile]), /--ttl must be a positive/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
