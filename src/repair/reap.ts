/**
 * Reaping (XFS's reap.c): the old structure's blocks go back to free space
 * once the new one is installed, in the same transaction. They are metadata
 * with images in the log, so they stay busy until the next checkpoint
 * (replaying an old image must never land on data that reused them). When
 * the rmap still maps them to an owner (the free-space btrees' blocks, owned
 * by "ag"; a file's old block-map btree blocks), that record goes too.
 */
import type { AllocGroup } from '../alloc/ag';
import type { Allocator } from '../alloc/alloc';
import { rmapUnmap } from '../rmap/rmap';
import type { RmapRecord } from '../rmap/rmap-btree';
import type { ExtentBitmap } from './bitmap';

export interface ReapOptions {
  /** The rmap owner to unmap them from; none when the rmap does not hold them (an rmap repair's old blocks). */
  rmapOwner?: number;
}

/** Frees one run of AG ag's blocks, unmapping it from the rmap record `mapped` names (if any). */
function reapRun(ag: AllocGroup, start: number, len: number, mapped: RmapRecord | null): void {
  if (mapped !== null) rmapUnmap(ag.rmap, mapped, `AG ${ag.agno} rmap`);
  ag.giveFree(start, len);
  ag.markBusy(start, len, true);
}

/** Frees every extent of `blocks` in AG ag; must run inside the caller's transaction. The blocks freed. */
export function reapExtents(ag: AllocGroup, blocks: ExtentBitmap, options: ReapOptions = {}): number {
  const owner = options.rmapOwner;
  blocks.walk((start, len) => {
    reapRun(ag, start, len, owner === undefined ? null : { startblock: start, blockcount: len, owner, offset: 0, flags: 0 });
  });
  return blocks.blocks;
}

/**
 * Frees the blocks an inode's old structure held (a directory's or attribute
 * fork's btree, attribute values) in AG agno, through the allocator, so the
 * rmap, free space, busy extents and the live hooks all hear of it: one
 * free-space update per run of blocks (Allocator.freeOwnedRun). Cached
 * copies are forgotten (a dirty one must never be written over a reused
 * block). Inside the caller's transaction. The blocks freed.
 */
export function reapInodeBlocks(alloc: Allocator, agno: number, blocks: ExtentBitmap, owner: number, flags: number): number {
  const geo = alloc.geo;
  blocks.walk((start, len) => {
    for (let i = 0; i < len; i++) alloc.cache.invalidate(geo.fsbno(agno, start + i));
    alloc.freeOwnedRun(geo.fsbno(agno, start), len, owner, flags);
  });
  return blocks.blocks;
}

/**
 * Frees the blocks of these rmap records of AG ag (each unmapped exactly as
 * the rmap holds it: an inode's btree blocks are one record each, offset 0,
 * so a run of them is not one record); inside the caller's transaction.
 * The blocks freed.
 */
export function reapRecords(ag: AllocGroup, records: readonly RmapRecord[]): number {
  let blocks = 0;
  for (const r of records) {
    // The old tree's blocks were in use until now: a cached copy must not be written back over a reuse.
    for (let b = r.startblock; b < r.startblock + r.blockcount; b++) ag.cache.invalidate(ag.geo.fsbno(ag.agno, b));
    reapRun(ag, r.startblock, r.blockcount, r);
    blocks += r.blockcount;
  }
  return blocks;
}
