// Operator tooling for the trusted component: `tee info`, `token`, `policy sign|load`, `revoke`.
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { fromBase64Url, toBase64Url } from '../tee/bytes.js';
import { withTeeRequests } from '../client/tee-requests.js';
import { connectMqtt } from './open-client.js';
import { DEFAULT_DATA_DIR, openDataTee, issueToken, signPolicy, signRevocation, loadOrCreateOperatorKey, type DataTee } from '../protect/operator.js';

export interface CliOutput {
  out(line: string): void;
}

const stdoutOutput: CliOutput = { out: (line) => process.stdout.write(`${line}\n`) };

async function withTee<T>(dataDir: string, keyFile: string | undefined, work: (d: DataTee) => Promise<T>): Promise<T> {
  const d = await openDataTee(dataDir, { operatorKeyFile: keyFile });
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
async function viaBroker(url: string, kind: 'policy' | 'revoke', signed: Uint8Array): Promise<Uint8Array> {
  const client = await connectMqtt(url, { protocolVersion: 5, reconnectPeriod: 0, clientId: `mqt-tz-operator-${process.pid}` });
  try {
    return await withTeeRequests(client, 10_000, (request) => request(kind, signed));
  } finally {
    await client.endAsync();
  }
}

function readSignedArg(value: string): Uint8Array {
  const text = value.startsWith('@') ? readFileSync(value.slice(1), 'utf8') : value;
  const lines = text.trim().split('\n');
  return fromBase64Url(lines[lines.length - 1]!.trim());
}

export function registerTeeCommands(program: Command, io: CliOutput = stdoutOutput): void {
  const dataOpt = ['--data <dir>', 'data folder', DEFAULT_DATA_DIR] as const;
  const keyOpt = ['--operator-key <file>', 'operator Ed25519 private key (PKCS#8 PEM); default <data>/operator.key'] as const;
  const brokerOpt = ['--broker <url>', 'send the signed statement to the trusted component of this running broker (e.g. mqtt://localhost:1883) instead of opening the data folder'] as const;

  const tee = program.command('tee').description('trusted component tools');
  tee
    .command('info')
    .description('print the trusted component identity, measurement, endorsement and fingerprint as JSON')
    .option(...dataOpt)
    .option(...keyOpt)
    .action(async (o: { data: string; operatorKey?: string }) => {
      const info = await withTee(o.data, o.operatorKey, (d) => d.tee.info());
      io.out(JSON.stringify(info, null, 2));
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
      io.out(toBase64Url(signPolicy(loadOrCreateOperatorKey(o.data, o.operatorKey), json, serial)));
    });
  policy
    .command('load')
    .description('load a signed policy into the trusted component of the data folder (stored sealed)')
    .requiredOption('--signed <base64url|@file>', 'output of `tee policy sign`')
    .option(...dataOpt)
    .option(...keyOpt)
    .option(...brokerOpt)
    .action(async (o: { signed: string; data: string; operatorKey?: string; broker?: string }) => {
      const signed = readSignedArg(o.signed);
      const serial =
        o.broker !== undefined
          ? new TextDecoder().decode(await viaBroker(o.broker, 'policy', signed))
          : await withTee(o.data, o.operatorKey, async (d) => {
              await d.tee.loadPolicy(signed);
              return (await d.tee.info()).policySerial;
            });
      io.out(`policy serial ${serial} loaded`);
    });

  program
    .command('token')
    .description('issue an operator-signed enrolment token; printed alone on the last line')
    .requiredOption('--id <identity>', 'identity (MQTT client id) the token enrols')
    .option('--ttl <seconds>', 'validity in seconds', '86400')
    .option(...dataOpt)
    .option(...keyOpt)
    .action((o: { id: string; ttl: string; data: string; operatorKey?: string }) => {
      const operator = loadOrCreateOperatorKey(o.data, o.operatorKey);
      const token = issueToken(operator, o.id, Number(o.ttl));
      io.out(`enrolment token for ${JSON.stringify(o.id)}, valid ${Number(o.ttl)} s:`);
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
      let signed: Uint8Array;
      if (o.broker !== undefined) {
        signed = signRevocation(loadOrCreateOperatorKey(o.data, o.operatorKey), o.id);
        await viaBroker(o.broker, 'revoke', signed);
      } else {
        signed = await withTee(o.data, o.operatorKey, async (d) => {
          const revocation = signRevocation(d.operator, o.id);
          await d.tee.revoke(revocation);
          return revocation;
        });
      }
      io.out(`revoked ${JSON.stringify(o.id)}; signed revocation:`);
      io.out(toBase64Url(signed));
    });
}
