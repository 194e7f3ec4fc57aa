/**
 * Online repair of one AG's free-space btrees (by block and by size), from
 * the rmap (the method of XFS's fs/xfs/scrub/alloc_repair.c): every block of
 * the AG that no rmap record covers is free. While the filesystem stays in
 * use:
 *
 * 1. Collect: walk the AG's rmap in paced slices, adding every record to a
 *    set of used blocks (and the "ag" owner's records to a second set). The
 *    walk resumes by key after each slice (the tree changes in between), and
 *    a live rmap hook applies every committed change in the AG to both sets.
 *    Set semantics make that simple: a block's "used" is the same whether
 *    the walk or the hook saw it first, and rmap records never overlap.
 * 2. Commit, in ONE transaction (the only pause): free space = the AG minus
 *    the used set (the free list and every btree block are "ag"-owned records,
 *    so they are in it); reserve the blocks of both new btrees from that very
 *    free space (not busy ones: they are written in place); bulk-load both
 *    (staged-btree.ts); set the header's free-block and free-extent counts and
 *    longest extent; map the new blocks to "ag" in the rmap; then reap the
 *    old btrees' blocks -- the "ag" owner's blocks that are neither the rmap
 *    btree's nor on the free list -- through the new trees (reap.ts).
 *
 * Until the commit the old trees are the ones in use (an AG whose free space
 * is known damaged is not allocated from meanwhile); after it, the new.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { RecordSource } from '../btree/bulk-load';
import { OFF_FREE_BLOCKS, OFF_FREE_EXTENTS, OFF_LONGEST } from '../format/ag-header';
import { OWN_AG } from '../format/owners';
import { encodeFreeExtent } from '../alloc/alloc-btree';
import { agOwnedBlocks } from '../alloc/ag-owners';
import type { AllocGroup } from '../alloc/ag';
import type { RmapUpdate } from '../alloc/alloc';
import { decodeRmapOwner, encodeRmapKey } from '../rmap/rmap-btree';
import { rmapMap } from '../rmap/rmap';
import type { Rmapfs } from '../fs/rmapfs';
import type { Filesystem } from '../fs/filesystem';
import { Pacer } from '../io/pacer';
import { HookFailure, pauseBetweenSlices } from './paced-repair';
import type { PacedRepairOptions } from './paced-repair';
import { ExtentBitmap } from './bitmap';
import type { Extent } from './bitmap';
import { installStagedBtree, stagedBtreeBlocks } from './staged-btree';
import { reapExtents } from './reap';

const log = createDebug('rmapfs:repair');

export interface FreeSpaceRepairResult {
  agno: number;
  /** Free extents (records of each new tree). */
  records: number;
  freeBlocks: number;
  longest: number;
  bnoBlocks: number;
  cntBlocks: number;
  /** The old trees' blocks given back to free space. */
  oldBlocks: number;
  rmapRecordsScanned: number;
  liveUpdates: number;
  scanMs: number;
  commitPauseMs: number;
  /**
   * Rebuilt together with the rmap, the free space computed from the rmap's
   * scan of every owner (rmap-repair.ts, RepairOptions.freeSpaceToo) rather
   * than read from the rmap.
   */
  withRmap?: boolean;
}

/**
 * The AG's used blocks as the rmap says, kept current: a paced walk of the
 * rmap plus a live hook. `agOwned` is the "ag" owner's part of `used` (the
 * free list's repair rebuilds from it).
 */
export class UsedSpaceCollector {
  readonly used = new ExtentBitmap();
  readonly agOwned = new ExtentBitmap();
  liveUpdates = 0;
  recordsScanned = 0;
  private readonly hookFailure: HookFailure;
  private readonly hook = (u: RmapUpdate): void => this.onUpdate(u);

  constructor(private readonly fsx: Rmapfs, private readonly agno: number) {
    this.hookFailure = new HookFailure(`repair of AG ${agno}`, 'the old structure is kept');
  }

  private onUpdate(u: RmapUpdate): void {
    if (u.agno !== this.agno) return;
    this.liveUpdates++;
    if (u.op === 'map') {
      this.used.add(u.startblock, u.blockcount);
      if (u.owner === OWN_AG) this.agOwned.add(u.startblock, u.blockcount);
    } else {
      this.used.subtract(u.startblock, u.blockcount);
      if (u.owner === OWN_AG) this.agOwned.subtract(u.startblock, u.blockcount);
    }
  }

  /** Walks the rmap in slices; the hook stays registered until close(). */
  async collect(options: PacedRepairOptions): Promise<void> {
    const alloc = this.fsx.fs.alloc;
    alloc.addRmapHook(this.hook, this.hookFailure.note);
    const pacer = new Pacer(options);
    const key = Buffer.alloc(alloc.ag(this.agno).rmap.ops.keySize);
    let from = 0;
    for (;;) {
      // Each slice looks its first record up afresh: the tree may have changed since the last one.
      const rmap = alloc.ag(this.agno).rmap;
      const cur = rmap.cursor();
      encodeRmapKey(from, 0, 0, 0, key);
      let ok = cur.lookup(key, 0, 'ge');
      // Records that touch are one run of used space, added to the set once (a million records an AG
      // are a few hundred runs); the run is added before the slice ends, as the hook changes the set.
      let runStart = 0;
      let runEnd = 0;
      while (ok) {
        const { block, offset } = cur.recordAt();
        const start = block.readUInt32BE(offset);
        const len = block.readUInt32BE(offset + 4);
        if (start !== runEnd || runEnd === runStart) {
          if (runEnd > runStart) this.used.add(runStart, runEnd - runStart);
          runStart = start;
        }
        runEnd = start + len;
        if (decodeRmapOwner(block, offset) === OWN_AG) this.agOwned.add(start, len);
        this.recordsScanned++;
        from = start + 1;
        if (pacer.due()) break;
        ok = cur.increment();
      }
      if (runEnd > runStart) this.used.add(runStart, runEnd - runStart);
      if (!ok) break;
      await pauseBetweenSlices(pacer, options, this.hookFailure, `repair of AG ${this.agno}`);
    }
    this.hookFailure.throwIfFailed();
  }

  close(): void {
    this.fsx.fs.alloc.removeRmapHook(this.hook);
  }
}

/** Free extents as a bulk-load source, in the order given. */
function extentSource(list: readonly Extent[]): RecordSource {
  let i = 0;
  return {
    next: (dst, off) => {
      const e = list[i++];
      if (e === undefined) throw new RmapfsError('EIO', 'fewer free extents than counted');
      encodeFreeExtent(e.start, e.len, dst, off);
    },
  };
}

/**
 * Takes blocks for both new btrees out of `free` (the free space they will
 * describe): from the end of the longest extent that is not busy, so taking
 * them seldom changes the number of free extents. When it does, the trees'
 * size changes, so it counts again until what it needs is what it has.
 */
function reserveFreeSpaceBtrees(ag: AllocGroup, free: ExtentBitmap, maxRounds = 20): { reserved: ExtentBitmap; bno: number; cnt: number } {
  const busy = ExtentBitmap.of(ag.busyExtents().map((b) => ({ start: b.startblock, len: b.blockcount })));
  const reserved = new ExtentBitmap();
  for (let round = 1; round <= maxRounds; round++) {
    const remaining = free.clone().subtractAll(reserved);
    const bno = stagedBtreeBlocks(ag, 'bno', remaining.count);
    const cnt = stagedBtreeBlocks(ag, 'cnt', remaining.count);
    const have = reserved.blocks;
    if (have === bno + cnt) return { reserved, bno, cnt };
    if (have > bno + cnt) {
      // Too many: the last ones go back.
      const last = reserved.at(reserved.count - 1);
      const back = Math.min(have - bno - cnt, last.len);
      reserved.subtract(last.start + last.len - back, back);
      continue;
    }
    const usable = remaining.subtractAll(busy);
    let best: Extent | null = null;
    usable.walk((start, len) => { if (best === null || len > best.len) best = { start, len }; });
    if (best === null) throw new RmapfsError('ENOSPC', `AG ${ag.agno}: no free block for the new free-space btrees`);
    const { start, len } = best as Extent;
    const take = Math.min(len, bno + cnt - have);
    reserved.add(start + len - take, take);
  }
  throw new RmapfsError('EAGAIN', `AG ${ag.agno}: the free-space btrees' reservation does not converge`);
}

/**
 * Inside the caller's transaction: both free-space btrees of AG ag loaded
 * with `free` into the reserved blocks (as many as stagedBtreeBlocks said
 * for free.count records each) and installed, and the header's free-block
 * and free-extent counts and longest extent set to match.
 */
export function installFreeSpaceBtrees(fs: Filesystem, ag: AllocGroup, free: ExtentBitmap, bnoBlocks: readonly number[],
  cntBlocks: readonly number[]): { records: number; longest: number } {
  const byBlock = free.extents();
  const bySize = [...byBlock].sort((a, b) => a.len - b.len || a.start - b.start);
  installStagedBtree(fs, ag, 'bno', byBlock.length, extentSource(byBlock), bnoBlocks);
  installStagedBtree(fs, ag, 'cnt', bySize.length, extentSource(bySize), cntBlocks);
  const longest = bySize.length === 0 ? 0 : bySize[bySize.length - 1]!.len;
  const hdr = ag.header();
  hdr.data.writeUInt32BE(free.blocks, OFF_FREE_BLOCKS);
  hdr.data.writeUInt32BE(byBlock.length, OFF_FREE_EXTENTS);
  hdr.data.writeUInt32BE(longest, OFF_LONGEST);
  fs.cache.markDirty(hdr);
  return { records: byBlock.length, longest };
}

/** The commit: one transaction, the only pause. */
function commitFreeSpace(fsx: Rmapfs, agno: number, collector: UsedSpaceCollector): Omit<FreeSpaceRepairResult, 'scanMs' | 'rmapRecordsScanned' | 'liveUpdates'> {
  const fs = fsx.fs;
  const t0 = process.hrtime.bigint();
  const result = fs.run(() => {
    const ag = fs.alloc.ag(agno);
    // The old free-space btrees' blocks: "ag"-owned, but neither the rmap btree's nor on the free list.
    const keep = ExtentBitmap.of(agOwnedBlocks(ag, ['rmap']));
    const old = collector.agOwned.clone().subtractAll(keep);
    const free = collector.used.complement(ag.length);
    const { reserved, bno, cnt } = reserveFreeSpaceBtrees(ag, free);
    free.subtractAll(reserved);
    const blocks: number[] = [];
    reserved.walk((start, len) => { for (let i = 0; i < len; i++) blocks.push(start + i); });
    const { records, longest } = installFreeSpaceBtrees(fs, ag, free, blocks.slice(0, bno), blocks.slice(bno));
    // The free list back to its target from the new trees, before the rmap and the new trees grow below.
    ag.fixFreelist();
    // The new trees' blocks belong to "ag"; the old ones' go back to free space through the new trees.
    reserved.walk((start, len) => {
      rmapMap(ag.rmap, { startblock: start, blockcount: len, owner: OWN_AG, offset: 0, flags: 0 }, `AG ${agno} rmap`);
    });
    const oldBlocks = reapExtents(ag, old, { rmapOwner: OWN_AG });
    return { records, freeBlocks: free.blocks, longest, bnoBlocks: bno, cntBlocks: cnt, oldBlocks };
  });
  const commitPauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
  const ag = fs.alloc.ag(agno);
  ag.health.markHealthy('bnobt');
  ag.health.markHealthy('cntbt');
  // The reap may have given back enough to merge extents: the header says what the trees hold now.
  return { agno, ...result, freeBlocks: ag.freeBlocks, longest: ag.longestFree, commitPauseMs };
}

/**
 * Rebuilds AG agno's free-space btrees online from its rmap (which must be
 * sound: it is the source). On failure the old trees stay in place.
 */
export async function repairFreeSpace(fsx: Rmapfs, agno: number, options: PacedRepairOptions = {}): Promise<FreeSpaceRepairResult> {
  fsx.fs.alloc.ag(agno); // an AG that does not exist fails here
  const t0 = process.hrtime.bigint();
  const collector = new UsedSpaceCollector(fsx, agno);
  try {
    await collector.collect(options);
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // Nothing runs between here and the commit: the hook has nothing more to hear.
    collector.close();
    const r = commitFreeSpace(fsx, agno, collector);
    log('AG %d: free-space btrees rebuilt: %d extents, %d free blocks, %d+%d blocks (old %d); scan %d ms, pause %d ms',
      agno, r.records, r.freeBlocks, r.bnoBlocks, r.cntBlocks, r.oldBlocks, Math.round(scanMs), r.commitPauseMs.toFixed(1));
    return { ...r, rmapRecordsScanned: collector.recordsScanned, liveUpdates: collector.liveUpdates, scanMs };
  } finally {
    collector.close();
  }
}
