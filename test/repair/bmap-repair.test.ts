/**
 * Online repair of a file's block map from the rmap: a leaf record pointing
 * at free space, moved in the file, marked unwritten, one block longer or at
 * the superblock, a zeroed btree leaf, a zeroed btree root -- each found by
 * the scrub, repaired through the structure table, then the filesystem
 * checks clean and every file reads back byte for byte. And the collection
 * is kept current: other files and the file itself change between its
 * slices.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairBlockMap } from '../../src/repair/bmap-repair';
import { BLOCK_SIZE } from '../../src/format/superblock';
import type { RmapUpdate } from '../../src/alloc/alloc';
import { RMAP_BMBT_BLOCK, decodeRmap } from '../../src/rmap/rmap-btree';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { onlineRepair } from '../../src/fsck/online';
import { EXTENT_SIZE, S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
import type { RmapRepairResult } from '../../src/repair/rmap-repair';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { DAMAGED_FILE_EXTENTS, Model, bystanders, damageAndRepair, fragmentedFile, quietHooks } from '../lib/damaged-files';

// The leaf records the rmap contradicts (xfs_scrub's xchk_bmap_xref_rmap), and one over the superblock: the
// block map is blamed and rebuilt from the rmap -- never the rmap from the damaged map.
for (const how of ['leaf record at free space', 'leaf record moved in the file', 'leaf record marked unwritten', 'leaf record one block longer',
  'leaf record at the superblock', 'zeroed leaf', 'zeroed root'] as const) {
  t.test(`a file's ${how} is repaired online through the structure table`, async (t) => {
    const files = await damageAndRepair(t, how);
    t.ok(files.some((f) => f.type === 'bmap' && f.changes[0]!.startsWith('block map rebuilt from the rmap')), 'the block map was rebuilt');
  });
}

t.test('the collection is kept current while other files and the same file change between its slices', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(14));
  const model = new Model();
  const others = bystanders(fsx, model, rng, 10);
  const ino = fragmentedFile(fsx, model, rng, 'big', DAMAGED_FILE_EXTENTS);
  let slices = 0;
  const between = (): void => {
    slices++;
    // Another file grows; this one gets new blocks past its end, an overwrite, a hole filled, and shrinks.
    const other = others[slices % others.length]!;
    model.write(fsx, other, rng.int(4) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, slices & 0xff));
    const size = model.files.get(ino)!.length;
    if (slices % 3 === 0) model.write(fsx, ino, size + BLOCK_SIZE * (1 + rng.int(3)), Buffer.alloc(BLOCK_SIZE, 0x40 + (slices & 0x3f)));
    if (slices % 3 === 1) model.write(fsx, ino, rng.int(2 * DAMAGED_FILE_EXTENTS) * BLOCK_SIZE + 17, Buffer.alloc(100, slices & 0xff));
    if (slices % 7 === 2) model.truncate(fsx, ino, size - BLOCK_SIZE * (1 + rng.int(4)));
  };
  const r = await repairBlockMap(fsx, ino, { sliceMs: 1e9, maxUnits: 20, betweenSlices: between });
  t.ok(slices > 10, `${slices} slices with changes between them`);
  t.equal(r.error, undefined);
  t.ok(r.changes[0]!.startsWith('block map rebuilt from the rmap'), r.changes.join('; '));
  t.same(check(fsx), [], 'clean after the repair');
  model.unchanged(t, fsx);
});

t.test('an rmap rebuild from a block map with an extent over the superblock leaves it out, then rebuilds that map', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(15));
  const model = new Model();
  bystanders(fsx, model, rng, 10);
  const ino = fsx.create(fsx.rootIno, 'small', S_IFREG | 0o644, 0, 0).ino;
  const blocks = [0, 2, 4].map((b) => Buffer.alloc(BLOCK_SIZE, 0x30 + b));
  blocks.forEach((data, i) => fsx.write(ino, 2 * i * BLOCK_SIZE, data));
  fsx.fs.run(() => {
    // The second inline extent (file block 2) onto block 0.
    const { buf, offset } = fsx.inodes.get(ino).dataFork();
    encodeExtent({ ...decodeExtent(buf.data, offset + EXTENT_SIZE), fsbno: 0 }, buf.data, offset + EXTENT_SIZE);
    fsx.fs.cache.markDirty(buf);
  });
  const reply = await onlineRepair(fsx, ['rmapbt'], null, { forceRebuild: true, measureHeap: false, cancelled: () => false }, quietHooks);
  t.ok(reply.ok, `repaired: ${String(reply.error ?? '')}`);
  const sick = (reply.ags as RmapRepairResult[]).flatMap((a) => a.sickForks);
  t.same(sick.map((f) => [f.ino, f.fork]), [[ino, 'data']], `the fork named: ${sick[0]?.what ?? 'none'}`);
  const files = (reply.files as FileRepairResult[]).filter((f) => f.ino === ino && f.type === 'bmap');
  t.ok(files.length === 1 && files[0]!.changes[0]!.startsWith('block map rebuilt from the rmap'), `its block map rebuilt: ${JSON.stringify(files)}`);
  t.same(check(fsx), [], 'clean after the repair');
  // The block it really had is lost with the damage (no map named it); the others read back.
  t.ok(fsx.read(ino, 0, BLOCK_SIZE).equals(blocks[0]!) && fsx.read(ino, 4 * BLOCK_SIZE, BLOCK_SIZE).equals(blocks[2]!), 'file blocks 0 and 4 intact');
  t.ok(fsx.read(ino, 2 * BLOCK_SIZE, BLOCK_SIZE).equals(Buffer.alloc(BLOCK_SIZE)), 'file block 2 a hole, not the superblock');
  model.unchanged(t, fsx);
});

t.test('the old btree blocks are reaped through the allocator: the live rmap hooks hear each one freed', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(15));
  const model = new Model();
  const ino = fragmentedFile(fsx, model, rng, 'big', DAMAGED_FILE_EXTENTS);
  const oldTree = ownedTreeBlocks(fsx, ino);
  t.ok(oldTree.size > 1, `the file's block map is a btree of ${oldTree.size} blocks`);
  // What a live hook (another repair's collection) hears freed of the file's btree blocks.
  const heardFreed = new Set<number>();
  const hook = (u: RmapUpdate): void => {
    if (u.op !== 'unmap' || u.owner !== ino || (u.flags & RMAP_BMBT_BLOCK) === 0) return;
    for (let b = 0; b < u.blockcount; b++) heardFreed.add(fsx.fs.geo.fsbno(u.agno, u.startblock + b));
  };
  fsx.fs.alloc.addRmapHook(hook, () => undefined);
  t.teardown(() => fsx.fs.alloc.removeRmapHook(hook));
  const r = await repairBlockMap(fsx, ino, {});
  t.equal(r.error, undefined);
  t.same([...heardFreed].sort((a, b) => a - b), [...oldTree].sort((a, b) => a - b), 'every old btree block, and only those, heard freed');
  t.same(check(fsx), [], 'clean after the repair');
  model.unchanged(t, fsx);
});

/** The blocks of inode ino's data-fork btree, from the rmap (its "bmbt block" records). */
function ownedTreeBlocks(fsx: Rmapfs, ino: number): Set<number> {
  const blocks = new Set<number>();
  for (const ag of fsx.fs.alloc.ags) {
    ag.rmap.forEach((b, off) => {
      const r = decodeRmap(b, off);
      if (r.owner !== ino || (r.flags & RMAP_BMBT_BLOCK) === 0) return;
      for (let i = 0; i < r.blockcount; i++) blocks.add(fsx.fs.geo.fsbno(ag.agno, r.startblock + i));
    });
  }
  return blocks;
}
