/** Topic names and filters as the broker checks and matches them, and their agreement with the trusted component's own matcher. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { filterCovers, isValidTopicFilter, isValidTopicName, parseSharedFilter, topicMatches } from '../../src/mqtt/topic.js';
import * as trusted from '../../src/tee/policy.js';
import { seededRandom } from '../helpers/random.js';

test('topic names: non-empty, at most 65535 characters, no wildcard or NUL; maxLevels counts levels', () => {
  for (const name of ['a', '/', 'a/b', 'a//b', '/a/', '$SYS/x', 'sport/tennis/player1', ' ', 'ü/€', 'x'.repeat(65535)]) assert.equal(isValidTopicName(name), true, JSON.stringify(name.slice(0, 20)));
  for (const name of ['', 'a/+', '+', 'a/#', '#', 'a+b', 'a#', 'a\u0000b', 'x'.repeat(65536)]) assert.equal(isValidTopicName(name), false, JSON.stringify(name.slice(0, 20)));
  assert.equal(isValidTopicName('a/b/c', 3), true);
  assert.equal(isValidTopicName('a/b/c/', 3), false, 'a trailing slash starts a fourth (empty) level');
  assert.equal(isValidTopicName('a/b/c/d', 3), false);
});

test('topic filters: "+" and "#" fill whole levels, "#" only last; no NUL; maxLevels counts levels', () => {
  for (const f of ['#', '+', 'a/#', '+/+', '/+', '+/', 'a/+/b/#', '$SYS/#', '$share/g/a', 'a//b', 'x'.repeat(65535)]) assert.equal(isValidTopicFilter(f), true, JSON.stringify(f.slice(0, 20)));
  for (const f of ['', 'a/#/b', '#/', 'a#', '#a', 'a/b#', 'a+', '+a', 'a/++', 'a/+b/c', 'a\u0000', 'x'.repeat(65536)]) assert.equal(isValidTopicFilter(f), false, JSON.stringify(f.slice(0, 20)));
  assert.equal(isValidTopicFilter('+/+/#', 3), true);
  assert.equal(isValidTopicFilter('+/+/+/#', 3), false);
});

test('shared subscriptions: $share/{group}/{filter} splits; a plain filter is undefined; a malformed share is null', () => {
  assert.deepEqual(parseSharedFilter('$share/g1/a/+/c'), { group: 'g1', filter: 'a/+/c' });
  assert.deepEqual(parseSharedFilter('$share/g/#'), { group: 'g', filter: '#' });
  assert.deepEqual(parseSharedFilter('$share/g//'), { group: 'g', filter: '/' });
  for (const plain of ['a/b', '$SYS/#', '$shared/g/a', 'share/g/a']) assert.equal(parseSharedFilter(plain), undefined, plain);
  for (const bad of ['$share/', '$share/g', '$share//a', '$share/g+/a', '$share/#/a', '$share/g/', '$share/g/a/#/b']) assert.equal(parseSharedFilter(bad), null, bad);
});

test('matching follows the examples of MQTT 3.1.1 §4.7 and MQTT 5 §4.7', () => {
  const cases: Array<[string, string, boolean]> = [
    // §4.7.1.2 multi-level wildcard
    ['sport/tennis/player1/#', 'sport/tennis/player1', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/ranking', true],
    ['sport/tennis/player1/#', 'sport/tennis/player1/score/wimbledon', true],
    ['sport/#', 'sport', true],
    ['#', 'sport/tennis', true],
    // §4.7.1.3 single-level wildcard
    ['sport/tennis/+', 'sport/tennis/player1', true],
    ['sport/tennis/+', 'sport/tennis/player2', true],
    ['sport/tennis/+', 'sport/tennis/player1/ranking', false],
    ['sport/+', 'sport', false],
    ['sport/+', 'sport/', true],
    ['+/+', '/finance', true],
    ['/+', '/finance', true],
    ['+', '/finance', false],
    // §4.7.2 topics beginning with $
    ['#', '$SYS/broker/clients', false],
    ['+/monitor/Clients', '$SYS/monitor/Clients', false],
    ['$SYS/#', '$SYS/monitor/Clients', true],
    ['$SYS/monitor/+', '$SYS/monitor/Clients', true],
    // §4.7.3 case and empty levels are significant
    ['ACCOUNTS', 'Accounts', false],
    ['a/b', 'a/b/', false],
    ['a//b', 'a/b', false],
    ['a/+/b', 'a//b', true],
    ['a/b/#', 'a/bc', false],
    ['a/bc', 'a/b', false],
  ];
  for (const [filter, topic, want] of cases) assert.equal(topicMatches(filter, topic), want, `${filter} vs ${topic}`);
});

/** A random topic name: 1 to 4 levels from a small alphabet (so filters hit often), sometimes a $ first level. */
function randomTopic(random: (n: number) => number): string {
  const levels = Array.from({ length: 1 + random(4) }, () => ['a', 'b', 'ab', ''][random(4)]!);
  if (random(5) === 0) levels[0] = ['$SYS', '$a', '$'][random(3)]!;
  const topic = levels.join('/');
  return topic === '' ? 'a' : topic;
}

/** A random valid filter: levels of the same alphabet or "+", sometimes "#" last, sometimes a $ first level. */
function randomFilter(random: (n: number) => number): string {
  const levels = Array.from({ length: 1 + random(4) }, () => ['a', 'b', 'ab', '', '+', '+'][random(6)]!);
  if (random(3) === 0) levels.push('#');
  if (random(6) === 0) levels[0] = ['$SYS', '$a', '$'][random(3)]!;
  return levels.join('/') || '+';
}

test('randomized: the broker matcher and the trusted component\'s policy matcher agree on every valid filter and topic, $ topics included', () => {
  const random = seededRandom(0x7091c);
  let matched = 0;
  let dollar = 0;
  let dollarMatched = 0;
  for (let i = 0; i < 20_000; i++) {
    const filter = randomFilter(random);
    const topic = randomTopic(random);
    assert.ok(isValidTopicFilter(filter) && isValidTopicName(topic), `generated ${filter} / ${topic}`);
    const broker = topicMatches(filter, topic);
    assert.equal(trusted.topicMatches(filter, topic), broker, `filter ${JSON.stringify(filter)} vs topic ${JSON.stringify(topic)}`);
    if (broker) matched++;
    if (topic.startsWith('$')) dollar++;
    if (broker && topic.startsWith('$')) dollarMatched++;
  }
  // the generator is useful only if both outcomes occur often, and $ topics both match and do not
  assert.ok(matched > 1_000 && matched < 19_000, `${matched} of 20000 pairs match`);
  assert.ok(dollar > 2_000 && dollarMatched > 20, `${dollar} pairs with a $ topic, ${dollarMatched} of them matching`);
});

test('randomized: the broker and the trusted component accept the same filters, except those with NUL or over 65535 characters, which only the broker refuses', () => {
  const random = seededRandom(0xf117e5);
  const acceptedByPolicy = (f: string): boolean => {
    try {
      trusted.checkFilter(f);
      return true;
    } catch (err) {
      assert.ok(err instanceof RangeError, String(err));
      return false;
    }
  };
  let valid = 0;
  for (let i = 0; i < 20_000; i++) {
    const filter = Array.from({ length: 1 + random(7) }, () => ['a', '/', '+', '#', '$', 'b'][random(6)]!).join('');
    const broker = isValidTopicFilter(filter);
    assert.equal(acceptedByPolicy(filter), broker, JSON.stringify(filter));
    if (broker) valid++;
  }
  assert.ok(valid > 1_000 && valid < 19_000, `${valid} of 20000 generated filters are valid`);
  // The intended differences: a filter in a signed policy or token is never sent over MQTT, so the
  // trusted side checks only the wildcard rules; the broker also applies the MQTT string limits.
  assert.equal(isValidTopicFilter('a/\u0000'), false);
  assert.equal(acceptedByPolicy('a/\u0000'), true);
  assert.equal(isValidTopicFilter('x'.repeat(65536)), false);
  assert.equal(acceptedByPolicy('x'.repeat(65536)), true);
  // and an empty filter is refused by both
  assert.equal(isValidTopicFilter(''), false);
  assert.equal(acceptedByPolicy(''), false);
});

test('filterCovers: when it says a rule covers a filter, every topic the filter matches is matched by the rule (randomized)', () => {
  const random = seededRandom(0xc0fe);
  let covered = 0;
  for (let i = 0; i < 3_000; i++) {
    const outer = randomFilter(random);
    const inner = randomFilter(random);
    if (!filterCovers(outer, inner)) continue;
    covered++;
    for (let k = 0; k < 40; k++) {
      const topic = randomTopic(random);
      // a '#' or '+' rule at the first level covers $ filters by level, although it matches no $ topic (see below)
      if (topic.startsWith('$') && !inner.startsWith('$')) continue;
      if (topic.startsWith('$') && (outer.startsWith('#') || outer.startsWith('+'))) continue;
      if (topicMatches(inner, topic)) assert.ok(topicMatches(outer, topic), `${outer} covers ${inner} but does not match ${topic}`);
    }
  }
  assert.ok(covered > 100, `${covered} covering pairs`);
});

test('filterCovers compares level by level and errs on the side of "not covered"', () => {
  const cases: Array<[string, string, boolean]> = [
    ['#', 'a/b', true], ['a/#', 'a/+/c', true], ['a/#', 'a', true], ['a/+', 'a/b', true], ['a/+', 'a/+', true], ['+/+', 'a/+', true],
    ['a/b', 'a/+', false], ['a/+', 'a/#', false], ['a/+', 'a/b/c', false], ['a/b', 'a', false], ['a', 'a/b', false], ['+', 'a/b', false],
    // covered in meaning, but not level by level: refused, which is the safe answer for an allow rule
    ['+/#', '#', false],
    // level by level, $ is a letter: a "#" rule covers "$SYS/#" although "#" itself matches no $ topic
    ['#', '$SYS/#', true],
    ['+/#', '$SYS/x', true],
  ];
  for (const [outer, inner, want] of cases) assert.equal(filterCovers(outer, inner), want, `${outer} covers ${inner}`);
  assert.equal(topicMatches('#', '$SYS/x'), false);
});
