// Acceptance (issue 24): the hostile host with only what the broker's OS user can do — edit the
// data folder, replace the operator key file, restart the broker with other flags — against a real
// broker process started through the CLI. The two attacks that broke the base design ("forged
// identity", "policy removed") are replayed step by step: the broker now refuses to start naming
// what was tampered with, and a re-provisioned component has another fingerprint, which pinned
// clients refuse; no client accepts a forged sender.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { connectProtected, EnrolmentError, readKeyFile, type ProtectedClient } from '../../src/client/index.js';
import { createOperatorKey, loadOperatorKey, OPERATOR_KEY_FILE, type OperatorKey } from '../../src/protect/operator.js';
import { openSealedBlobStore } from '../../src/store/sealed-blobs.js';
import { withTimeout, WAIT_MS } from '../helpers/broker.js';
import { Events } from '../helpers/protected-broker.js';
import { failingCliBroker, MAIN, PROTECTED, startCliBroker, type CliBroker } from '../helpers/cli-broker.js';

const folders: string[] = [];
function folder(kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `mqt-tz-trust-${kind}-`));
  folders.push(dir);
  return dir;
}
after(() => {
  for (const dir of folders) rmSync(dir, { recursive: true, force: true });
});

/** `mqt-tz ARGS` as the operator or a client runs it. */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [MAIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return withTimeout(new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr }))), 3 * WAIT_MS, `mqt-tz ${args.join(' ')}`);
}

/** What the host does to the sealed store between two starts: delete every version of `objects`, or replace every row. */
function editStore(dataDir: string, edit: { delete?: string[]; replaceWith?: Array<{ name: string; blob: Uint8Array }> }): void {
  const store = openSealedBlobStore(dataDir);
  try {
    for (const e of store.snapshot()) {
      if (edit.replaceWith !== undefined || edit.delete?.some((o) => e.name.startsWith(`${o}#`))) store.delete(e.name);
    }
    for (const e of edit.replaceWith ?? []) store.put(e.name, e.blob);
  } finally {
    store.close();
  }
}

function storeRows(dataDir: string): Array<{ name: string; blob: Uint8Array }> {
  const store = openSealedBlobStore(dataDir);
  try {
    return store.snapshot();
  } finally {
    store.close();
  }
}

/** The broker refused to start, exit code 2, one line naming `what`. */
function assertRefused(r: { code: number | null; stderr: string }, what: RegExp): void {
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /mqt-tz: the broker did not start: /);
  assert.match(r.stderr, what);
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

describe('the hostile host of the issue, through the CLI broker', () => {
  it('forged identity: deleting alice\'s key and the operator record, a new operator key and --open-enrolment are refused; a re-provisioned component is refused by every pinned client', async () => {
    const dataDir = folder('data');
    const clientDir = folder('clients');
    let b: CliBroker | undefined = await startCliBroker({ dataDir, clientDir });
    const pinned = b.fingerprint;
    try {
      const alice = await b.enrolled('alice');
      const bob = await b.enrolled('bob');
      const bobEvents = new Events(bob);
      await bob.subscribeAsync('secure/#', { qos: 1 });
      await alice.publishAsync('secure/a', 'from the real alice', { qos: 1 });
      const control = await bobEvents.next('the control message');
      assert.deepEqual(control.kind === 'message' ? [control.text, control.sender] : control, ['from the real alice', 'alice']);
      await b.close();
      b = undefined;

      // 1. delete key/alice and the provisioning record (formerly tee/operator; tee/policy likewise, see below),
      // 2. let the broker create a new operator key, 3. restart with --open-enrolment.
      editStore(dataDir, { delete: ['key/alice', 'tee/provisioning'] });
      rmSync(join(dataDir, OPERATOR_KEY_FILE));
      assertRefused(await failingCliBroker(dataDir, ['--open-enrolment']), /sealed-missing: sealed object tee\/provisioning \(version 1\) is missing from the store/);
      assert.equal(existsSync(join(dataDir, OPERATOR_KEY_FILE)), false, 'no new operator key for a provisioned component');

      // The host goes further and deletes the trusted component's state directory: a new component.
      rmSync(join(dataDir, 'tee'), { recursive: true });
      b = await startCliBroker({ dataDir, clientDir, args: ['--open-enrolment'] });
      assert.notEqual(b.fingerprint, pinned, 'a re-provisioned component shows another fingerprint');
      const forger = join(clientDir, 'forged-alice.key');
      await assert.rejects(
        connectProtected(b.url, { identity: 'alice', keyFile: forger, teeFingerprint: pinned, enrolWithoutToken: true, allowOpenEnrolment: true, reconnectPeriod: 0 }),
        (e: unknown) => e instanceof EnrolmentError && e.code === 'fingerprint-mismatch',
      );
      await assert.rejects(
        connectProtected(b.url, { identity: 'alice', keyFile: forger, teeFingerprint: b.fingerprint, enrolWithoutToken: true, reconnectPeriod: 0 }),
        (e: unknown) => e instanceof EnrolmentError && e.code === 'open-enrolment-refused',
        'a client pinning the new fingerprint still refuses open enrolment unless it opts in',
      );
      // The host itself enrols a key as "alice" (it may opt in) and publishes with it.
      const forged = await connectProtected(b.url, { identity: 'alice', keyFile: forger, teeFingerprint: b.fingerprint, enrolWithoutToken: true, allowOpenEnrolment: true, protectedTopics: [PROTECTED], reconnectPeriod: 0 });
      // bob, with the key file he enrolled under the pinned component, listens.
      const bobAgain = await connectProtected(b.url, { identity: 'bob', keyFile: b.keyFile('bob'), teeFingerprint: pinned, protectedTopics: [PROTECTED], reconnectPeriod: 0 });
      const heard = new Events(bobAgain);
      const refusedSubscription = await bobAgain.subscribeAsync('secure/#', { qos: 1 }).then((g) => g[0]!.qos >= 0x80, () => true);
      assert.equal(refusedSubscription, true, 'bob is not enrolled with the new component: his subscription is refused');
      await bobAgain.subscribeAsync('secure/+', { qos: 1 }).catch(() => undefined); // whatever the broker lets through, nothing may open as alice's
      await forged.publishAsync('secure/a', 'forged as alice', { qos: 1 });
      await pause(500);
      assert.deepEqual(heard.all.filter((e) => e.kind === 'message'), [], 'bob accepted no message from the forged alice');
      await Promise.all([forged.endAsync(true), bobAgain.endAsync(true)]);
    } finally {
      await b?.close();
    }
  });

  it('policy removed: deleting tee/policy, or rolling the whole store back to before it, stops the broker at start instead of opening access', async () => {
    const dataDir = folder('data');
    const clientDir = folder('clients');
    let b: CliBroker | undefined = await startCliBroker({ dataDir, clientDir });
    try {
      const alice = await b.enrolled('alice');
      const bob = await b.enrolled('bob'); // his token grants secure/#; the policy below replaces that
      const bobEvents = new Events(bob);
      await bob.subscribeAsync('secure/#', { qos: 1 });
      const beforePolicy = storeRows(dataDir);
      const policyFile = join(clientDir, 'policy.json');
      writeFileSync(policyFile, JSON.stringify({ rules: [{ identity: 'alice', publish: ['secure/#'], read: ['secure/#'] }, { identity: 'bob', read: ['secure/public/#'] }] }));
      const signed = await cli(['tee', 'policy', 'sign', '--file', policyFile, '--data', dataDir]);
      assert.equal(signed.code, 0, signed.stderr);
      const loaded = await cli(['tee', 'policy', 'load', '--signed', signed.stdout.trim(), '--broker', b.url]);
      assert.match(loaded.stdout, /policy serial \d+ loaded/, loaded.stderr);
      // Control: the policy keeps bob out of secure/private.
      await alice.publishAsync('secure/private', 'not for bob', { qos: 1 });
      await alice.publishAsync('secure/public/news', 'for everyone', { qos: 1 });
      const first = await bobEvents.next('bob\'s first message');
      assert.deepEqual(first.kind === 'message' ? [first.topic, first.text] : first, ['secure/public/news', 'for everyone']);
      await b.close();
      b = undefined;
      const withPolicy = storeRows(dataDir);

      editStore(dataDir, { delete: ['tee/policy'] });
      assertRefused(await failingCliBroker(dataDir), /sealed-missing: sealed object tee\/policy \(version \d+\) is missing from the store/);
      editStore(dataDir, { replaceWith: beforePolicy });
      assertRefused(await failingCliBroker(dataDir), /state-rollback: sealed object tee\/manifest was written at counter \d+, older than the trusted counter/);

      editStore(dataDir, { replaceWith: withPolicy });
      b = await startCliBroker({ dataDir, clientDir });
      const info = JSON.parse((await cli(['tee', 'info', '--broker', b.url])).stdout) as { policySerial: number };
      assert.ok(info.policySerial > 0, 'control: the untouched store starts with the policy');
    } finally {
      await b?.close();
    }
  });

  it('a broker given the operator public key on its first start provisions with it and creates no key file; the operator\'s tokens from elsewhere enrol', async () => {
    const dataDir = folder('data');
    const operator = createOperatorKey(join(folder('operator'), 'op.key'));
    const publicHex = Buffer.from(operator.publicKey).toString('hex');
    const b = await startCliBroker({ dataDir, clientDir: folder('clients'), operator, args: ['--operator-public-key', publicHex] });
    try {
      assert.equal(existsSync(join(dataDir, OPERATOR_KEY_FILE)), false);
      const info = JSON.parse((await cli(['tee', 'info', '--broker', b.url])).stdout) as { operatorPublicKey: string; openEnrolment: boolean };
      assert.deepEqual([info.operatorPublicKey, info.openEnrolment], [publicHex, false]);
      await (await b.enrolled('alice')).endAsync();
    } finally {
      await b.close();
    }
  });

  it('restarts with another mode or operator key are refused; a replaced operator key file changes nothing but makes its tokens invalid; the broker runs without the key file and never endorses', async () => {
    const dataDir = folder('data');
    const clientDir = folder('clients');
    const operatorDir = folder('operator'); // the operator's machine
    let b: CliBroker | undefined = await startCliBroker({ dataDir, clientDir });
    try {
      await (await b.enrolled('alice')).endAsync();
      await b.close();
      b = undefined;
      assertRefused(await failingCliBroker(dataDir, ['--open-enrolment']), /provisioning-mismatch: the host asked for open enrolment, but this component was provisioned for token enrolment/);
      const stranger = createOperatorKey(join(operatorDir, 'stranger.key'));
      assertRefused(await failingCliBroker(dataDir, ['--operator-public-key', Buffer.from(stranger.publicKey).toString('hex')]), /operator-mismatch/);

      // The operator takes the development key off the host; the host puts its own key in its place.
      const realKeyFile = join(operatorDir, 'operator.key');
      renameSync(join(dataDir, OPERATOR_KEY_FILE), realKeyFile);
      const real: OperatorKey = loadOperatorKey(realKeyFile);
      createOperatorKey(join(dataDir, OPERATOR_KEY_FILE));
      b = await startCliBroker({ dataDir, clientDir, operator: real });
      const token = await cli(['token', '--id', 'mallory', '--read', PROTECTED, '--data', dataDir]); // signed with the host's key
      const refused = await cli(['enroll', '-h', '127.0.0.1', '-p', String(b.port), '-i', 'mallory', '--token', token.stdout.trim().split('\n').at(-1)!, '--tee-fingerprint', b.fingerprint, '--key-file', join(clientDir, 'mallory.key')]);
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /refused the enrolment: token-invalid/);
      await b.close();
      b = undefined;

      // No operator key file at all on the host: the broker starts, runs and creates none.
      rmSync(join(dataDir, OPERATOR_KEY_FILE));
      b = await startCliBroker({ dataDir, clientDir, operator: real });
      assert.equal(existsSync(join(dataDir, OPERATOR_KEY_FILE)), false);
      const publicHex = Buffer.from(real.publicKey).toString('hex');
      const pinByOperator = { operatorPublicKey: publicHex };
      const noEndorsement = await b.enrolled('erin', pinByOperator).then(() => 'enrolled', (e: unknown) => (e as EnrolmentError).code);
      assert.equal(noEndorsement, 'endorsement-invalid', 'the broker never endorsed its component itself');
      const endorsed = await cli(['tee', 'endorse', '--broker', b.url, '--operator-key', realKeyFile, '--tee-fingerprint', b.fingerprint]);
      assert.equal(endorsed.code, 0, endorsed.stderr);
      const carol = await b.enrolled('carol', pinByOperator);
      // Pinning the operator alone: the endorsed component's fingerprint is what the key file records.
      await (await b.enrolled('frank', { ...pinByOperator, teeFingerprint: undefined })).endAsync();
      assert.equal(readKeyFile(b.keyFile('frank'))!.teeFingerprint, b.fingerprint);
      const gusToken = (await cli(['token', '--id', 'gus', '--read', PROTECTED, '--operator-key', realKeyFile])).stdout.trim().split('\n').at(-1)!;
      const gus = await cli(['enroll', '-h', '127.0.0.1', '-p', String(b.port), '-i', 'gus', '--token', gusToken, '--operator-public-key', publicHex, '--key-file', b.keyFile('gus')]);
      assert.equal(gus.code, 0, gus.stderr);
      assert.match(gus.stdout, new RegExp(`with trusted component ${b.fingerprint}`));
      const alice: ProtectedClient = await connectProtected(b.url, { identity: 'alice', keyFile: b.keyFile('alice'), protectedTopics: [PROTECTED], reconnectPeriod: 0 });
      const carolEvents = new Events(carol);
      await carol.subscribeAsync('secure/#', { qos: 1 });
      await alice.publishAsync('secure/x', 'without the key file', { qos: 1 });
      const e = await carolEvents.next('carol\'s message');
      assert.deepEqual(e.kind === 'message' ? [e.text, e.sender] : e, ['without the key file', 'alice']);
      await alice.endAsync(true);
    } finally {
      await b?.close();
    }
  });
});
