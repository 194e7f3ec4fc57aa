/** Scratch filesystems for tests: a fresh image, formatted, removed at teardown. */
import * as fs from 'fs';
import type { Test } from 'tap';
import { mkfs } from '../../src/fs/mkfs';
import type { MkfsOptions } from '../../src/fs/mkfs';
import { Filesystem } from '../../src/fs/filesystem';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import { scrubAg } from '../../src/scrub/ag-scrub';
import { scratchPath } from './trees';

export function scratchImage(t: Test, options: MkfsOptions = {}): string {
  const image = scratchPath('fs.img');
  t.teardown(() => fs.rmSync(image, { force: true }));
  mkfs(image, { size: 64 << 20, ...options });
  return image;
}

/** A copy of an image (a populated template), removed at teardown. */
export function scratchCopy(t: Test, template: string, name: string): string {
  const image = scratchPath(name);
  t.teardown(() => fs.rmSync(image, { force: true }));
  fs.copyFileSync(template, image);
  return image;
}

/** Problems an AG-level scrub of every AG finds, as lines. */
export function scrubAll(f: Filesystem): string[] {
  const problems = new ProblemList();
  for (const ag of f.alloc.ags) scrubAg(ag, f.geo, problems);
  return problems.problems.map(formatProblem);
}
