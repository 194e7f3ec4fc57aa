/**
 * Reaping (XFS's reap.c): the old structure's blocks go back to free space
 * once the new one is installed, in the same transaction. They are metadata
 * with images in the log, so they stay busy until the next checkpoint
 * (replaying an old image must never land on data that reused them). When
 * the rmap still maps them to an owner (the free-space btrees' blocks, owned
 * by "ag"; a file's old block-map btree blocks), that record goes too.
 */
import { isCorruption } from '../errors';
import { OFF_NUMRECS } from '../btree/btree-block';
import type { Btree } from '../btree/btree';
import type { AllocGroup } from '../alloc/ag';
import type { Allocator } from '../alloc/alloc';
import type { FreeExtent } from '../alloc/alloc-btree';
import { rmapUnmap } from '../rmap/rmap';
import { ExtentBitmap } from './bitmap';

export interface ReapOptions {
  /** The rmap owner to unmap them from; none when the rmap does not hold them (an rmap repair's old blocks). */
  rmapOwner?: number;
}

/**
 * Frees every extent of `blocks` in AG ag: an AG structure's old blocks (owned
 * by an AG owner, or by none when the rmap itself was rebuilt), given straight
 * to the AG's free space -- no inode owns them, and the structures the
 * allocator's path reads may be the ones being replaced. Inside the caller's
 * transaction. The blocks freed.
 */
export function reapExtents(ag: AllocGroup, blocks: ExtentBitmap, options: ReapOptions = {}): number {
  const owner = options.rmapOwner;
  blocks.walk((start, len) => {
    if (owner !== undefined) rmapUnmap(ag.rmap, { startblock: start, blockcount: len, owner, offset: 0, flags: 0 }, `AG ${ag.agno} rmap`);
    ag.giveFree(start, len);
    ag.markBusy(start, len, true);
  });
  return blocks.blocks;
}

/**
 * Frees the blocks an inode's old structure held (a block map's, directory's
 * or attribute fork's btree, attribute values, a symlink's blocks) in AG
 * agno, through the allocator, so the rmap, free space, busy extents and the
 * live hooks all hear of it: one free-space update per run of blocks
 * (Allocator.freeOwnedRuns, in block order: a run may be several rmap records -- btree blocks
 * grown apart, one record each -- or part of one). Cached copies are
 * forgotten (a dirty one must never be written over a reused block). Inside
 * the caller's transaction. The blocks freed.
 */
export function reapInodeBlocks(alloc: Allocator, agno: number, blocks: ExtentBitmap, owner: number, flags: number): number {
  const geo = alloc.geo;
  const runs: FreeExtent[] = [];
  blocks.walk((start, len) => {
    for (let i = 0; i < len; i++) alloc.cache.invalidate(geo.fsbno(agno, start + i));
    runs.push({ startblock: start, blockcount: len });
  });
  alloc.freeOwnedRuns(agno, runs, owner, flags);
  return blocks.blocks;
}

/**
 * The blocks a (possibly damaged) AG btree still reaches: its root and every
 * pointer of a node that verifies, followed down from the root (siblings are
 * not followed: a damaged node's are not to be believed). What lies below a
 * node that does not verify is not found -- nothing live can reach it. A
 * rebuild that cannot walk the old tree (its free space computed, not read)
 * keeps its new blocks off these (a crash before its commit leaves the old
 * tree in place, as readable as it was) and marks them busy once free.
 */
export function reachableBlocks(tree: Btree): ExtentBitmap {
  const out = new ExtentBitmap();
  const { ptr: root, height } = tree.storage.getRoot();
  const seen = new Set<number>();
  const stack: [number, number][] = [[root, height - 1]];
  while (stack.length > 0) {
    const [ptr, level] = stack.pop()!;
    if (!tree.storage.isValidPtr(ptr) || seen.has(ptr)) continue;
    seen.add(ptr);
    out.add(ptr, 1);
    if (level <= 0) continue;
    let node: Buffer;
    try {
      node = tree.readBlock(ptr, level).data;
    } catch (e) {
      if (isCorruption(e)) continue;
      throw e;
    }
    const n = node.readUInt16BE(OFF_NUMRECS);
    for (let i = 0; i < n; i++) stack.push([node.readUInt32BE(tree.geo.ptrOffset(i)), level - 1]);
  }
  return out;
}
