/** Scratch filesystems for tests: a fresh image, formatted, removed at teardown. */
import * as fs from 'fs';
import type { Test } from 'tap';
import { mkfs } from '../../src/fs/mkfs';
import type { MkfsOptions } from '../../src/fs/mkfs';
import { Filesystem } from '../../src/fs/filesystem';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import { scrubAg } from '../../src/scrub/ag-scrub';
import { scratchPath } from './trees';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BLOCK_SIZE } from '../../src/format/superblock';

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

/**
 * Flips a byte of a block on disk behind the filesystem's back (forced to
 * the log and closed first, so the block is in place), and reopens it.
 */
export function flipOnDisk(image: string, fsx: Rmapfs, fsbno: number, at: number): Rmapfs {
  fsx.fsync();
  fsx.close();
  const fd = fs.openSync(image, 'r+');
  const b = Buffer.alloc(1);
  fs.readSync(fd, b, 0, 1, fsbno * BLOCK_SIZE + at);
  b[0] ^= 0x5a;
  fs.writeSync(fd, b, 0, 1, fsbno * BLOCK_SIZE + at);
  fs.closeSync(fd);
  return Rmapfs.open(image);
}
