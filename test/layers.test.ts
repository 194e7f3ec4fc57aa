/**
 * The layers of ../shared/DESIGN.md, enforced: every import under src/ (type-only imports, re-exports,
 * require() and import() included) must point to its own layer or one below it. A type-only import is
 * still a dependency of the design (the lower layer would have to change with the upper one), so it
 * counts. A folder missing from the table fails too: a new folder gets a place before it gets code.
 */
import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import ts from 'typescript';

/**
 * Bottom first; folders on one row are one layer and may import each other. `errors` is src/errors.ts,
 * the one error type every layer throws.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['errors'],
  ['native'],
  ['io'],
  ['btree'],
  ['format'],
  ['log'],
  ['alloc', 'rmap'],
  ['inode', 'dir', 'file', 'attr'],
  ['fs'],
  ['fuse'],
  ['scrub', 'repair', 'ctl'],
  ['fsck'],
  ['daemon'],
  ['cli'],
];

const layerOf = new Map<string, number>();
LAYERS.forEach((names, level) => names.forEach((name) => layerOf.set(name, level)));

const repoRoot = path.resolve(__dirname, '..', '..');
const srcRoot = path.join(repoRoot, 'src');

/** The layer name of a path under src/: its first folder, or the file's base name for a top-level file. */
function unitOf(fileUnderSrc: string): string {
  const parts = path.relative(srcRoot, fileUnderSrc).split(path.sep);
  return parts.length === 1 ? parts[0].replace(/\.(d\.)?ts$/, '') : parts[0];
}

/** Every module specifier in a TypeScript source: imports, `import type`, re-exports, require(), import(). */
function importsOf(sourceText: string): string[] {
  const info = ts.preProcessFile(sourceText, true, true);
  return info.importedFiles.map((f) => f.fileName);
}

interface UpwardImport {
  file: string;
  target: string;
  fromLayer: string;
  toLayer: string;
}

/** The imports of one file (at `file`, under src/) that point up the layer list or out of it. */
function layerViolations(file: string, sourceText: string): UpwardImport[] {
  const from = unitOf(file);
  const fromLevel = layerOf.get(from);
  const found: UpwardImport[] = [];
  for (const spec of importsOf(sourceText)) {
    if (!spec.startsWith('.')) continue; // node: builtins and packages
    const target = path.resolve(path.dirname(file), spec);
    if (!target.startsWith(srcRoot + path.sep)) continue; // build/ (the addon), package.json
    const to = unitOf(target);
    const toLevel = layerOf.get(to);
    if (fromLevel === undefined || toLevel === undefined || toLevel > fromLevel) {
      found.push({ file: path.relative(repoRoot, file), target: spec, fromLayer: from, toLayer: to });
    }
  }
  return found;
}

function sourcesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...sourcesUnder(p));
    else if (entry.name.endsWith('.ts')) out.push(p);
  }
  return out.sort();
}

t.test('every folder under src/ has a place in the layer list', (t) => {
  const units = new Set(sourcesUnder(srcRoot).map(unitOf));
  for (const unit of units) t.ok(layerOf.has(unit), `src/${unit} is in the layer table`);
  t.end();
});

t.test('no import under src/ points up the layer list', (t) => {
  const files = sourcesUnder(srcRoot);
  t.ok(files.length > 50, `found the sources (${files.length} files)`);
  const upward = files.flatMap((f) => layerViolations(f, fs.readFileSync(f, 'utf8')));
  const lines = upward.map((u) => `${u.file} (${u.fromLayer}) imports ${u.target} (${u.toLayer})`);
  t.same(lines, [], 'no upward imports');
  t.end();
});

t.test('the check sees every kind of import', (t) => {
  // A file in alloc importing from fuse, daemon and inode in each form the language has.
  const file = path.join(srcRoot, 'alloc', 'example.ts');
  const text = [
    "import { LowLevelFuse } from '../fuse/lowlevel';",
    "import type { MountOptions } from '../daemon/daemon';",
    "export { Inode } from '../inode/inode';",
    "const addon = require('../cli/main');",
    "async function later(): Promise<unknown> { return import('../scrub/common'); }",
    "import { Btree } from '../btree/btree';",
    "import { rmapBtreeOps } from '../rmap/rmap-btree';",
    "import { RmapfsError } from '../errors';",
    "import * as fs from 'fs';",
  ].join('\n');
  const up = layerViolations(file, text).map((u) => u.toLayer);
  t.same(up, ['fuse', 'daemon', 'inode', 'cli', 'scrub'], 'upward imports found, downward and same-layer ones not');
  t.end();
});
