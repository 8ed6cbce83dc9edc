/** Built-in authorization: anonymous on/off and an ordered allow/deny rule list (first match wins). */
import type { AclRule } from '../config.js';
import { filterCovers, topicMatches } from '../mqtt/topic.js';
import type { AuthenticateResult, AuthHooks, ClientInfo, Credentials } from './hooks.js';

export class AclAuth implements AuthHooks {
  constructor(
    private readonly allowAnonymous: boolean,
    private readonly rules: readonly AclRule[],
  ) {}

  authenticate(c: Credentials): AuthenticateResult {
    // Without a password store, a username is a claim, not a proof: only certificates authenticate.
    if (c.certificateIdentity !== undefined) return { ok: true, identity: c.certificateIdentity };
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
    if (this.rules.length === 0) return true;
    // A verified certificate identity is a proven user name; a plain username is a claim.
    const user = client.certificateIdentity ?? client.username;
    for (const rule of this.rules) {
      if (rule.action !== 'all' && rule.action !== action) continue;
      if (rule.user !== undefined && rule.user !== '*') {
        if (rule.user === '$anonymous' ? user !== undefined : rule.user !== user) continue;
      }
      if (applies(rule.topic)) return rule.permission === 'allow';
    }
    return true;
  }
}
