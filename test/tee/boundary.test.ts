// The trust boundary in the source tree: src/tee is the trusted core, src/envelope the shared format
// that holds no keys, everything else is host or client code (docs/protocol.md §8).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, posix, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

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
