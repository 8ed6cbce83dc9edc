/** `mqt-tz enroll`: enrol a fresh key with the broker's trusted component, over MQTT, into a 0600 key file. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { checkKeyFileWritable, connectProtected, readKeyFile } from '../client/index.js';
import { addClientOptions, clientOptions, failingClearly, pinFlags, UsageError, type ClientFlags } from './client-options.js';

interface EnrollFlags extends ClientFlags {
  token?: string;
}

export function registerEnrollCommand(program: Command): void {
  addClientOptions(program.command('enroll').description('enrol a fresh key with the trusted component of the broker and write it to --key-file (mode 0600)'))
    .option('--token <token>', 'enrolment token from `mqt-tz token`, or @FILE to read its last line; omit only with an open-enrolment broker')
    .action(failingClearly(enroll));
}

/** A token argument: the token itself, or @FILE whose last non-empty line is the token. */
function readToken(value: string): string {
  if (!value.startsWith('@')) return value.trim();
  const lines = readFileSync(value.slice(1), 'utf8').trim().split('\n');
  return lines[lines.length - 1]!.trim();
}

async function enroll(flags: EnrollFlags): Promise<void> {
  if (!flags.id) throw new UsageError('-i ID is required: the identity to enrol');
  if (!flags.keyFile) throw new UsageError('--key-file FILE is required: where the enrolled key is written');
  const fingerprint = flags.teeFingerprint?.toLowerCase();
  if (fingerprint === undefined ? flags.operatorPublicKey === undefined : !/^[0-9a-f]{64}$/.test(fingerprint)) {
    throw new UsageError('--tee-fingerprint must be the 64 hex digits `mqt-tz tee info` prints as "fingerprint" (or pin the operator with --operator-public-key)');
  }
  checkKeyFileWritable(flags.keyFile); // before anything is sent: an enrolment cannot be undone
  const token = flags.token === undefined ? undefined : readToken(flags.token);
  const { url, options } = clientOptions(flags);
  const client = await connectProtected(url, { ...options, ...pinFlags(flags), identity: flags.id, teeFingerprint: fingerprint, keyFile: flags.keyFile, token, enrolWithoutToken: token === undefined });
  await client.endAsync();
  const pinned = readKeyFile(flags.keyFile)?.teeFingerprint ?? fingerprint;
  process.stdout.write(`enrolled ${JSON.stringify(flags.id)} with trusted component ${pinned}; key written to ${flags.keyFile}\n`);
}
