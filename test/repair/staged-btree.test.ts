/**
 * The staged btree and reaping, on their own: AG 0's inode btree is built
 * again beside the one in use (its records copied, blocks reserved from
 * free space and mapped to the inobt owner), installed in one transaction
 * -- root, height and the header's counts -- and the old tree's blocks
 * reaped; the filesystem checks clean, across a reopen, and keeps working.
 * A transaction that fails after the install leaves the old tree in place.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { installStagedBtree, stagedBtreeBlocks } from '../../src/repair/staged-btree';
import { reapExtents } from '../../src/repair/reap';
import { ExtentBitmap } from '../../src/repair/bitmap';
import { OWN_INOBT } from '../../src/format/owners';
import { rmapMap } from '../../src/rmap/rmap';
import type { RecordSource } from '../../src/btree/bulk-load';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** Rebuilds AG 0's inobt as a staged btree; `failAfter` throws once it is installed (the transaction aborts). */
function rebuildInobt(fsx: Rmapfs, failAfter = false): { blocks: number; height: number; reaped: number } {
  const ag = fsx.fs.alloc.ag(0);
  return fsx.fs.run(() => {
    const recSize = ag.ino.ops.recSize;
    const records: Buffer[] = [];
    ag.ino.forEach((b, off) => { records.push(Buffer.from(b.subarray(off, off + recSize))); });
    const old = new ExtentBitmap();
    ag.ino.visitBlocks((ptr) => old.add(ptr, 1));
    const need = stagedBtreeBlocks(ag, 'ino', records.length);
    const blocks: number[] = [];
    while (blocks.length < need) {
      const found = ag.findFree({ minLen: 1, maxLen: need - blocks.length, goal: null })!;
      ag.takeFree(found.startblock, found.blockcount);
      rmapMap(ag.rmap, { startblock: found.startblock, blockcount: found.blockcount, owner: OWN_INOBT, offset: 0, flags: 0 }, 'test');
      for (let i = 0; i < found.blockcount; i++) blocks.push(found.startblock + i);
    }
    let next = 0;
    const source: RecordSource = { next: (dst, off) => { records[next++]!.copy(dst, off); } };
    const installed = installStagedBtree(fsx.fs, ag, 'ino', records.length, source, blocks);
    const reaped = reapExtents(ag, old, { rmapOwner: OWN_INOBT });
    if (failAfter) throw new Error('failing after the install');
    return { blocks: installed.blocks, height: installed.height, reaped };
  });
}

t.test('a staged inode btree replaces the old one in one transaction; the old blocks are reaped', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  for (let i = 0; i < 17000; i++) fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0);
  const ag = fsx.fs.alloc.ag(0);
  const recordsBefore = ag.ino.count();
  t.ok(ag.ino.height >= 2, `AG 0's inobt has ${ag.ino.height} levels, ${recordsBefore} records`);
  t.same(check(fsx), [], 'clean before');
  const rootBefore = ag.ino.storage.getRoot().ptr;
  t.throws(() => rebuildInobt(fsx, true), /failing after the install/);
  t.equal(ag.ino.storage.getRoot().ptr, rootBefore, 'an aborted transaction leaves the old root');
  t.same(check(fsx), [], 'and a clean filesystem');
  const r = rebuildInobt(fsx);
  t.not(ag.ino.storage.getRoot().ptr, rootBefore, 'a new root');
  t.ok(r.reaped > 0, `${r.blocks} new blocks, ${r.reaped} old ones reaped`);
  t.equal(ag.ino.count(), recordsBefore, 'the same records');
  t.same(check(fsx), [], 'clean after');
  for (let i = 0; i < 2000; i++) fsx.unlink(fsx.rootIno, `f${i}`);
  for (let i = 0; i < 500; i++) fsx.create(fsx.rootIno, `g${i}`, S_IFREG | 0o644, 0, 0);
  t.same(check(fsx), [], 'clean after more work on the new tree');
  fsx.close();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'clean after a reopen');
  fsx.close();
  t.end();
});
