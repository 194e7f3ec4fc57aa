/**
 * A file's block map changes format under the operation walking it: inline
 * -> btree when a fill makes the 13th extent, btree -> inline when a fill
 * joins two extents and they fit in the inode again. No BlockMap may go on
 * with the format it saw first (issue 11 item 2: fallocate on a fragmented
 * file failed with EUCLEAN).
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { FORK_BTREE, FORK_EXTENTS, MAX_INLINE_EXTENTS, S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const block = (n: number): Buffer => Buffer.alloc(BLOCK_SIZE, n + 1);

function formatOf(fsx: Rmapfs, ino: number): number {
  return fsx.inodes.get(ino).format;
}

function extentCount(fsx: Rmapfs, ino: number): number {
  return new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).extents().length;
}

t.test('fallocate over the hole that makes the 13th extent (inline -> btree mid-call)', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const a = fsx.create(fsx.rootIno, 'A', S_IFREG | 0o644, 0, 0).ino;
  const b = fsx.create(fsx.rootIno, 'B', S_IFREG | 0o644, 0, 0).ino;
  // A's blocks 0, 2, ..., 22, each followed on disk by one of B's: 12 extents, none adjacent.
  for (let i = 0; i < 24; i += 2) {
    fsx.write(a, i * BLOCK_SIZE, block(i));
    fsx.write(b, i * BLOCK_SIZE, block(i));
  }
  t.equal(extentCount(fsx, a), MAX_INLINE_EXTENTS, 'A has 12 extents');
  t.equal(formatOf(fsx, a), FORK_EXTENTS, 'inline');
  // fallocate -o 4096 -l 12288: holes at blocks 1 and 3; the first fill makes the 13th extent.
  fsx.preallocate(a, BLOCK_SIZE, 3 * BLOCK_SIZE);
  t.equal(formatOf(fsx, a), FORK_BTREE, 'the map spilled into a btree');
  t.equal(extentCount(fsx, a), 14, 'both holes filled');
  t.equal(fsx.stat(a).size, 23 * BLOCK_SIZE, 'size unchanged (the range is inside the file)');
  for (let i = 0; i < 23; i++) {
    const want = i % 2 === 0 ? block(i) : Buffer.alloc(BLOCK_SIZE);
    if (!fsx.read(a, i * BLOCK_SIZE, BLOCK_SIZE).equals(want)) t.fail(`block ${i} of A reads wrong`);
  }
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('fallocate whose first fill joins two extents (btree -> inline mid-call)', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const a = fsx.create(fsx.rootIno, 'A', S_IFREG | 0o644, 0, 0).ino;
  // A's blocks 0, 2, ..., 24 preallocated alone (unwritten: a fill joins unwritten neighbours only). Each
  // asks for the disk block its file offset would have (the previous extent's end plus the hole), so the
  // disk block of each hole stays free (past the first few, which the spill's btree block and earlier
  // metadata take) and a fill there joins its neighbours.
  for (let i = 0; i <= 24; i += 2) fsx.preallocate(a, i * BLOCK_SIZE, BLOCK_SIZE);
  t.equal(extentCount(fsx, a), MAX_INLINE_EXTENTS + 1, 'A has 13 extents');
  t.equal(formatOf(fsx, a), FORK_BTREE, 'in a btree');
  // Holes at 5 and 7: filling 5 joins 4..6 (12 extents: back inline), then the walk goes on to 7.
  fsx.preallocate(a, 5 * BLOCK_SIZE, 3 * BLOCK_SIZE);
  t.equal(extentCount(fsx, a), MAX_INLINE_EXTENTS - 1, 'each fill joined its neighbours');
  t.equal(formatOf(fsx, a), FORK_EXTENTS, 'back inline once the extents fit');
  t.ok(fsx.read(a, 0, 25 * BLOCK_SIZE).equals(Buffer.alloc(25 * BLOCK_SIZE)), 'A reads as zeroes');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('a BlockMap held across another map\'s format changes, both ways', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const a = fsx.create(fsx.rootIno, 'A', S_IFREG | 0o644, 0, 0).ino;
  const b = fsx.create(fsx.rootIno, 'B', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 24; i += 2) {
    fsx.write(a, i * BLOCK_SIZE, block(i));
    fsx.write(b, i * BLOCK_SIZE, block(i));
  }
  fsx.fs.run(() => {
    const held = new BlockMap(fsx.inodes.get(a), fsx.fs.alloc, fsx.fs.geo);
    t.equal(held.btree, null, 'inline when taken');
    fsx.write(a, 30 * BLOCK_SIZE, block(30)); // the 13th extent, through another map
    t.not(held.btree, null, 'the held map sees the btree');
    t.equal(held.extents().length, 13, 'and reads it');
    t.equal(held.lookup(30).hit?.fileoff, 30, 'and looks up in it');
  });
  fsx.fs.run(() => {
    const held = new BlockMap(fsx.inodes.get(a), fsx.fs.alloc, fsx.fs.geo);
    t.not(held.btree, null, 'a btree when taken');
    fsx.truncate(a, 24 * BLOCK_SIZE); // back to 12 extents, through another map
    t.equal(formatOf(fsx, a), FORK_EXTENTS, 'the truncate moved the map back inline');
    t.equal(held.btree, null, 'the held map sees it inline');
    t.equal(held.extents().length, 12, 'and reads it');
    t.equal(held.lookup(22).hit?.fileoff, 22, 'and looks up in it');
  });
  t.same(check(fsx), [], 'check clean');
  t.end();
});
