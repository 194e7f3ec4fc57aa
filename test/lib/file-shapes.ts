/**
 * A small filesystem with one file of each shape the file checkers know: a
 * directory of 200 entries (a 2-level btree), a file of 20 one-block extents
 * (a bmbt), one of 3 inline extents, a long and a short symlink, a file with
 * an extended attribute (an attr btree), and a free inode slot beside them.
 */
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';

export interface Files {
  root: number;
  /** A directory of 200 entries: a 2-level btree. */
  big: number;
  /** 20 one-block extents at every other file block: a bmbt. */
  frag: number;
  /** 3 one-block extents, inline in the inode. */
  small: number;
  /** A 300-byte symlink target: one block. */
  long: number;
  /** An 11-byte symlink target: local in the inode. */
  short: number;
  /** A file with one extended attribute: an attr btree. */
  xattrs: number;
  /** A free inode slot of the same chunk. */
  free: number;
}

export const SHORT_TARGET = 'target/here';

export function populate(image: string): Files {
  const f = Rmapfs.open(image);
  try {
    const root = f.rootIno;
    const big = f.mkdir(root, 'big', 0o755, 0, 0).ino;
    for (let i = 0; i < 200; i++) f.create(big, `file${i}`, S_IFREG | 0o644, 0, 0);
    const frag = f.create(root, 'frag', S_IFREG | 0o644, 0, 0).ino;
    for (let i = 0; i < 20; i++) f.write(frag, 2 * i * 4096, Buffer.alloc(4096, i + 1));
    const small = f.create(root, 'small', S_IFREG | 0o644, 0, 0).ino;
    for (let i = 0; i < 3; i++) f.write(small, 2 * i * 4096, Buffer.alloc(4096, i + 1));
    const long = f.symlink(root, 'long', 'x/'.repeat(150), 0, 0).ino;
    const short = f.symlink(root, 'short', SHORT_TARGET, 0, 0).ino;
    const xattrs = f.create(root, 'xattrs', S_IFREG | 0o644, 0, 0).ino;
    f.setxattr(xattrs, 'user.color', Buffer.from('blue'));
    return { root, big, frag, small, long, short, xattrs, free: xattrs + 1 };
  } finally {
    f.close();
  }
}

