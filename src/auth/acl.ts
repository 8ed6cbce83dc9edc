/**
 * Built-in authentication and authorization: certificates, an optional password file, anonymous
 * on/off, and an ordered allow/deny rule list (first match wins). All of it can be replaced live
 * (`update`, on SIGHUP) without touching connected clients.
 */
import type { AclRule } from '../config.js';
import { filterCovers, topicMatches } from '../mqtt/topic.js';
import type { AuthenticateResult, AuthHooks, ClientInfo, Credentials, MaybePromise } from './hooks.js';
import type { PasswordChecker } from './login-limiter.js';

export class AclAuth implements AuthHooks {
  constructor(
    private allowAnonymous: boolean,
    private rules: readonly AclRule[],
    private readonly passwords?: PasswordChecker,
  ) {}

  /** Settings for every later CONNECT and PUBLISH/SUBSCRIBE check. */
  update(allowAnonymous: boolean, rules: readonly AclRule[]): void {
    this.allowAnonymous = allowAnonymous;
    this.rules = rules;
  }

  authenticate(c: Credentials): MaybePromise<AuthenticateResult> {
    if (c.certificateIdentity !== undefined) return { ok: true, identity: c.certificateIdentity };
    // With a password file a username must prove itself (as in mosquitto); without one it is a
    // claim only, and only certificates authenticate.
    const passwords = this.passwords;
    if (passwords?.configured && c.username !== undefined) {
      return passwords.check(c.transport.remoteAddress, c.username, c.password).then((verdict) =>
        verdict === 'ok' ? { ok: true, identity: c.username } : { ok: false, reason: verdict === 'rate-limited' ? 'not-authorized' : 'bad-credentials' },
      );
    }
    if (this.allowAnonymous) return { ok: true };
    return { ok: false, reason: 'not-authorized' };
  }

  authorizePublish(client: ClientInfo, topic: string): boolean {
    return this.decide(client, 'publish', (rule) => topicMatches(rule, topic));
  }

  authorizeSubscribe(client: ClientInfo, filter: string): boolean {
    return this.decide(client, 'subscribe', (rule) => filterCovers(rule, filter));
  }

  private decide(client: ClientInfo, action: 'publish' | 'subscribe', applies: (ruleTopic: string) => boolean): boolean {
    const rules = this.rules;
    if (rules.length === 0) return true;
    // A verified certificate identity is a proven user name; so is a username once a password file
    // is configured (a client is connected only after its password checked out); otherwise a claim.
    const user = client.certificateIdentity ?? client.username;
    for (const rule of rules) {
      if (rule.action !== 'all' && rule.action !== action) continue;
      if (rule.user !== undefined && rule.user !== '*') {
        if (rule.user === '$anonymous' ? user !== undefined : rule.user !== user) continue;
      }
      if (applies(rule.topic)) return rule.permission === 'allow';
    }
    return true;
  }
}
