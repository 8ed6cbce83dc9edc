// Operator policy: identity -> topic filters it may publish to / read from. MQTT wildcard
// matching is written here (not imported) so the trusted component depends on nothing outside.

/** Throws when `filter` is not a valid MQTT topic filter (MQTT 5 §4.7.1). */
export function checkFilter(filter: string): void {
  if (filter.length === 0) throw new RangeError('empty topic filter');
  const levels = filter.split('/');
  levels.forEach((level, i) => {
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) throw new RangeError(`'#' must be a whole last level in filter ${JSON.stringify(filter)}`);
    if (level.includes('+') && level !== '+') throw new RangeError(`'+' must be a whole level in filter ${JSON.stringify(filter)}`);
  });
}

/** MQTT matching; wildcards at the first level do not match topics starting with '$' (§4.7.2). */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true; // also matches the parent level: "a/#" matches "a"
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

/** True when one of `filters` (an identity's token grants) matches `topic`; no filters, nothing allowed. */
export function grantAllows(filters: readonly string[], topic: string): boolean {
  for (const f of filters) if (topicMatches(f, topic)) return true;
  return false;
}

interface Rule {
  identity: string; // exact identity or "*"
  publish: string[];
  read: string[];
}

export class Policy {
  private constructor(private readonly rules: Rule[], readonly serial: number) {}

  /** Parses `{"rules":[{"identity":"alice","publish":["a/#"],"read":["b/+"]}]}`; throws RangeError with the reason. */
  static parse(json: string, serial: number): Policy {
    let doc: unknown;
    try {
      doc = JSON.parse(json);
    } catch (err) {
      throw new RangeError(`policy is not JSON: ${(err as Error).message}`);
    }
    const rulesIn = (doc as { rules?: unknown } | null)?.rules;
    if (!Array.isArray(rulesIn)) throw new RangeError('policy needs a "rules" array');
    const rules = rulesIn.map((r: unknown, i): Rule => {
      const rule = r as Partial<Record<keyof Rule, unknown>>;
      if (typeof rule?.identity !== 'string' || rule.identity.length === 0) throw new RangeError(`rule ${i}: "identity" must be a non-empty string`);
      const lists = { publish: rule.publish ?? [], read: rule.read ?? [] };
      for (const [k, v] of Object.entries(lists)) {
        if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new RangeError(`rule ${i}: "${k}" must be an array of topic filters`);
        v.forEach(checkFilter);
      }
      return { identity: rule.identity, publish: lists.publish as string[], read: lists.read as string[] };
    });
    return new Policy(rules, serial);
  }

  private allows(identity: string, topic: string, pick: (r: Rule) => string[]): boolean {
    for (const r of this.rules) if ((r.identity === identity || r.identity === '*') && grantAllows(pick(r), topic)) return true;
    return false;
  }

  mayPublish(identity: string, topic: string): boolean {
    return this.allows(identity, topic, (r) => r.publish);
  }

  mayRead(identity: string, topic: string): boolean {
    return this.allows(identity, topic, (r) => r.read);
  }
}
