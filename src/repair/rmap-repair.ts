/**
 * Online repair of one AG's rmap btree: collect the records it should hold
 * (RmapCollector, while the filesystem stays in use), then -- in one
 * synchronous transaction, the only pause -- give the old btree's blocks
 * back, reserve blocks for the new one until the reservation converges,
 * bulk-load it, and install its root in the AG header. Until that
 * transaction commits the old btree is the one in use; after it, the new.
 */
import createDebug from 'debug';
import type { RmapBuilt } from '../rmap/rmap-digest';
import { RmapfsError } from '../errors';
import { computeBulkLoadGeometry } from '../btree/bulk-load';
import { OWN_AG } from '../format/owners';
import { agOwnedBlocks } from '../alloc/ag-owners';
import { ExtentBitmap } from './bitmap';
import type { Extent } from './bitmap';
import { installStagedBtree } from './staged-btree';
import { reachableBlocks, reapExtents } from './reap';
import { installFreeSpaceBtrees } from './free-space-repair';
import type { FreeSpaceRepairResult } from './free-space-repair';
import { encodeRmap } from '../rmap/rmap-btree';
import type { RmapRecord } from '../rmap/rmap-btree';
import type { Rmapfs } from '../fs/rmapfs';
import type { MemBtree, FlatLeaves } from '../btree/mem-btree';
export type { Extent } from './bitmap';
import type { RecordSource } from '../btree/bulk-load';
import { BTREE_HDR_SIZE } from '../btree/btree-block';
import type { AllocGroup } from '../alloc/ag';
import { RmapCollector } from './rmap-collect';
import { Pacer } from '../io/pacer';
import type { PacerOptions } from '../io/pacer';
import type { CollectOptions, SickFork } from './rmap-collect';

const log = createDebug('rmapfs:repair');

export interface RmapRepairResult {
  agno: number;
  records: number;
  blocks: number;
  oldBlocks: number;
  inodesScanned: number;
  scanMs: number;
  /** Time of the bulk load alone (part of the commit pause). */
  loadMs: number;
  commitPauseMs: number;
  xfileBytes: number;
  /**
   * The JS heap when every AG was collected minus before the scan: after a
   * forced GC when asked to measure it (RepairOptions.measureHeap) and the
   * process runs with --expose-gc (the daemon does), else without one (then
   * an upper bound).
   */
  heapGrowthMib: number;
  /**
   * The forks whose impossible mappings the scan left out (rmap-collect.ts):
   * the scan's, so on the first AG's result only.
   */
  sickForks: SickFork[];
  /** The AG's free-space btrees, when they were rebuilt with it (RepairOptions.freeSpaceToo). */
  freeSpace?: FreeSpaceRepairResult;
}

/**
 * The AG's blocks that are neither free nor covered by the collected records
 * nor held by the free-space btrees and the free list: the old rmap btree's.
 */
function unaccounted(ag: AllocGroup, collected: FlatLeaves): ExtentBitmap {
  const small = new ExtentBitmap();
  const add = (start: number, len: number): void => {
    // The free space, the free list and the free-space btrees' blocks must not overlap (see take below).
    if (small.overlaps(start, len)) throw bothFreeAndUsed(ag.agno, start);
    small.add(start, len);
  };
  ag.bno.forEach((b, off) => { add(b.readUInt32BE(off), b.readUInt32BE(off + 4)); });
  for (const e of agOwnedBlocks(ag, ['bno', 'cnt'])) add(e.start, e.len);
  const out = new ExtentBitmap();
  let at = 0;
  const take = (start: number, len: number): void => {
    // The free space, the free list and what the files and metadata hold must not overlap: when they do,
    // one of them is damaged (the pre-repair check looks for the first two) and no rmap can be built.
    if (start < at) throw bothFreeAndUsed(ag.agno, start);
    if (start > at) out.add(at, start - at);
    at = start + len;
  };
  const smallList = small.extents();
  // Both streams are in block order: merge them, the collected records straight from the xfile's leaves.
  let i = 0;
  const { data, leafOffsets, leafCounts } = collected;
  const recSize = ag.rmap.ops.recSize;
  for (let k = 0; k < leafOffsets.length; k++) {
    for (let r = 0, off = leafOffsets[k]! + BTREE_HDR_SIZE; r < leafCounts[k]!; r++, off += recSize) {
      const start = data.readUInt32BE(off);
      while (i < smallList.length && smallList[i]!.start < start) { const e = smallList[i++]!; take(e.start, e.len); }
      take(start, data.readUInt32BE(off + 4));
    }
  }
  while (i < smallList.length) { const e = smallList[i++]!; take(e.start, e.len); }
  if (at < ag.length) out.add(at, ag.length - at);
  return out;
}

function bothFreeAndUsed(agno: number, start: number): RmapfsError {
  return new RmapfsError('EFSCORRUPTED', `AG ${agno}: block ${start} is both free (or on the free list) and in use, `
    + 'or in use twice; rmapfs cannot tell which is right');
}

/**
 * The new btree's records in block order, as a bulk-load source: the
 * collected ones copied a run at a time from the xfile's leaves (the
 * in-memory btree keeps the on-disk record format), the "ag" owner's
 * records merged in where they fall.
 */
function mergedRecords(collected: FlatLeaves, agRecs: readonly RmapRecord[], recSize: number, agno: number): RecordSource {
  const { data, leafOffsets, leafCounts } = collected;
  let leaf = 0;
  let r = 0;
  let a = 0;
  const fail = (): never => { throw new RmapfsError('EIO', `AG ${agno}: fewer records than counted`); };
  const skipEmpty = (): void => { while (leaf < leafOffsets.length && r >= leafCounts[leaf]!) { leaf++; r = 0; } };
  const recAt = (): number => leafOffsets[leaf]! + BTREE_HDR_SIZE + r * recSize;
  const source: RecordSource = {
    next: (dst, off) => { source.nextRun!(dst, off, 1); },
    nextRun: (dst, off, max) => {
      skipEmpty();
      const haveCollected = leaf < leafOffsets.length;
      if (a < agRecs.length && (!haveCollected || agRecs[a]!.startblock < data.readUInt32BE(recAt()))) {
        encodeRmap(agRecs[a++]!, dst, off);
        return 1;
      }
      if (!haveCollected) return fail();
      // A run from this leaf: up to max, to the leaf's end, and to the next "ag" record.
      const from = recAt();
      let n = Math.min(max, leafCounts[leaf]! - r);
      if (a < agRecs.length) {
        const below = agRecs[a]!.startblock;
        let k = 1;
        while (k < n && data.readUInt32BE(from + k * recSize) < below) k++;
        n = k;
      }
      data.copy(dst, off, from, from + n * recSize);
      r += n;
      return n;
    },
  };
  return source;
}

/**
 * Memory for the pause, made ready before it. The commit copies the
 * collected records flat out of the xfile (MemBtree.flatLeaves) and builds
 * the new btree in one buffer (bulkLoad's arena): megabytes written inside
 * the pause. Fresh memory costs a page fault on its first write to each
 * 4 KiB page -- on a virtual machine, where the host backs guest memory
 * lazily, ~10 us a page, most of the pause at 1M records. So, after the scan
 * and in paced slices (foreground requests served between): the xfiles'
 * dirty cached pages are written back (the commit reads the xfile, and
 * writing 10 MiB of new xfile pages is the same cost again), then both
 * buffers are allocated once and every page of them written; every AG's
 * commit reuses them. Sized from the largest xfile, with room for it to
 * grow by live updates before the commit; a commit that needs more
 * allocates afresh (correct, only slower).
 */
interface PauseScratch {
  flat: Buffer;
  arena: Buffer;
}

const PAGE = 4096;

async function prepareCommits(mems: readonly MemBtree[], options: PacerOptions): Promise<PauseScratch> {
  const pacer = new Pacer(options);
  for (const mem of mems) {
    for (const buf of mem.cache.dirtyBlocks()) {
      mem.cache.writeBack(buf); // a no-op for one cleaned or dropped meanwhile
      if (pacer.due()) await pacer.pause();
    }
  }
  const largest = mems.reduce((n, m) => Math.max(n, m.xfile.size), 0);
  // Room for live updates, and for the "ag" owner's records the new btree adds (a few blocks' worth).
  const bytes = Math.ceil((largest * 1.125 + 64 * PAGE) / PAGE) * PAGE;
  const flat = Buffer.allocUnsafeSlow(bytes);
  // The new btree packs its leaves full, the xfile's are at least half full: it needs no more blocks
  // than the xfile has pages.
  const arena = Buffer.allocUnsafeSlow(bytes);
  for (const buf of [flat, arena]) {
    for (let off = 0; off < buf.length; off += PAGE) {
      buf[off] = 0;
      if (pacer.due()) await pacer.pause();
    }
  }
  return { flat, arena };
}

/** heapUsed, after a full GC when asked and one can be forced. */
function heapUsed(forceGc: boolean): number {
  if (forceGc) (globalThis as { gc?: () => void }).gc?.();
  return process.memoryUsage().heapUsed;
}

/** A reservation for a new rmap btree: the blocks, and the record count they were sized for. */
export interface RmapReservation {
  extents: Extent[];
  /** Records the new btree will hold: the collected ones plus one per "ag" extent (reserved blocks included). */
  records: number;
  /** The "ag" owner's extents it was sized for (reserved blocks included), merged, in block order. */
  agExtents: Extent[];
  blocks: number;
  /** Rounds it took to converge. */
  rounds: number;
}

/** The AG's "ag"-owned extents now (free-space btree blocks, free list) plus `extra`, merged. */
export function agOwnedExtents(ag: AllocGroup, extra: readonly Extent[] = []): Extent[] {
  return ExtentBitmap.of([...extra, ...agOwnedBlocks(ag, ['bno', 'cnt'])]).extents();
}

/**
 * Reserves free blocks in the AG for a new rmap btree holding `otherRecords`
 * records plus the "ag" owner's. Reserving changes what it reserves for:
 * the reserved blocks are "ag"-owned extents (records of their own, unless
 * they merge with a neighbour), and taking free space can reshape the
 * free-space btrees and the free list. So it iterates: count, size the tree,
 * take or give back blocks, count again -- until the size it needs is the
 * size it has. Must run inside a transaction (the caller's commit). At most
 * `budget` blocks in all (Allocator.repairBudget: not the reserve pool's).
 */
export function reserveRmapBtree(ag: AllocGroup, otherRecords: number, budget = Infinity, maxRounds = 20): RmapReservation {
  const reserved: Extent[] = [];
  for (let round = 1; ; round++) {
    if (round > maxRounds) throw new RmapfsError('EAGAIN', `AG ${ag.agno}: the rmap btree reservation does not converge`);
    const agExtents = agOwnedExtents(ag, reserved);
    const records = otherRecords + agExtents.length;
    const need = computeBulkLoadGeometry(ag.rmap, records, 1).totalBlocks;
    const have = reserved.reduce((n, e) => n + e.len, 0);
    if (have === need) return { extents: reserved, records, agExtents, blocks: need, rounds: round };
    if (have > need) {
      // Too many: give the last ones back and count again.
      const last = reserved[reserved.length - 1]!;
      const back = Math.min(have - need, last.len);
      last.len -= back;
      if (last.len === 0) reserved.pop();
      ag.giveFree(last.start + last.len, back);
      continue;
    }
    const found = need > budget ? null : ag.findFree({ minLen: 1, maxLen: need - have, goal: null });
    if (found === null) throw new RmapfsError('ENOSPC', `AG ${ag.agno}: no space for a new rmap btree of ${need} blocks`);
    ag.takeFree(found.startblock, found.blockcount);
    reserved.push({ start: found.startblock, len: found.blockcount });
  }
}

export interface RepairOptions extends CollectOptions {
  /**
   * Measure the heap growth after forced full GCs (default true; with
   * --expose-gc): two pauses of tens of ms on the daemon's thread, so the
   * daemon asks for it only when the client shows the figure (--json).
   */
  measureHeap?: boolean;
  /** Told when an AG's commit starts and ends (the daemon relays it as progress). */
  onCommit?: (agno: number, done: boolean) => void;
  /** Told, after an AG's commit, what its rmap was built from and holds when that is known (offline: rmap-digest.ts). */
  onRmapBuilt?: (agno: number, built: RmapBuilt) => void;
  /**
   * AGs whose free-space btrees are damaged too (heavy damage; the offline
   * repair only, with nothing else using the filesystem): the commit cannot
   * read the old rmap's blocks or take the new ones through them, so it
   * rebuilds all three trees at once from the scan (commitRmapAndFreeSpace).
   */
  freeSpaceToo?: readonly number[];
}

/**
 * The second half, for one AG: in one synchronous transaction -- the only
 * pause -- give the old btree's blocks back, reserve blocks for the new one,
 * bulk-load the collected records into them and install its root.
 */
function commitNewRmap(fsx: Rmapfs, agno: number, mem: MemBtree, scratch: PauseScratch): Omit<RmapRepairResult, 'inodesScanned' | 'scanMs' | 'xfileBytes' | 'heapGrowthMib' | 'sickForks'> {
  const fs = fsx.fs;
  const ag = fs.alloc.ag(agno);
  const t1 = process.hrtime.bigint();
  const phases: Record<string, number> = {};
  let lapAt = t1;
  const lap = (name: string): void => {
    const now = process.hrtime.bigint();
    phases[name] = Number(now - lapAt) / 1e6;
    lapAt = now;
  };
  let loadMs = 0;
  // The records of every owner but "ag" come from the collection (which holds no "ag" records: those
  // are redone from the AG as it is now), read once, flat, for the three walks below.
  const collected = mem.flatLeaves(scratch.flat);
  const othersCount = collected.records;
  let oldBlocks = 0;
  lap('read');
  const result = fs.run(() => {
    // 1. The old btree's blocks go back to free space (busy until a checkpoint, like any freed metadata).
    //    The old tree may be unreadable, so they are found the way XFS finds them: every block that is
    //    neither free nor accounted for by the new records is the old rmap btree's.
    oldBlocks = reapExtents(ag, unaccounted(ag, collected));
    lap('reap');
    // 2. Reserve blocks for the new btree.
    const reservation = reserveRmapBtree(ag, othersCount, fs.alloc.repairBudget());
    const records = reservation.records;
    lap('reserve');
    // 3. Bulk-load the records, in block order: the collected ones (copied as they are from the xfile
    //    btree's leaves -- the in-memory btree uses the on-disk record format) and the "ag" extents, merged.
    const agRecs: RmapRecord[] = reservation.agExtents
      .map((e) => ({ startblock: e.start, blockcount: e.len, owner: OWN_AG, offset: 0, flags: 0 }));
    const blocks: number[] = [];
    for (const e of reservation.extents) for (let i = 0; i < e.len; i++) blocks.push(e.start + i);
    const source = mergedRecords(collected, agRecs, ag.rmap.ops.recSize, agno);
    // 4. Built outside the cache (one buffer, no cache traffic in the pause), written in place (ordered, not
    //    logged: staged-btree.ts says why that is crash-safe), and installed -- root, height, counts -- in
    //    this transaction.
    const installed = installStagedBtree(fs, ag, 'rmap', records, source, blocks, scratch.arena);
    loadMs = installed.loadMs;
    lap('load+write');
    return { records, blocks: installed.blocks };
  });
  lap('commit');
  const commitPauseMs = Number(process.hrtime.bigint() - t1) / 1e6;
  log('AG %d: commit pause %d ms, phases (ms): %o', agno, Math.round(commitPauseMs), phases);
  return { agno, records: result.records, blocks: result.blocks, oldBlocks, loadMs, commitPauseMs };
}

/** The blocks the collected records cover (read in block order, straight from the xfile's leaves). */
function collectedBlocks(collected: FlatLeaves, recSize: number): ExtentBitmap {
  const used = new ExtentBitmap();
  const { data, leafOffsets, leafCounts } = collected;
  for (let k = 0; k < leafOffsets.length; k++) {
    for (let r = 0, off = leafOffsets[k]! + BTREE_HDR_SIZE; r < leafCounts[k]!; r++, off += recSize) {
      used.add(data.readUInt32BE(off), data.readUInt32BE(off + 4));
    }
  }
  return used;
}

/** Blocks of the three new trees of commitRmapAndFreeSpace, in the order the reservation gives them out. */
interface SpaceReservation {
  reserved: ExtentBitmap;
  bno: number;
  cnt: number;
  rmap: number;
  /** The free space the new free-space btrees hold: what was free minus the reserved blocks. */
  free: ExtentBitmap;
  /** The "ag" owner's extents the new rmap holds: the reserved blocks and the free list, merged. */
  agExtents: Extent[];
}

/**
 * Blocks for new rmap, bno and cnt btrees out of `free` (and off `avoid`):
 * each tree's size depends on what the reservation takes -- the free
 * extents it splits or removes, the "ag" records it adds -- so it counts,
 * takes or gives back, and counts again until what all three need is what
 * it has (as reserveRmapBtree does for the rmap alone). Takes from the end
 * of the longest usable free extent, which seldom changes the count.
 */
function reserveSpaceBtrees(ag: AllocGroup, free: ExtentBitmap, freeList: ExtentBitmap, avoid: ExtentBitmap,
  otherRecords: number, maxRounds = 20): SpaceReservation {
  const reserved = new ExtentBitmap();
  for (let round = 1; round <= maxRounds; round++) {
    const remaining = free.clone().subtractAll(reserved);
    const agExtents = reserved.clone().union(freeList).extents();
    const bno = computeBulkLoadGeometry(ag.bno, remaining.count, 1).totalBlocks;
    const cnt = computeBulkLoadGeometry(ag.cnt, remaining.count, 1).totalBlocks;
    const rmap = computeBulkLoadGeometry(ag.rmap, otherRecords + agExtents.length, 1).totalBlocks;
    const need = bno + cnt + rmap;
    const have = reserved.blocks;
    if (have === need) return { reserved, bno, cnt, rmap, free: remaining, agExtents };
    if (have > need) {
      const last = reserved.at(reserved.count - 1);
      const back = Math.min(have - need, last.len);
      reserved.subtract(last.start + last.len - back, back);
      continue;
    }
    let best: Extent | null = null;
    remaining.subtractAll(avoid).walk((start, len) => { if (best === null || len > best.len) best = { start, len }; });
    if (best === null) throw new RmapfsError('ENOSPC', `AG ${ag.agno}: no free block for the new rmap and free-space btrees`);
    const { start, len } = best as Extent;
    const take = Math.min(len, need - have);
    reserved.add(start + len - take, take);
  }
  throw new RmapfsError('EAGAIN', `AG ${ag.agno}: the reservation for the rmap and free-space btrees does not converge`);
}

/**
 * The commit for an AG whose rmap AND free-space btrees are damaged (heavy
 * damage, offline): each is what the other is rebuilt from, so -- as
 * xfs_repair's phases 4 and 5 do -- the AG's space is computed, not read:
 * used = what the scan collected (every inode's forks, the static owners)
 * plus the free list; free = the rest of the AG, the old rmap, bno and cnt
 * blocks among it (no owner was found for them). The three new trees take
 * their blocks from that free space, and all three are installed in ONE
 * transaction. Crash-safe as the others: a checkpoint first (so no logged
 * image of an old block can be replayed over a new one), the new blocks
 * kept off every block the old trees still reach through nodes that verify
 * (a crash before the commit leaves them as readable as they were), and
 * those marked busy once free (not reused before the next checkpoint).
 */
function commitRmapAndFreeSpace(fsx: Rmapfs, agno: number, mem: MemBtree, scratch: PauseScratch, scanMs: number):
  Omit<RmapRepairResult, 'inodesScanned' | 'scanMs' | 'xfileBytes' | 'heapGrowthMib' | 'sickForks'> {
  const fs = fsx.fs;
  const collected = mem.flatLeaves(scratch.flat);
  fs.checkpoint();
  const t1 = process.hrtime.bigint();
  let loadMs = 0;
  const result = fs.run(() => {
    const ag = fs.alloc.ag(agno);
    const used = collectedBlocks(collected, ag.rmap.ops.recSize);
    const freeList = ExtentBitmap.of(ag.agflBlocks().map((b) => ({ start: b, len: 1 })));
    freeList.walk((start, len) => { if (used.overlaps(start, len)) throw bothFreeAndUsed(agno, start); });
    const free = used.union(freeList).complement(ag.length);
    // Old blocks that some owner holds after all are not the old trees' to free (a stale pointer).
    const oldRmap = reachableBlocks(ag.rmap).subtractAll(used);
    const oldFreeSpace = reachableBlocks(ag.bno).union(reachableBlocks(ag.cnt)).subtractAll(used);
    const old = oldRmap.clone().union(oldFreeSpace);
    const avoid = ExtentBitmap.of(ag.busyExtents().map((b) => ({ start: b.startblock, len: b.blockcount }))).union(old);
    const r = reserveSpaceBtrees(ag, free, freeList, avoid, collected.records);
    const blocks: number[] = [];
    r.reserved.walk((start, len) => { for (let i = 0; i < len; i++) blocks.push(start + i); });
    const { records: freeExtents, longest } = installFreeSpaceBtrees(fs, ag, r.free, blocks.slice(0, r.bno), blocks.slice(r.bno, r.bno + r.cnt));
    const agRecs: RmapRecord[] = r.agExtents.map((e) => ({ startblock: e.start, blockcount: e.len, owner: OWN_AG, offset: 0, flags: 0 }));
    const records = collected.records + agRecs.length;
    const installed = installStagedBtree(fs, ag, 'rmap', records, mergedRecords(collected, agRecs, ag.rmap.ops.recSize, agno),
      blocks.slice(r.bno + r.cnt), scratch.arena);
    loadMs = installed.loadMs;
    old.walk((start, len) => { ag.markBusy(start, len, true); });
    // The free list back to its target from the new trees (through the allocator: the rmap hears of it).
    ag.fixFreelist();
    return {
      records, blocks: installed.blocks, oldBlocks: oldRmap.blocks,
      freeSpace: { records: freeExtents, freeBlocks: r.free.blocks, longest, bnoBlocks: r.bno, cntBlocks: r.cnt, oldBlocks: oldFreeSpace.blocks },
    };
  });
  const commitPauseMs = Number(process.hrtime.bigint() - t1) / 1e6;
  const ag = fs.alloc.ag(agno);
  ag.health.markHealthy('bnobt');
  ag.health.markHealthy('cntbt');
  log('AG %d: rmap and free-space btrees rebuilt together from the scan: %d records, %d free extents; pause %d ms',
    agno, result.records, result.freeSpace.records, Math.round(commitPauseMs));
  return {
    agno, records: result.records, blocks: result.blocks, oldBlocks: result.oldBlocks, loadMs, commitPauseMs,
    freeSpace: {
      agno, ...result.freeSpace, freeBlocks: ag.freeBlocks, longest: ag.longestFree, rmapRecordsScanned: collected.records,
      liveUpdates: 0, scanMs, commitPauseMs, withRmap: true,
    },
  };
}

/**
 * Rebuilds the rmap btrees of the given AGs online: one inode scan collects
 * them all, then each AG commits in turn, the event loop running between the
 * commits (the AGs still waiting keep being updated by the live hook).
 * Stops before the next commit when cancelled; AGs already committed stay
 * repaired. On any failure the AGs not yet committed keep their old btrees.
 */
export async function repairRmaps(fsx: Rmapfs, agnos: readonly number[], options: RepairOptions = {}): Promise<RmapRepairResult[]> {
  const t0 = process.hrtime.bigint();
  const measureHeap = options.measureHeap ?? true;
  if ((options.freeSpaceToo?.length ?? 0) > 0 && options.unmounted !== true) {
    // The space is computed from the scan: nothing may allocate or free meanwhile.
    throw new RmapfsError('EINVAL', 'the rmap and free-space btrees are rebuilt together only on an unmounted filesystem');
  }
  const heapBefore = heapUsed(measureHeap);
  const collector = new RmapCollector(fsx, agnos);
  const results: RmapRepairResult[] = [];
  try {
    const collected = await collector.collect(options);
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // The most the repair holds is here, every AG collected and none committed yet.
    const heapGrowthMib = (heapUsed(measureHeap) - heapBefore) / 1048576;
    const scratch = await prepareCommits(agnos.map((agno) => collector.memOf(agno)), options);
    for (const agno of agnos) {
      if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of AG ${agno} cancelled before its commit`);
      collector.throwIfAborted();
      const mem = collector.memOf(agno);
      const xfileBytes = mem.bytesHeld();
      options.onCommit?.(agno, false);
      const r = options.freeSpaceToo?.includes(agno) === true ? commitRmapAndFreeSpace(fsx, agno, mem, scratch, scanMs)
        : commitNewRmap(fsx, agno, mem, scratch);
      const built = collector.builtOf(agno);
      collector.release(agno);
      options.onCommit?.(agno, true);
      if (built !== null) options.onRmapBuilt?.(agno, built);
      results.push({ ...r, inodesScanned: collected.inodesScanned, scanMs, xfileBytes,
        heapGrowthMib, sickForks: results.length === 0 ? collected.sickForks : [] });
      log('AG %d: rmap rebuilt: %d records in %d blocks (was %d blocks); scan %d ms, pause %d ms',
        agno, r.records, r.blocks, r.oldBlocks, Math.round(scanMs), Math.round(r.commitPauseMs));
      // Let foreground requests run between two AGs' pauses.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    return results;
  } finally {
    collector.close();
  }
}

/** Rebuilds one AG's rmap btree online (see repairRmaps). */
export async function repairRmap(fsx: Rmapfs, agno: number, options: RepairOptions = {}): Promise<RmapRepairResult> {
  return (await repairRmaps(fsx, [agno], options))[0]!;
}
