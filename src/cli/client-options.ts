/** Connection flags shared by `pub`, `sub` and `enroll`, following mosquitto_pub/mosquitto_sub. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { ConnectionOptions } from 'node:tls';
import type { IClientOptions } from 'mqtt';

export interface ClientFlags {
  host: string;
  port?: string;
  id?: string;
  username?: string;
  pw?: string;
  protocolVersion: string;
  keepalive: string;
  cafile?: string;
  cert?: string;
  key?: string;
  insecure?: boolean;
  keyFile?: string;
  teeFingerprint?: string;
  operatorPublicKey?: string;
  allowOpenEnrolment?: boolean;
  allowBenchmarkBuild?: boolean;
}

export class UsageError extends Error {}

/** The pinning flags as SDK options (see ProtectedClientOptions). */
export function pinFlags(flags: ClientFlags): { operatorPublicKey?: string; allowOpenEnrolment?: boolean; allowBenchmarkBuild?: boolean } {
  if (flags.operatorPublicKey !== undefined && !/^[0-9a-fA-F]{64}$/.test(flags.operatorPublicKey)) throw new UsageError('--operator-public-key must be 64 hex digits');
  return { operatorPublicKey: flags.operatorPublicKey, allowOpenEnrolment: flags.allowOpenEnrolment === true, allowBenchmarkBuild: flags.allowBenchmarkBuild === true };
}

export function addClientOptions(cmd: Command): Command {
  return cmd
    .helpOption('--help', 'display help for command')
    .option('-h, --host <host>', 'broker host', 'localhost')
    .option('-p, --port <port>', 'broker port (default 1883, or 8883 with --cafile)')
    .option('-i, --id <id>', 'client id (and, by default, the identity enrolled with the trusted component)')
    .option('-u, --username <name>', 'username')
    .option('-P, --pw <password>', 'password')
    .option('-V, --protocol-version <version>', 'MQTT version: 31, 311 or 5', '5')
    .option('-k, --keepalive <seconds>', 'keep alive interval', '60')
    .option('--cafile <file>', 'CA certificate: connect with TLS and verify the broker against it')
    .option('--cert <file>', 'client certificate for mutual TLS')
    .option('--key <file>', 'private key of the client certificate')
    .option('--insecure', 'do not check the broker certificate host name')
    .option('--key-file <file>', 'enrolled key file: protect payloads of protected topics end to end')
    .option('--tee-fingerprint <fp>', 'fingerprint of the trusted component to pin (from `mqt-tz tee info`)')
    .option('--operator-public-key <hex>', 'also require the trusted component to be provisioned for, and endorsed by, this operator')
    .option('--allow-open-enrolment', 'accept a trusted component in open-enrolment mode (development only)')
    .option('--allow-benchmark-build', 'accept a trusted component provisioned as a benchmark build (it can decrypt payloads)');
}

function integerFlag(value: string, flag: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`${flag} must be an integer from ${min} to ${max}, got ${JSON.stringify(value)}`);
  return n;
}

export function parseQos(value: string): 0 | 1 | 2 {
  return integerFlag(value, '-q', 0, 2) as 0 | 1 | 2;
}

export function parseCount(value: string, flag: string): number {
  return integerFlag(value, flag, 0, Number.MAX_SAFE_INTEGER);
}

/** A positive number, fractions allowed (seconds). */
export function parsePositive(value: string, flag: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number, got ${JSON.stringify(value)}`);
  return n;
}

const VERSIONS: Record<string, 3 | 4 | 5> = { '31': 3, mqttv31: 3, '311': 4, mqttv311: 4, '5': 5, mqttv5: 5 };

/** MQTT.js URL and options for the flags. */
export function clientOptions(flags: ClientFlags): { url: string; options: IClientOptions } {
  const protocolVersion = VERSIONS[flags.protocolVersion];
  if (protocolVersion === undefined) throw new UsageError(`-V must be 31, 311 or 5, got ${JSON.stringify(flags.protocolVersion)}`);
  const tls = flags.cafile !== undefined || flags.cert !== undefined;
  const port = flags.port !== undefined ? integerFlag(flags.port, '-p', 1, 65535) : tls ? 8883 : 1883;
  const options: IClientOptions & ConnectionOptions = {
    protocolVersion,
    keepalive: integerFlag(flags.keepalive, '-k', 0, 65535),
    reconnectPeriod: 0,
    connectTimeout: 10_000,
  };
  if (flags.id !== undefined) options.clientId = flags.id;
  if (flags.username !== undefined) options.username = flags.username;
  if (flags.pw !== undefined) options.password = flags.pw;
  if (tls) {
    if (flags.cafile) options.ca = readFileSync(flags.cafile);
    if (flags.cert) options.cert = readFileSync(flags.cert);
    if (flags.key) options.key = readFileSync(flags.key);
    options.rejectUnauthorized = true;
    if (flags.insecure) options.checkServerIdentity = () => undefined;
  }
  const host = flags.host.includes(':') ? `[${flags.host}]` : flags.host;
  return { url: `${tls ? 'mqtts' : 'mqtt'}://${host}:${port}`, options };
}

/** Prints one clear line and exits non-zero: the CLI's only way of reporting failure. */
export function fail(message: string, code = 1): never {
  process.stderr.write(`mqt-tz: ${message}\n`);
  process.exit(code);
}

/** A command action whose every failure becomes one line on stderr and exit code 1. */
export function failingClearly<T>(action: (flags: T) => Promise<void>): (flags: T) => Promise<void> {
  return async (flags) => {
    try {
      await action(flags);
    } catch (err) {
      fail(err instanceof Error ? err.message : String(err));
    }
  };
}
