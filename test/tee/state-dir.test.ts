/** The trusted component's state directory: the device secret and the counter of the sealed manifest. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StateDir } from '../../src/tee/state-dir.js';
import { TeeError } from '../../src/envelope/errors.js';

test('the device secret is created once with mode 0600, the counter reads back as last written, and either file alone is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-state-'));
  try {
    const state = new StateDir(join(dir, 'tee'));
    assert.equal(state.read(), undefined, 'an empty state directory is not provisioned');
    const secret = state.createSecret();
    assert.equal(secret.length, 32);
    assert.equal(statSync(state.secretPath).mode & 0o777, 0o600);
    assert.throws(() => state.read(), (e: unknown) => e instanceof TeeError && e.code === 'state-incomplete' && /counter/.test(e.detail), 'a secret without a counter is refused');
    assert.throws(() => state.createSecret(), /EEXIST/, 'never overwritten');
    state.writeCounter(1);
    state.writeCounter(7);
    assert.deepEqual(state.read(), { secret, counter: 7 });
    rmSync(state.secretPath);
    assert.throws(() => state.read(), (e: unknown) => e instanceof TeeError && e.code === 'state-incomplete' && /device.secret/.test(e.detail), 'a counter without a secret is refused');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
