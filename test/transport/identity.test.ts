import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSubjectAltName } from '../../src/transport/identity.js';

test("subjectAltName parsing: plain entries split on ', ' in order", () => {
  assert.deepEqual(parseSubjectAltName('DNS:a.example, IP Address:127.0.0.1, email:alice@example.org, URI:spiffe://e/alice'), [
    ['DNS', 'a.example'],
    ['IP Address', '127.0.0.1'],
    ['email', 'alice@example.org'],
    ['URI', 'spiffe://e/alice'],
  ]);
});

test('subjectAltName parsing: JSON-quoted values keep their commas and quotes', () => {
  assert.deepEqual(parseSubjectAltName('email:"a, b@example.org", DNS:"x\\"y", URI:z'), [
    ['email', 'a, b@example.org'],
    ['DNS', 'x"y'],
    ['URI', 'z'],
  ]);
});

test('subjectAltName parsing: empty text has no entries', () => {
  assert.deepEqual(parseSubjectAltName(''), []);
});
