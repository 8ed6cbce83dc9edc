/** `mqt-tz pub`: publish like mosquitto_pub; payloads of protected topics are sealed with --key-file. */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Command } from 'commander';
import { addClientOptions, failingClearly, parseQos, UsageError, type ClientFlags } from './client-options.js';
import { openClient } from './open-client.js';

interface PubFlags extends ClientFlags {
  topic?: string;
  message?: string;
  file?: string;
  stdinLine?: boolean;
  stdinFile?: boolean;
  nullMessage?: boolean;
  qos: string;
  retain?: boolean;
}

export function registerPubCommand(program: Command): void {
  addClientOptions(program.command('pub').description('publish a message (flags as mosquitto_pub)'))
    .option('-t, --topic <topic>', 'topic to publish to')
    .option('-m, --message <text>', 'message payload')
    .option('-f, --file <file>', 'send the contents of a file as the message')
    .option('-l, --stdin-line', 'read stdin and send one message per line')
    .option('-s, --stdin-file', 'read stdin and send it whole as one message')
    .option('-n, --null-message', 'send a zero-length message')
    .option('-q, --qos <qos>', 'quality of service 0, 1 or 2', '0')
    .option('-r, --retain', 'retain the message')
    .action(failingClearly(publish));
}

async function publish(flags: PubFlags): Promise<void> {
  if (!flags.topic) throw new UsageError('-t TOPIC is required');
  const sources = [flags.message !== undefined, flags.file !== undefined, flags.stdinLine, flags.stdinFile, flags.nullMessage].filter(Boolean).length;
  if (sources !== 1) throw new UsageError('give exactly one of -m, -f, -l, -s, -n');
  const qos = parseQos(flags.qos);
  const client = await openClient(flags);
  const opts = { qos, retain: flags.retain ?? false };
  try {
    if (flags.stdinLine) {
      for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
        await client.publish(flags.topic, Buffer.from(line), opts);
      }
    } else {
      let payload: Buffer;
      if (flags.message !== undefined) payload = Buffer.from(flags.message);
      else if (flags.file !== undefined) payload = readFileSync(flags.file);
      else if (flags.stdinFile) payload = readFileSync(0);
      else payload = Buffer.alloc(0);
      await client.publish(flags.topic, payload, opts);
    }
  } finally {
    await client.end();
  }
}
