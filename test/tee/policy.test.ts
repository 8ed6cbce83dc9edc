/** The trusted component's own topic matching and its policy of who publishes and reads what. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Policy, checkFilter, grantAllows, topicMatches } from '../../src/tee/policy.js';

test('MQTT filter matching follows the spec, including # at the parent level and $ topics', () => {
  const cases: Array<[string, string, boolean]> = [
    ['a/b', 'a/b', true], ['a/+', 'a/b', true], ['a/+', 'a/b/c', false], ['a/#', 'a', true], ['a/#', 'a/b/c', true],
    ['#', 'a/b', true], ['+/+', 'a/b', true], ['+', '/', false], ['+/+', '/', true], ['a/+/c', 'a//c', true],
    ['#', '$SYS/x', false], ['+/x', '$SYS/x', false], ['$SYS/#', '$SYS/x', true], ['a/b', 'a/b/', false],
  ];
  for (const [f, t, want] of cases) assert.equal(topicMatches(f, t), want, `${f} vs ${t}`);
  for (const bad of ['a/#/b', 'a+', '#a', '']) assert.throws(() => checkFilter(bad), RangeError, bad);
});

test('a policy grants by identity or "*"; token grants allow only the filters they list', () => {
  const p = Policy.parse(JSON.stringify({ rules: [{ identity: 'a', publish: ['x/#'] }, { identity: '*', read: ['x/+'] }] }), 3);
  assert.equal(p.mayPublish('a', 'x/1'), true);
  assert.equal(p.mayPublish('b', 'x/1'), false);
  assert.equal(p.mayRead('b', 'x/1'), true);
  assert.equal(p.mayRead('b', 'x/1/2'), false);
  assert.equal(grantAllows(['x/#'], 'x/1/2'), true);
  assert.equal(grantAllows(['x/#'], 'y'), false);
  assert.equal(grantAllows([], 'any/topic'), false, 'no grants, nothing allowed');
  assert.throws(() => Policy.parse('{"rules":{}}', 1), /rules/);
  assert.throws(() => Policy.parse('{"rules":[{"identity":"a","read":"x"}]}', 1), /read/);
});
