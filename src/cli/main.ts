#!/usr/bin/env node
/** The `mqt-tz` command. */
import { Command } from 'commander';
import { registerBrokerCommand } from './broker-command.js';
import { registerPubCommand } from './pub-command.js';
import { registerSubCommand } from './sub-command.js';
import { registerTeeCommands } from './tee-commands.js';

const program = new Command();
program.name('mqt-tz').description('MQTT broker whose host never sees the payloads it routes');
registerBrokerCommand(program);
registerPubCommand(program);
registerSubCommand(program);
registerTeeCommands(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`mqt-tz: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
