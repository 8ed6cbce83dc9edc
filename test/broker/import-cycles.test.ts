/**
 * The broker core's modules import each other without a cycle at run time (type-only imports
 * are erased by the compiler and do not count). A cycle makes module load order matter: a class
 * used before its module finished loading is `undefined` (ProtocolViolation once was, in
 * connection.ts -> handlers/dispatch.ts -> handlers/* -> connection.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
/** The compiled sources (dist/src), next to the compiled tests (dist/test/broker). */
const SRC = resolve(here, '../../src');

/** `import ... from './x.js'`, `export ... from './x.js'` and `import './x.js'` as the compiler emits them. */
const RELATIVE_IMPORT = /^\s*(?:import|export)\s(?:[^'";]*?\sfrom\s)?['"](\.{1,2}\/[^'"]+)['"]/gm;

function jsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return jsFiles(path);
    return e.name.endsWith('.js') ? [path] : [];
  });
}

/** Module -> the modules it loads at run time. */
function importGraph(root: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of jsFiles(root)) {
    const text = readFileSync(file, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(RELATIVE_IMPORT)) deps.push(resolve(dirname(file), m[1]!));
    graph.set(file, deps);
  }
  return graph;
}

/** Every cycle found by a depth-first walk, each as its modules in order (paths relative to `root`). */
function cycles(graph: ReadonlyMap<string, readonly string[]>, root: string): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): void => {
    state.set(node, 'open');
    stack.push(node);
    for (const dep of graph.get(node) ?? []) {
      const s = state.get(dep);
      if (s === 'open') found.push(stack.slice(stack.indexOf(dep)).concat(dep).map((p) => p.slice(root.length + 1)));
      else if (s === undefined && graph.has(dep)) visit(dep);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of [...graph.keys()].sort()) if (!state.has(node)) visit(node);
  return found;
}

test('the cycle finder sees a cycle, and the import parser sees imports and re-exports but not type-only ones', () => {
  const g = new Map([
    ['/r/a.js', ['/r/b.js']],
    ['/r/b.js', ['/r/c.js']],
    ['/r/c.js', ['/r/a.js']],
    ['/r/d.js', ['/r/a.js']],
  ]);
  assert.deepEqual(cycles(g, '/r'), [['a.js', 'b.js', 'c.js', 'a.js']]);
  assert.deepEqual(cycles(new Map([['/r/a.js', ['/r/b.js']], ['/r/b.js', []]]), '/r'), []);
  const sample = "import { x } from './x.js';\nexport { y } from '../y.js';\nimport './side.js';\nimport {\n  z,\n} from './z.js';\nconst s = \"import { q } from './not-an-import.js'\";\n";
  assert.deepEqual([...sample.matchAll(RELATIVE_IMPORT)].map((m) => m[1]), ['./x.js', '../y.js', './side.js', './z.js']);
});

test('the broker core (src/broker) has no run-time import cycle', () => {
  const graph = importGraph(join(SRC, 'broker'));
  assert.ok(graph.has(join(SRC, 'broker/connection.js')), 'the compiled broker modules were found');
  assert.ok(graph.get(join(SRC, 'broker/connection.js'))!.includes(join(SRC, 'broker/handlers/dispatch.js')), 'the graph holds connection.js -> handlers/dispatch.js');
  assert.deepEqual(cycles(graph, SRC), []);
});

test('no module of src has a run-time import cycle', () => {
  assert.deepEqual(cycles(importGraph(SRC), SRC), []);
});
