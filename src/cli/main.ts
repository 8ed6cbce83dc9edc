#!/usr/bin/env node
/** The `mqt-tz` command. Each command's module is loaded only when it runs, to keep start-up short. */
import { Command } from 'commander';

const program = new Command();
program.name('mqt-tz').description('MQTT broker whose host never sees the payloads it routes');

type Registrar = (program: Command) => void;
const commands: Record<string, () => Promise<Registrar>> = {
  broker: async () => (await import('./broker-command.js')).registerBrokerCommand,
  pub: async () => (await import('./pub-command.js')).registerPubCommand,
  sub: async () => (await import('./sub-command.js')).registerSubCommand,
  enroll: async () => (await import('./enroll-command.js')).registerEnrollCommand,
  tee: async () => (await import('./tee-commands.js')).registerTeeCommands,
  token: async () => (await import('./tee-commands.js')).registerTeeCommands,
  revoke: async () => (await import('./tee-commands.js')).registerTeeCommands,
  passwd: async () => (await import('./passwd-command.js')).registerPasswdCommand,
  'operator-key': async () => (await import('./tee-commands.js')).registerTeeCommands,
};

async function main(): Promise<void> {
  const name = process.argv[2];
  const wanted = name !== undefined && name in commands ? [commands[name]!] : Object.values(commands);
  const registered = new Set<Registrar>();
  for (const load of wanted) {
    const register = await load();
    if (!registered.has(register)) register(program);
    registered.add(register);
  }
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  process.stderr.write(`mqt-tz: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
