/**
 * A filesystem of about files x extents rmap records, for the check and
 * repair benchmarks: `files` files each given `extents` one-block extents,
 * round robin with a one-block gap in each file, so no two neighbouring
 * blocks share an owner and every block is its own rmap record and extent.
 * Built through the real allocator and block maps; file data is not written
 * (these benchmarks read metadata).
 */
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG } from '../../src/inode/inode-format';

export function buildFragmentedFs(image: string, files: number, extents: number,
  progress?: (extentsDone: number) => void): Rmapfs {
  mkfs(image, { size: Math.max(1 << 30, files * extents * 4096 * 2.5) });
  const fsx = Rmapfs.open(image);
  const inos: number[] = [];
  for (let i = 0; i < files; i++) inos.push(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino);
  for (let e = 0; e < extents; e++) {
    for (const ino of inos) {
      fsx.fs.run(() => {
        const inode = fsx.inodes.get(ino);
        const got = fsx.fs.alloc.alloc({ owner: ino, offset: e * 2, minLen: 1, maxLen: 1 });
        new BlockMap(inode, fsx.fs.alloc, fsx.fs.geo).insert({ fileoff: e * 2, blockcount: 1, fsbno: got.fsbno, unwritten: false });
        inode.nblocks = inode.nblocks + 1;
        inode.size = (e * 2 + 1) * 4096;
      });
    }
    progress?.((e + 1) * files);
  }
  return fsx;
}
