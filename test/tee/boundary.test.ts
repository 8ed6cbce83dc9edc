// The trust boundary in the source tree: src/tee is the trusted core, src/envelope the shared format
// that holds no keys, everything else is host or client code (docs/protocol.md §8).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../../..');

/** Host files allowed to reach the trusted core, and through which module only. */
const ENTRY_POINTS = new Map([['src/tee-client/host.ts', ['src/tee/commands.ts']]]);

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => posix.join(relative(ROOT, e.parentPath).split('\\').join('/'), e.name));
}

/** Every module a file names in an import, export-from or dynamic import: `node:` names as they are, relative ones resolved to a .ts path. */
function importsOf(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^import\s+)['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
  return specs.map((s) => (s.startsWith('.') ? posix.join(posix.dirname(file), s).replace(/\.js$/, '.ts') : s));
}

test('the trusted core imports only node: built-ins, its own files and the shared envelope format', () => {
  const bad: string[] = [];
  for (const file of sources('src/tee')) {
    for (const m of importsOf(file)) if (!m.startsWith('node:') && !m.startsWith('src/tee/') && !m.startsWith('src/envelope/')) bad.push(`${file} -> ${m}`);
  }
  assert.deepEqual(bad, []);
});

test('the shared envelope format imports only node: built-ins and its own files (so the measurement covers all the trusted code)', () => {
  const bad: string[] = [];
  for (const file of sources('src/envelope')) for (const m of importsOf(file)) if (!m.startsWith('node:') && !m.startsWith('src/envelope/')) bad.push(`${file} -> ${m}`);
  assert.deepEqual(bad, []);
});

test('nothing outside the trusted core imports its internals; the host loads it only through the inline backend entry point', () => {
  const bad: string[] = [];
  for (const dir of ['src', 'bench', 'scripts']) {
    let files: string[];
    try {
      files = sources(dir);
    } catch {
      continue;
    }
    for (const file of files) {
      if (file.startsWith('src/tee/')) continue;
      const allowed = ENTRY_POINTS.get(file) ?? [];
      for (const m of importsOf(file)) if (m.startsWith('src/tee/') && !allowed.includes(m)) bad.push(`${file} -> ${m}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('the host side reaches the trusted core only by a dynamic import, so the process backend never loads it', () => {
  const text = readFileSync(join(ROOT, 'src/tee-client/host.ts'), 'utf8');
  assert.doesNotMatch(text, /^import[^(]*['"]\.\.\/tee\//m, 'no static import of src/tee');
  assert.match(text, /await import\('\.\.\/tee\/commands\.js'\)/);
});

test('the import scanner sees static, type-only, re-exported and dynamic imports (it can fail)', () => {
  const dir = 'src/tee-client';
  const seen = importsOf(`${dir}/host.ts`);
  assert.ok(seen.includes('node:child_process'));
  assert.ok(seen.includes('src/envelope/wire.ts'));
  assert.ok(seen.includes('src/tee/commands.ts'));
});

/** The trusted modules a fresh Node process loads while it opens a component with `backend` and asks for its info. */
function trustedModulesLoaded(backend: 'process' | 'inline'): string[] {
  const dir = mkdtempSync(join(tmpdir(), 'mqt-tz-boundary-'));
  try {
    const hook = join(dir, 'hook.mjs');
    writeFileSync(hook, "export async function load(url, c, next) { if (url.includes('/src/tee/')) process.stderr.write('TRUSTED ' + url + '\\n'); return next(url, c); }\n");
    const operator = pathToFileURL(join(ROOT, 'dist/src/protect/operator.js')).href;
    const main = join(dir, 'main.mjs');
    writeFileSync(main, `
      const { createOperatorKey, openDataTee } = await import(${JSON.stringify(operator)});
      const op = createOperatorKey(${JSON.stringify(join(dir, 'operator.key'))});
      const d = await openDataTee(${JSON.stringify(join(dir, 'data'))}, { backend: ${JSON.stringify(backend)}, operatorPublicKey: op.publicKey, onWarning: () => undefined });
      await d.tee.info();
      await d.tee.close();
      process.exit(0);
    `);
    const child = spawnSync(process.execPath, ['--no-warnings', '--experimental-loader', pathToFileURL(hook).href, main], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(child.status, 0, child.stderr);
    return [...child.stderr.matchAll(/^TRUSTED (.*)$/gm)].map((m) => m[1]!.slice(m[1]!.indexOf('/src/tee/') + 1));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('a broker-side process with the process backend loads no trusted module; with the inline backend it loads them (the check can fail)', () => {
  assert.deepEqual(trustedModulesLoaded('process'), []);
  const inline = trustedModulesLoaded('inline');
  assert.ok(inline.includes('src/tee/commands.js') && inline.includes('src/tee/core.js'), inline.join(', '));
});
