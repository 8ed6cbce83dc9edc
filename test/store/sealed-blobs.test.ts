import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSealedBlobStore } from '../../src/store/sealed-blobs.js';

test('the sealed blob store keeps, replaces, lists and deletes blobs in DATA/mqt-tz.db across reopen', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-store-'));
  try {
    const s = openSealedBlobStore(dir);
    assert.ok(existsSync(join(dir, 'mqt-tz.db')));
    assert.equal(s.get('key/a'), undefined);
    s.put('key/a', new Uint8Array([1, 2, 3]));
    s.put('key/b', Buffer.from([9]).subarray(0, 1));
    s.put('key/a', new Uint8Array([4, 5]));
    assert.deepEqual([...s.get('key/a')!], [4, 5]);
    s.close();
    const again = openSealedBlobStore(dir);
    assert.deepEqual(again.snapshot().map((e) => [e.name, [...e.blob]]), [['key/a', [4, 5]], ['key/b', [9]]]);
    again.delete('key/a');
    assert.equal(again.get('key/a'), undefined);
    assert.throws(() => again.put('', new Uint8Array([1])), /invalid sealed blob name/);
    assert.throws(() => again.put('x', new Uint8Array(0)), /non-empty/);
    assert.equal(again.snapshot().length, 1, 'refused writes change nothing');
    again.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
