/**
 * The reserve pool (Allocator.reservePool, as XFS's m_resblks): on a
 * filesystem that ordinary allocations have filled, writes into preallocated
 * space and hole punches still split block-map extents -- their btree blocks
 * come from the pool -- and statfs shows no free space. The same steps with
 * the pool emptied fail with ENOSPC: what the pool is for.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapfsError } from '../../src/errors';
import { defaultReservePool } from '../../src/alloc/alloc';
import { FORK_BTREE, S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE } from '../../src/file/fallocate';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const B = BLOCK_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const FILE_BLOCKS = 1024;

/** Fills what ordinary allocations may take with a file of its own, big writes first. */
function fill(fsx: Rmapfs): void {
  const filler = fsx.create(fsx.rootIno, 'filler', S_IFREG | 0o644, 0, 0).ino;
  let pos = 0;
  for (const blocks of [64, 8, 1]) {
    for (;;) {
      try {
        pos += fsx.write(filler, pos, Buffer.alloc(blocks * B, 3));
      } catch (e) {
        if (e instanceof RmapfsError && e.code === 'ENOSPC') break;
        throw e;
      }
    }
  }
  fsx.fsync();
}

/** One byte into every other block of the file: each splits an extent (and the map spills into a btree). */
function splitEveryOther(fsx: Rmapfs, ino: number, op: 'write' | 'punch'): void {
  for (let b = 0; b < FILE_BLOCKS; b += 2) {
    if (op === 'write') fsx.write(ino, b * B + 7, Buffer.from([0xa5]));
    else fsx.fallocate(ino, PUNCH, b * B, B);
  }
}

function setUp(t: Test, pool: number | null): { fsx: Rmapfs; prealloc: number; written: number } {
  const fsx = Rmapfs.open(scratchImage(t, { size: 16 << 20, agCount: 1 }));
  t.teardown(() => fsx.close());
  if (pool !== null) fsx.fs.alloc.reservePool = pool;
  const prealloc = fsx.create(fsx.rootIno, 'prealloc', S_IFREG | 0o644, 0, 0).ino;
  fsx.fallocate(prealloc, 0, 0, FILE_BLOCKS * B);
  const written = fsx.create(fsx.rootIno, 'written', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(written, 0, Buffer.alloc(FILE_BLOCKS * B, 0x11));
  fill(fsx);
  return { fsx, prealloc, written };
}

t.test('a full filesystem: writes into preallocated space and punches split extents from the pool', (t) => {
  const { fsx, prealloc, written } = setUp(t, null);
  const pool = defaultReservePool(fsx.fs.geo.totalBlocks);
  t.equal(fsx.fs.alloc.reservePool, pool, `the pool is 5% of the filesystem (${pool} blocks)`);
  t.equal(fsx.fs.alloc.availableBlocks(), 0, 'nothing left for ordinary allocations');
  t.equal(fsx.statfs().bfree, 0, 'statfs: no block free');
  t.equal(fsx.statfs().bavail, 0, 'statfs: no block available');
  t.ok(fsx.fs.alloc.freeBlocks() >= pool, `the pool is still free (${fsx.fs.alloc.freeBlocks()} blocks)`);
  t.throws(() => fsx.write(fsx.create(fsx.rootIno, 'more', S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(B)),
    { code: 'ENOSPC' }, 'a new file\'s data: ENOSPC');

  splitEveryOther(fsx, prealloc, 'write');
  t.equal(fsx.inodes.get(prealloc).format, FORK_BTREE, 'the preallocated file\'s map is a btree now');
  const data = fsx.read(prealloc, 0, FILE_BLOCKS * B);
  let wrong = 0;
  for (let i = 0; i < data.length; i++) if (data[i] !== (i % (2 * B) === 7 ? 0xa5 : 0)) wrong++;
  t.equal(wrong, 0, 'the preallocated file reads as written');

  splitEveryOther(fsx, written, 'punch');
  t.equal(fsx.inodes.get(written).format, FORK_BTREE, 'the punched file\'s map is a btree now');
  const left = fsx.read(written, 0, FILE_BLOCKS * B);
  wrong = 0;
  for (let i = 0; i < left.length; i++) if (left[i] !== (Math.floor(i / B) % 2 === 0 ? 0 : 0x11)) wrong++;
  t.equal(wrong, 0, 'the punched file reads as punched');
  fsx.fsync();
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('without the pool the same writes fail with ENOSPC', (t) => {
  const { fsx, prealloc } = setUp(t, 0);
  t.throws(() => splitEveryOther(fsx, prealloc, 'write'), { code: 'ENOSPC' }, 'a write into preallocated space: ENOSPC');
  t.end();
});
