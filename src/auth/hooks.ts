/**
 * The authorization hook interface. A deployment plugs in its own (password file, LDAP, JWT...);
 * the built-in one applies the configured ACL. Hooks may answer synchronously (no cost on the hot
 * path) or with a promise.
 */
import type { TransportInfo } from '../transport/types.js';

export interface ClientInfo {
  readonly clientId: string;
  readonly username: string | undefined;
  /** Identity proven by the transport (mutual-TLS certificate), if any. */
  readonly certificateIdentity: string | undefined;
  readonly transport: TransportInfo;
  /** The identity the client is known by once connected (see `identityFrom`); '' before. */
  readonly identity?: string;
}

export interface Credentials extends ClientInfo {
  readonly password: Buffer | undefined;
}

export type AuthenticateResult =
  | { ok: true; /** Authenticated identity; defaults to the certificate identity or username. */ identity?: string }
  | { ok: false; reason: 'bad-credentials' | 'not-authorized' };

export type MaybePromise<T> = T | Promise<T>;

export interface AuthHooks {
  authenticate(credentials: Credentials): MaybePromise<AuthenticateResult>;
  authorizePublish(client: ClientInfo, topic: string): MaybePromise<boolean>;
  authorizeSubscribe(client: ClientInfo, filter: string): MaybePromise<boolean>;
}
