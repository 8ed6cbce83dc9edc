/** Topic names and filters (MQTT 3.1.1 §4.7, MQTT 5 §4.7/§4.8). */

export interface SharedFilter {
  group: string;
  filter: string;
}

/** A topic name a client may publish to: non-empty, no wildcards, no NUL. */
export function isValidTopicName(topic: string, maxLevels = Infinity): boolean {
  if (topic.length === 0 || topic.length > 65535) return false;
  let levels = 1;
  for (let i = 0; i < topic.length; i++) {
    const c = topic.charCodeAt(i);
    if (c === 0x2b /* + */ || c === 0x23 /* # */ || c === 0) return false;
    if (c === 0x2f /* / */ && ++levels > maxLevels) return false;
  }
  return true;
}

/** A filter a client may subscribe to: `+` fills a whole level, `#` is last and fills a whole level. */
export function isValidTopicFilter(filter: string, maxLevels = Infinity): boolean {
  if (filter.length === 0 || filter.length > 65535) return false;
  const levels = filter.split('/');
  if (levels.length > maxLevels) return false;
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('\u0000')) return false;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return false;
    if (level.includes('+') && level !== '+') return false;
  }
  return true;
}

/** Splits `$share/{group}/{filter}`; returns undefined for a plain filter, null for a malformed share. */
export function parseSharedFilter(filter: string): SharedFilter | undefined | null {
  if (!filter.startsWith('$share/')) return undefined;
  const rest = filter.slice(7);
  const slash = rest.indexOf('/');
  if (slash <= 0) return null;
  const group = rest.slice(0, slash);
  if (group.includes('+') || group.includes('#')) return null;
  const inner = rest.slice(slash + 1);
  if (!isValidTopicFilter(inner)) return null;
  return { group, filter: inner };
}

/**
 * Whether `filter` matches `topic`. Wildcards at the first level do not match topics starting
 * with `$` (MQTT-4.7.2-1).
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (filter.charCodeAt(0) === 0x2b || filter.charCodeAt(0) === 0x23)) {
    return false;
  }
  let f = 0;
  let t = 0;
  const fl = filter.length;
  const tl = topic.length;
  while (f < fl) {
    const fc = filter.charCodeAt(f);
    if (fc === 0x23 /* # */) return true;
    if (fc === 0x2b /* + */) {
      while (t < tl && topic.charCodeAt(t) !== 0x2f) t++;
      f++;
    } else {
      // compare one literal level
      while (f < fl && filter.charCodeAt(f) !== 0x2f) {
        if (t >= tl || topic.charCodeAt(t) !== filter.charCodeAt(f)) return false;
        f++;
        t++;
      }
      if (t < tl && topic.charCodeAt(t) !== 0x2f) return false;
    }
    // both at a separator or at the end
    if (f >= fl) return t >= tl;
    // filter has '/'
    if (t >= tl) {
      // "a/#" matches "a": the '#' also stands for the parent level
      return filter.length - f === 2 && filter.charCodeAt(f + 1) === 0x23;
    }
    f++;
    t++;
  }
  return t >= tl;
}

/**
 * Whether every topic that `inner` can match is also matched by `outer` (used by ACLs to decide
 * whether a rule covers a requested subscription).
 */
export function filterCovers(outer: string, inner: string): boolean {
  const o = outer.split('/');
  const i = inner.split('/');
  for (let k = 0; k < o.length; k++) {
    const ol = o[k]!;
    if (ol === '#') return true;
    if (k >= i.length) return false;
    const il = i[k]!;
    if (il === '#') return false;
    if (ol === '+') continue;
    if (il === '+' || il !== ol) return false;
  }
  return o.length === i.length;
}

/** A `$SYS` topic: the broker's own, which clients may read but not publish. */
export function isSysTopic(topic: string): boolean {
  return topic.startsWith('$SYS') && (topic.length === 4 || topic[4] === '/');
}
