/** Subscription trie: one node per topic level, `+` and `#` as ordinary children. */
import type { QoS } from 'mqtt-packet';

export interface SubscriptionOptions {
  qos: QoS;
  noLocal: boolean;
  retainAsPublished: boolean;
  retainHandling: 0 | 1 | 2;
  subscriptionId: number | undefined;
}

/** A `$share/{group}/{filter}` group: each message goes to one member, round robin. */
export class SharedGroup {
  readonly members = new Map<string, SubscriptionOptions>();
  private cursor = 0;

  constructor(readonly name: string) {}

  /** The next member, in round-robin order, for which `accept` holds (e.g. is connected). */
  pick(accept: (clientId: string) => boolean): [string, SubscriptionOptions] | undefined {
    const entries = [...this.members];
    for (let i = 0; i < entries.length; i++) {
      const idx = (this.cursor + i) % entries.length;
      const entry = entries[idx]!;
      if (accept(entry[0])) {
        this.cursor = idx + 1;
        return entry;
      }
    }
    return undefined;
  }
}

class TrieNode {
  readonly children = new Map<string, TrieNode>();
  readonly subscribers = new Map<string, SubscriptionOptions>();
  shared: Map<string, SharedGroup> | undefined;

  isEmpty(): boolean {
    return this.children.size === 0 && this.subscribers.size === 0 && (this.shared === undefined || this.shared.size === 0);
  }
}

export interface MatchVisitor {
  subscriber(clientId: string, options: SubscriptionOptions): void;
  /** A shared group matched; the visitor picks one member. */
  group(group: SharedGroup): void;
}

/** Topics whose levels are kept split; past this the cache starts over (a churn of unique topics). */
const TOPICS_KEPT = 10_000;

export class SubscriptionTree {
  private readonly root = new TrieNode();
  private readonly levelsOf = new Map<string, readonly string[]>();

  add(clientId: string, filter: string, options: SubscriptionOptions, group?: string): void {
    let node = this.root;
    for (const level of filter.split('/')) {
      let child = node.children.get(level);
      if (!child) {
        child = new TrieNode();
        node.children.set(level, child);
      }
      node = child;
    }
    let target: Map<string, SubscriptionOptions>;
    if (group === undefined) {
      target = node.subscribers;
    } else {
      node.shared ??= new Map();
      let g = node.shared.get(group);
      if (!g) {
        g = new SharedGroup(group);
        node.shared.set(group, g);
      }
      target = g.members;
    }
    target.set(clientId, options);
  }

  remove(clientId: string, filter: string, group?: string): boolean {
    const path: TrieNode[] = [this.root];
    const levels = filter.split('/');
    let node = this.root;
    for (const level of levels) {
      const child = node.children.get(level);
      if (!child) return false;
      path.push(child);
      node = child;
    }
    let removed: boolean;
    if (group === undefined) {
      removed = node.subscribers.delete(clientId);
    } else {
      const g = node.shared?.get(group);
      removed = g?.members.delete(clientId) ?? false;
      if (g && g.members.size === 0) node.shared!.delete(group);
    }
    if (!removed) return false;
    // prune empty branches so a churn of unique topics does not grow the trie forever
    for (let i = levels.length; i > 0 && path[i]!.isEmpty(); i--) {
      path[i - 1]!.children.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Visits every subscription whose filter matches `topic`. */
  match(topic: string, visitor: MatchVisitor): void {
    // a publisher usually sends on the same few topics: split each once, not once per message
    let levels = this.levelsOf.get(topic);
    if (levels === undefined) {
      levels = topic.split('/');
      if (this.levelsOf.size >= TOPICS_KEPT) this.levelsOf.clear();
      this.levelsOf.set(topic, levels);
    }
    this.walk(this.root, levels, 0, visitor, topic.charCodeAt(0) === 0x24 /* $ */);
  }

  private walk(node: TrieNode, levels: readonly string[], depth: number, visitor: MatchVisitor, dollar: boolean): void {
    const wildcardsAllowed = !(dollar && depth === 0);
    if (wildcardsAllowed) {
      const hash = node.children.get('#');
      if (hash) this.emit(hash, visitor);
    }
    if (depth === levels.length) {
      this.emit(node, visitor);
      return;
    }
    const exact = node.children.get(levels[depth]!);
    if (exact) this.walk(exact, levels, depth + 1, visitor, dollar);
    if (wildcardsAllowed) {
      const plus = node.children.get('+');
      if (plus) this.walk(plus, levels, depth + 1, visitor, dollar);
    }
  }

  private emit(node: TrieNode, visitor: MatchVisitor): void {
    for (const [clientId, options] of node.subscribers) visitor.subscriber(clientId, options);
    if (node.shared) {
      for (const group of node.shared.values()) visitor.group(group);
    }
  }
}
