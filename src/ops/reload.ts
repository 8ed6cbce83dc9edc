/**
 * Live reload (SIGHUP): the password file, the ACL and anonymous access, TLS certificates, the
 * limits and the log level take effect for every later connection and check, without dropping any connection.
 * Everything is read and checked first and applied only if all of it is usable: a bad file keeps
 * the old settings, and the result says why.
 */
import { isDeepStrictEqual } from 'node:util';
import type { BrokerConfig } from '../config.js';
import type { AclAuth } from '../auth/acl.js';
import { PasswordFile } from '../auth/password-file.js';
import type { PasswordLogins } from '../auth/password-logins.js';
import type { TlsListener, TlsSettings } from '../transport/tls.js';

const ABUSE_LIMITS = ['connectionRate', 'maxConnectionsPerAddress', 'publishRate', 'publishByteRate', 'flapConnects', 'flapWindow', 'flapBan'] as const;

export interface ReloadTarget {
  /** The running broker's config object: reloaded values are written into it. */
  readonly config: BrokerConfig;
  /** The built-in auth, or undefined when the embedder passed its own hooks. */
  readonly auth: AclAuth | undefined;
  readonly passwords: PasswordLogins;
  readonly tls: TlsListener | undefined;
  /** Reads the TLS files a config names (the development ones when it names none). */
  tlsFiles(next: BrokerConfig): Promise<Pick<TlsSettings, 'key' | 'cert' | 'ca'>>;
}

export type ReloadResult =
  | { ok: true; /** Changed keys that only a restart applies. */ restartNeeded: string[] }
  | { ok: false; error: string };

/** Keys read once at start (listeners, the trusted component, data folder...). */
const START_ONLY = ['dataDir', 'host', 'port', 'websocket', 'protect', 'identityFrom', 'tee', 'subscribeDeniedReason', 'http', 'sysInterval', 'user'] as const;

export async function reloadSettings(target: ReloadTarget, next: BrokerConfig): Promise<ReloadResult> {
  const current = target.config;
  let passwords: PasswordFile | undefined;
  let tlsFiles: Pick<TlsSettings, 'key' | 'cert' | 'ca'> | undefined;
  try {
    if (next.passwordFile !== null) passwords = PasswordFile.load(next.passwordFile);
    if (target.tls && next.tls) tlsFiles = await target.tlsFiles(next);
    // checked by building the context before anything is applied
    if (tlsFiles) target.tls!.replaceCertificates(tlsFiles);
  } catch (err) {
    return { ok: false, error: (err as Error).message };
  }
  target.passwords.replace(passwords);
  target.auth?.update(next.allowAnonymous, next.acl);
  current.passwordFile = next.passwordFile;
  current.allowAnonymous = next.allowAnonymous;
  current.acl = next.acl;
  current.logLevel = next.logLevel;
  const restartNeeded: string[] = START_ONLY.filter((k) => !isDeepStrictEqual(current[k], next[k]));
  // each listener's own bound is set at start; the broker's check follows the new value
  if (current.limits.maxConnections !== next.limits.maxConnections) restartNeeded.push('limits.maxConnections (per listener)');
  // the abuse limits build their trackers at start (src/limits/abuse.ts): a change waits for a restart
  for (const key of ABUSE_LIMITS) {
    if (current.limits[key] !== next.limits[key]) restartNeeded.push(`limits.${key}`);
  }
  // in place: sessions and handlers hold this object
  Object.assign(current.limits, next.limits, Object.fromEntries(ABUSE_LIMITS.map((k) => [k, current.limits[k]])));
  const { cert: _c, key: _k, ca: _a, ...tlsRest } = current.tls ?? { cert: undefined, key: undefined, ca: undefined };
  const { cert: _nc, key: _nk, ca: _na, ...nextTlsRest } = next.tls ?? { cert: undefined, key: undefined, ca: undefined };
  if ((current.tls === null) !== (next.tls === null) || !isDeepStrictEqual(tlsRest, nextTlsRest)) restartNeeded.push('tls');
  else if (current.tls && next.tls) Object.assign(current.tls, { cert: next.tls.cert, key: next.tls.key, ca: next.tls.ca });
  return { ok: true, restartNeeded };
}
