// Who runs what when the broker starts as root: the trusted child as `tee.user`, owning its state
// directory; the broker itself as `user` once its listeners are bound. Started as another user,
// both stay as started (a warning says the settings were not applied).
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { ConfigError, type BrokerConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { FrameChannel } from '../tee-client/host.js';
import { trustedChildAs, trustedSocket } from '../tee-client/channels.js';
import { chownTree, dropRootTo, lookupUser, runningAsRoot, type OsUser } from './os-users.js';

export interface Privileges {
  /** How to reach the trusted component; undefined: the default child, as this process's user. */
  readonly teeChannel: (() => FrameChannel) | undefined;
  /** After the listeners are bound: hands the data folder (but the trusted state) to `user` and becomes it. */
  dropAfterBinding(): void;
}

function resolveUser(name: string, key: string): OsUser {
  try {
    return lookupUser(name);
  } catch (err) {
    throw new ConfigError(key, (err as Error).message);
  }
}

/**
 * Gives the trusted state directory to its user, mode 0700, before the trusted child reads it. The
 * data folder around it must let that user pass through (search permission, not listing).
 */
function prepareTrustedState(dataDir: string, stateDir: string, teeUser: OsUser): void {
  const dataMode = statSync(dataDir).mode & 0o7777;
  if ((dataMode & 0o001) === 0) chmodSync(dataDir, dataMode | 0o001);
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  chownTree(stateDir, teeUser);
  chmodSync(stateDir, 0o700);
}

export function planPrivileges(config: BrokerConfig, dataDir: string, teeStateDir: string, log: Logger): Privileges {
  const root = runningAsRoot();
  const tee = config.tee;
  if (!root) {
    const ignored = [config.user !== null ? 'user' : undefined, tee?.user != null ? 'tee.user' : undefined].filter((k) => k !== undefined);
    if (ignored.length > 0) log.warn({ keys: ignored }, 'not started as root: running as the current user, the user settings do not apply');
    return { teeChannel: tee?.socket != null ? trustedSocket(tee.socket) : undefined, dropAfterBinding: () => undefined };
  }
  const brokerUser = config.user === null ? undefined : resolveUser(config.user, 'user');
  const teeUser = tee?.user == null ? undefined : resolveUser(tee.user, 'tee.user');
  if (teeUser !== undefined && brokerUser !== undefined && teeUser.uid === brokerUser.uid) throw new ConfigError('tee.user', `${tee!.user} has the same uid as the broker's user ${config.user}`);
  if (teeUser !== undefined && teeUser.uid === 0) throw new ConfigError('tee.user', 'must be an unprivileged user, not uid 0');
  if (brokerUser === undefined) log.warn('running as root: set "user" (--user) so the broker drops to an unprivileged user after binding its listeners');
  else if (tee !== null && tee.socket === null && teeUser === undefined) log.warn('"user" is set but "tee.user" is not: the trusted child stays root; give it an unprivileged user of its own');
  let teeChannel: (() => FrameChannel) | undefined;
  if (tee?.socket != null) teeChannel = trustedSocket(tee.socket);
  else if (teeUser !== undefined) {
    prepareTrustedState(dataDir, teeStateDir, teeUser);
    teeChannel = trustedChildAs(teeUser);
  }
  return {
    teeChannel,
    dropAfterBinding() {
      if (brokerUser === undefined) return;
      chownTree(dataDir, brokerUser, new Set([teeStateDir]));
      dropRootTo(brokerUser);
      log.info({ user: brokerUser.name, uid: brokerUser.uid, teeUser: teeUser?.name }, 'dropped root privileges');
    },
  };
}
