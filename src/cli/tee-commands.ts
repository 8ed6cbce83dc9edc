// Operator tooling for the trusted component: `tee info`, `tee endorse`, `tee mode`, `tee policy sign|load`,
// `token`, `revoke`, `operator-key`. The operator key is read here, by the operator's CLI, which
// may run on another machine: what reaches the broker are signed statements, relayed with
// `--broker URL` (or loaded into the data folder's component with `--data` when no broker runs).
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { fromBase64Url, toBase64Url, toHex } from '../envelope/bytes.js';
import { pinTee, type TeeInfoJson } from '../client/crypto/enrol.js';
import { withTeeRequests } from '../client/tee-requests.js';
import type { TeeRequestKind } from '../mqtt/tee-topics.js';
import { isValidTopicFilter } from '../mqtt/topic.js';
import type { TeeInfo } from '../tee-client/host.js';
import { connectMqtt } from './open-client.js';
import { registerTeeServe } from './tee-serve-command.js';
import {
  DEFAULT_DATA_DIR, createOperatorKey, issueToken, loadOperatorKey, openDataTee, operatorKeyPath, parseOperatorPublicKey, signEndorsement, signModeChange, signOperatorChange, signPolicy, signRevocation, type DataTee,
} from '../protect/operator.js';

export interface CliOutput {
  out(line: string): void;
}

const stdoutOutput: CliOutput = { out: (line) => process.stdout.write(`${line}\n`) };

/** The trusted component of a data folder whose broker is not running; it must be provisioned already. */
async function withTee<T>(dataDir: string, work: (d: DataTee) => Promise<T>): Promise<T> {
  const d = await openDataTee(dataDir);
  try {
    return await work(d);
  } finally {
    await d.close();
  }
}

/**
 * A running broker's trusted component holds the keys in its cache: operator statements for it go
 * through the broker's `$tee/` relay (safe: they are signed), not through a second instance.
 */
async function viaBroker(url: string, kind: TeeRequestKind, body: Uint8Array): Promise<Uint8Array> {
  const client = await connectMqtt(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `mqt-tz-operator-${process.pid}` });
  try {
    return await withTeeRequests(client, 10_000, (request) => request(kind, body));
  } finally {
    await client.endAsync();
  }
}

async function infoViaBroker(url: string): Promise<TeeInfo> {
  return JSON.parse(new TextDecoder().decode(await viaBroker(url, 'info', new Uint8Array(0)))) as TeeInfo;
}

/**
 * Signs a change of what the component was provisioned with (enrolment mode, operator) for the
 * component as it is now, applies it through the running broker (`kind`'s relay topic) or the data
 * folder's component, and returns the new fingerprint.
 */
async function changeProvisioning(
  o: { data: string; broker?: string },
  kind: 'mode' | 'operator',
  sign: (info: TeeInfo) => Uint8Array,
  apply: (tee: DataTee['tee'], signed: Uint8Array) => Promise<void>,
): Promise<string> {
  if (o.broker !== undefined) return new TextDecoder().decode(await viaBroker(o.broker, kind, sign(await infoViaBroker(o.broker))));
  return withTee(o.data, async (d) => {
    await apply(d.tee, sign(await d.tee.info()));
    return (await d.tee.info()).fingerprint;
  });
}

function readSignedArg(value: string): Uint8Array {
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  const lines = text.trim().split('\n');
  return fromBase64Url(lines[lines.length - 1]!.trim());
}

const collect = (v: string, acc: string[]): string[] => [...acc, v];

/** Topic filters of a token grant, checked here so a typo fails before anything is signed. */
function grantFilters(list: string[], flag: string): string[] {
  for (const f of list) if (!isValidTopicFilter(f)) throw new RangeError(`${flag}: ${JSON.stringify(f)} is not a valid MQTT topic filter`);
  return list;
}

export function registerTeeCommands(program: Command, io: CliOutput = stdoutOutput): void {
  const dataOpt = ['--data <dir>', 'data folder', DEFAULT_DATA_DIR] as const;
  const keyOpt = ['--operator-key <file>', 'operator Ed25519 private key (PKCS#8 PEM); default <data>/operator.key (the quick start\'s development key)'] as const;
  const brokerOpt = ['--broker <url>', 'send the signed statement to the trusted component of this running broker (e.g. mqtt://localhost:1883) instead of opening the data folder'] as const;
  const operatorOf = (o: { data: string; operatorKey?: string }) => loadOperatorKey(operatorKeyPath(o.data, o.operatorKey));

  const tee = program.command('tee').description('trusted component tools');
  registerTeeServe(tee);
  tee
    .command('info')
    .description('print the trusted component identity, measurement, endorsement and fingerprint as JSON')
    .option(...dataOpt)
    .option('--broker <url>', 'ask the trusted component of this running broker instead of opening the data folder')
    .action(async (o: { data: string; broker?: string }) => {
      const info = o.broker !== undefined ? await infoViaBroker(o.broker) : await withTee(o.data, (d) => d.tee.info());
      io.out(JSON.stringify(info, null, 2));
    });

  tee
    .command('endorse')
    .description('sign the operator\'s endorsement of the trusted component\'s keys, code, enrolment mode and build, and store it there (clients pinning the operator key check it)')
    .option(...dataOpt)
    .option(...keyOpt)
    .option(...brokerOpt)
    .option('--tee-fingerprint <fp>', 'endorse only the component with this fingerprint')
    .action(async (o: { data: string; operatorKey?: string; broker?: string; teeFingerprint?: string }) => {
      const operator = operatorOf(o);
      const endorse = async (info: TeeInfo, store: (signed: Uint8Array) => Promise<unknown>): Promise<Uint8Array> => {
        if (info.operatorPublicKey !== toHex(operator.publicKey)) throw new Error(`the trusted component was provisioned for operator ${info.operatorPublicKey}, not for this operator key`);
        if (o.teeFingerprint !== undefined) await pinTee(info as TeeInfoJson, { fingerprint: o.teeFingerprint, allowOpenEnrolment: true, allowBenchmarkBuild: true });
        const signed = signEndorsement(operator, info);
        await store(signed);
        return signed;
      };
      const signed =
        o.broker !== undefined
          ? await endorse(await infoViaBroker(o.broker), (s) => viaBroker(o.broker!, 'endorse', s))
          : await withTee(o.data, async (d) => endorse(await d.tee.info(), (s) => d.tee.setEndorsement(s)));
      io.out('endorsement stored; signed endorsement:');
      io.out(toBase64Url(signed));
    });

  tee
    .command('mode <mode>')
    .description('switch the trusted component\'s enrolment mode (token or open) by an operator-signed statement; its fingerprint changes, so clients pin the new one')
    .option(...dataOpt)
    .option(...keyOpt)
    .option(...brokerOpt)
    .action(async (mode: string, o: { data: string; operatorKey?: string; broker?: string }) => {
      if (mode !== 'token' && mode !== 'open') throw new RangeError(`mode must be token or open, got ${JSON.stringify(mode)}`);
      const operator = operatorOf(o);
      const fingerprint = await changeProvisioning(o, 'mode', (info) => signModeChange(operator, info, mode), (t, signed) => t.changeMode(signed));
      io.out(`enrolment mode ${mode}; new fingerprint (start the broker ${mode === 'open' ? 'with' : 'without'} --open-enrolment from now on):`);
      io.out(fingerprint);
    });

  tee
    .command('operator <new-public-key>')
    .description('hand the trusted component to another operator key (hex, from `mqt-tz operator-key --show`) by a statement the current operator signs; its fingerprint changes and the old endorsement is dropped')
    .option(...dataOpt)
    .option(...keyOpt)
    .option(...brokerOpt)
    .action(async (newKeyHex: string, o: { data: string; operatorKey?: string; broker?: string }) => {
      const next = parseOperatorPublicKey(newKeyHex);
      const operator = operatorOf(o);
      const fingerprint = await changeProvisioning(o, 'operator', (info) => signOperatorChange(operator, info, next), (t, signed) => t.changeOperator(signed));
      io.out('operator changed; sign with the new key from now on, endorse again (mqt-tz tee endorse), and start the broker with --operator-public-key set to it (or none); new fingerprint:');
      io.out(fingerprint);
    });

  const policy = tee.command('policy').description('operator-signed re-wrap policy');
  policy
    .command('sign')
    .description('sign a policy JSON file; prints the signed policy (base64url) alone on the last line')
    .requiredOption('--file <policy.json>', 'policy: {"rules":[{"identity":"alice","publish":["a/#"],"read":["a/#"]}]}')
    .option('--serial <n>', 'policy serial, must grow with every policy (default: now in ms)')
    .option(...dataOpt)
    .option(...keyOpt)
    .action((o: { file: string; serial?: string; data: string; operatorKey?: string }) => {
      const serial = o.serial === undefined ? Date.now() : Number(o.serial);
      if (!Number.isSafeInteger(serial) || serial <= 0) throw new RangeError('--serial must be a positive integer');
      const json = readFileSync(o.file, 'utf8');
      JSON.parse(json); // fail here, clearly, rather than inside the trusted component
      io.out(toBase64Url(signPolicy(operatorOf(o), json, serial)));
    });
  policy
    .command('load')
    .description('load a signed policy into the trusted component (stored sealed); it replaces the token grants of every identity')
    .requiredOption('--signed <base64url|@file>', 'output of `tee policy sign`')
    .option(...dataOpt)
    .option(...brokerOpt)
    .action(async (o: { signed: string; data: string; broker?: string }) => {
      const signed = readSignedArg(o.signed);
      const serial =
        o.broker !== undefined
          ? new TextDecoder().decode(await viaBroker(o.broker, 'policy', signed))
          : await withTee(o.data, async (d) => {
              await d.tee.loadPolicy(signed);
              return (await d.tee.info()).policySerial;
            });
      io.out(`policy serial ${serial} loaded`);
    });

  program
    .command('token')
    .description('issue an operator-signed enrolment token carrying the identity\'s grants; printed alone on the last line')
    .requiredOption('--id <identity>', 'identity (MQTT client id) the token enrols')
    .option('--publish <filter>', 'protected topics the identity may publish to (repeatable)', collect, [] as string[])
    .option('--read <filter>', 'protected topics the identity may read (repeatable)', collect, [] as string[])
    .option('--ttl <seconds>', 'validity in seconds', '86400')
    .option(...dataOpt)
    .option(...keyOpt)
    .action((o: { id: string; ttl: string; publish: string[]; read: string[]; data: string; operatorKey?: string }) => {
      const grants = { publish: grantFilters(o.publish, '--publish'), read: grantFilters(o.read, '--read') };
      const token = issueToken(operatorOf(o), o.id, Number(o.ttl), grants);
      const granted = grants.publish.length + grants.read.length === 0 ? 'grants nothing (only a policy can allow it anything)' : `publish ${JSON.stringify(grants.publish)}, read ${JSON.stringify(grants.read)}`;
      io.out(`enrolment token for ${JSON.stringify(o.id)}, valid ${Number(o.ttl)} s, ${granted}:`);
      io.out(toBase64Url(token));
    });

  program
    .command('revoke')
    .description('revoke an identity: its key leaves the trusted component cache and store at once')
    .requiredOption('--id <identity>', 'identity to revoke')
    .option(...dataOpt)
    .option(...keyOpt)
    .option(...brokerOpt)
    .action(async (o: { id: string; data: string; operatorKey?: string; broker?: string }) => {
      const signed = signRevocation(operatorOf(o), o.id);
      if (o.broker !== undefined) await viaBroker(o.broker, 'revoke', signed);
      else await withTee(o.data, (d) => d.tee.revoke(signed));
      io.out(`revoked ${JSON.stringify(o.id)}; signed revocation:`);
      io.out(toBase64Url(signed));
    });

  program
    .command('operator-key')
    .description('create an operator key pair (for a machine other than the broker host) or show the public key of one; prints the public key (hex) for the broker\'s --operator-public-key')
    .option('--out <file>', 'create a new key pair in this file (mode 0600)')
    .option('--show <file>', 'print the public key of this existing key file')
    .action((o: { out?: string; show?: string }) => {
      if ((o.out === undefined) === (o.show === undefined)) throw new RangeError('give exactly one of --out FILE and --show FILE');
      const key = o.out !== undefined ? createOperatorKey(o.out) : loadOperatorKey(o.show!);
      io.out(toHex(key.publicKey));
    });
}
