/** `mqt-tz tee serve`: the trusted component as a standalone service on a Unix socket (docs/deployment.md). */
import type { Command } from 'commander';
import { createLogger } from '../log.js';
import { lookupGroup } from '../ops/os-users.js';
import { serveTrustedComponent } from '../tee-client/socket-service.js';

interface ServeFlags {
  data: string;
  socket: string;
  socketGroup?: string;
  logLevel: string;
}

export function registerTeeServe(tee: Command): void {
  tee
    .command('serve')
    .description('run the trusted component as a service on a Unix socket (one broker at a time), for running it as its own OS user; the broker uses it with --tee-socket')
    .requiredOption('--data <dir>', 'the trusted component\'s state directory (device secret, counter): created mode 0700, owned by this user')
    .requiredOption('--socket <path>', 'Unix socket to listen on (mode 0600: only this user may connect)')
    .option('--socket-group <group>', 'let this group connect too (socket mode 0660): the broker\'s user should be its only member')
    .option('--log-level <level>', 'fatal, error, warn, info, debug, trace or silent', 'info')
    .action(async (o: ServeFlags) => {
      const log = createLogger(o.logLevel, 'mqt-tz-tee');
      const service = await serveTrustedComponent({
        stateDir: o.data,
        socketPath: o.socket,
        socketGid: o.socketGroup === undefined ? undefined : lookupGroup(o.socketGroup, '--socket-group'),
        log,
      });
      const stop = (signal: string): void => {
        log.info({ signal }, 'shutting down');
        void service.close().then(() => process.exit(0));
      };
      process.once('SIGINT', () => stop('SIGINT'));
      process.once('SIGTERM', () => stop('SIGTERM'));
    });
}
