/**
 * The orphanage (XFS's fs/xfs/scrub/orphanage.c, e2fsck's lost+found): an
 * inode in use that no directory names is not freed -- it may hold a
 * user's data -- but linked into /lost+found under its inode number, where
 * a person can find it and decide.
 *
 * /lost+found is made on demand (mode 0700, owned by root, as e2fsck makes
 * it) through the ordinary mkdir, so every hook and count sees it as any
 * other new directory. Each adoption is one transaction: the entry, the
 * adopted inode's link count, and for a directory its ".." (pointed at
 * /lost+found) and /lost+found's count (one more subdirectory).
 */
import { RmapfsError } from '../errors';
import { Directory, DOTDOT, DT_DIR, dtypeOfMode } from '../dir/dir';
import type { Rmapfs } from '../fs/rmapfs';

export const ORPHANAGE_NAME = 'lost+found';

export interface Adoption {
  /** The name the inode got in /lost+found (its number, with ".N" when that name was taken). */
  name: string;
  /** Its link count before and after. */
  nlinkBefore: number;
  nlinkAfter: number;
}

export class Orphanage {
  private ino: number | null = null;

  constructor(private readonly fsx: Rmapfs) {}

  /** /lost+found's inode number, made now when the root has no such entry. */
  private directory(): number {
    const fsx = this.fsx;
    if (this.ino !== null) {
      // Still the root's lost+found? (Someone may have renamed or removed it since.)
      try {
        if (fsx.lookup(fsx.rootIno, ORPHANAGE_NAME) === this.ino) return this.ino;
      } catch (e) {
        if (!(e instanceof RmapfsError && e.code === 'ENOENT')) throw e;
      }
    }
    let ino: number;
    try {
      ino = fsx.lookup(fsx.rootIno, ORPHANAGE_NAME);
    } catch (e) {
      if (!(e instanceof RmapfsError && e.code === 'ENOENT')) throw e;
      ino = fsx.mkdir(fsx.rootIno, ORPHANAGE_NAME, 0o700, 0, 0).ino;
    }
    if (!fsx.inodes.get(ino).isDir) {
      throw new RmapfsError('ENOTDIR', `/${ORPHANAGE_NAME} is not a directory: inodes no directory names are left where they are`);
    }
    this.ino = ino;
    return ino;
  }

  /**
   * Moves directory `ino`, named `name` in directory `parent` though no path
   * from the root reaches it (a cycle of directories), into /lost+found under
   * its number: one rename, so its ".." and both directories' counts follow.
   * The name it got.
   */
  reconnect(parent: number, name: Buffer, ino: number): string {
    const fsx = this.fsx;
    const lfIno = this.directory();
    const lf = new Directory(fsx.inodes.get(lfIno), fsx.fs.alloc, fsx.fs.geo);
    let to = String(ino);
    for (let k = 1; lf.lookup(Buffer.from(to)) !== null; k++) to = `${ino}.${k}`;
    fsx.rename(parent, name, lfIno, to);
    return to;
  }

  /**
   * Links inode `ino` into /lost+found and sets its link count to
   * `nlinkAfter(isDir)` -- what the caller's counts say it has once named
   * there (1 for a file; 2 + its subdirectories for a directory). One
   * transaction (after the one that makes /lost+found, when it is new).
   */
  adopt(ino: number, nlinkAfter: (isDir: boolean) => number): Adoption {
    const fsx = this.fsx;
    const lfIno = this.directory();
    return fsx.fs.run(() => {
      const { alloc, geo } = fsx.fs;
      const inode = fsx.inodes.get(ino);
      const lf = new Directory(fsx.inodes.get(lfIno), alloc, geo);
      let name = String(ino);
      for (let k = 1; lf.lookup(Buffer.from(name)) !== null; k++) name = `${ino}.${k}`;
      lf.add(Buffer.from(name), ino, dtypeOfMode(inode.mode));
      lf.inode.touch('mtime', 'ctime');
      if (inode.isDir) {
        const moved = new Directory(inode, alloc, geo);
        // A directory without ".." is the directory repair's to fix; its count here does not depend on it.
        if (moved.lookup(DOTDOT) !== null) moved.replace(DOTDOT, lfIno, DT_DIR);
        lf.inode.nlink = lf.inode.nlink + 1;
      }
      const nlinkBefore = inode.nlink;
      inode.nlink = nlinkAfter(inode.isDir);
      inode.touch('ctime');
      return { name, nlinkBefore, nlinkAfter: inode.nlink };
    });
  }
}
