/**
 * What the repairers' crash tests share: an image with files in it and a
 * directory whose new files get their inodes in AG 1 (new directories spread
 * over the AGs), the write log's base (a copy of it before the log starts),
 * and writers -- files created, rewritten, removed, and every so often one
 * fsync'ed and announced to the write log ("fsync PATH SHA256 SIZE", then
 * never changed again: replay-check demands it at every later crash point).
 */
import type { Test } from 'tap';
import * as fs from 'fs';
import * as crypto from 'crypto';
import { isCorruption } from '../../src/errors';
import { Rmapfs } from '../../src/fs/rmapfs';
import type { WriteLogRecorder } from '../../src/io/write-log';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import type { Rng } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';

export interface CrashImage {
  /** The image the test opens under the write log. */
  image: string;
  /** Its copy from before the log began: what replay-check rebuilds from. */
  base: string;
  logPath: string;
  /** The directory (under the root) whose new files' inodes are in AG 1. */
  ag1Dir: string;
}

/** A 16 MiB two-AG image with 60 files of 700 B..42 KB, copied as the base; all removed at teardown. */
export function crashImage(t: Test, prefix: string): CrashImage {
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  const base = scratchPath(`${prefix}-base.img`);
  const logPath = scratchPath(`${prefix}-write.log`);
  t.teardown(() => { for (const f of [base, logPath]) fs.rmSync(f, { force: true }); });
  const pre = Rmapfs.open(image);
  let ag1Dir = '';
  try {
    for (let i = 0; i < 60; i++) pre.write(pre.create(pre.rootIno, `old${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(700 * (i + 1), i));
    for (let i = 0; ag1Dir === ''; i++) if (pre.fs.geo.inoAgno(pre.mkdir(pre.rootIno, `d${i}`, S_IFDIR | 0o755, 0, 0).ino) === 1) ag1Dir = `d${i}`;
  } finally {
    pre.close();
  }
  fs.copyFileSync(image, base);
  return { image, base, logPath, ag1Dir };
}

interface WrittenFile {
  ino: number;
  name: string;
  dir: { ino: number; path: string };
}

/** Files made, rewritten and removed in the root and in AG 1's directory, some made durable. */
export class CrashWriters {
  private readonly dirs: { ino: number; path: string }[];
  private readonly files: WrittenFile[] = [];
  private made = 0;
  /** Files fsync'ed and announced to the write log. */
  durable = 0;
  /** Frees refused because the AG's space metadata is known damaged (by design, until it is repaired). */
  refused = 0;

  constructor(private readonly fsx: Rmapfs, private readonly recorder: WriteLogRecorder, private readonly rng: Rng, ag1Dir: string) {
    this.dirs = [{ ino: fsx.rootIno, path: '' }, { ino: fsx.lookup(fsx.rootIno, ag1Dir), path: `${ag1Dir}/` }];
  }

  /** n operations: a create (30%, or while there are few files), an unlink (15%), else a rewrite (30% of them made durable). */
  work(n: number): void {
    const { fsx, rng, files } = this;
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (files.length < 8 || r < 0.3) {
        const name = `f${this.made++}`;
        const dir = this.dirs[rng.int(this.dirs.length)]!;
        files.push({ ino: fsx.create(dir.ino, name, S_IFREG | 0o644, 0, 0).ino, name, dir });
      } else if (r < 0.45) {
        const k = rng.int(files.length);
        const f = files[k]!;
        if (!this.refusedFree(() => fsx.unlink(f.dir.ino, f.name))) files.splice(k, 1);
      } else {
        const k = rng.int(files.length);
        const f = files[k]!;
        const data = crypto.randomBytes(1 + rng.int(30000));
        if (this.refusedFree(() => fsx.truncate(f.ino, 0))) continue;
        fsx.write(f.ino, 0, data);
        if (rng.next() < 0.3) {
          fsx.fsync();
          this.recorder.mark(`fsync /${f.dir.path}${f.name} ${crypto.createHash('sha256').update(data).digest('hex')} ${data.length}`);
          this.durable++;
          files.splice(k, 1); // never changed again: its content stays what the mark says
        }
      }
    }
  }

  /** Runs a change that frees space; true when it was refused (its blocks are in an AG known damaged: nothing changed). */
  private refusedFree(change: () => void): boolean {
    try {
      change();
      return false;
    } catch (e) {
      if (!isCorruption(e)) throw e;
      this.refused++;
      return true;
    }
  }
}
