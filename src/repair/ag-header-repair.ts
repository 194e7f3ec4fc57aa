/**
 * The small repairers (the method of XFS's fs/xfs/scrub/agheader_repair.c and
 * fscounters_repair.c): what lives in an AG's first two blocks -- its copy of
 * the superblock, its header and its free list -- and the header counts the
 * summary counters (statfs) are made of. Each is recomputed from structures
 * known good and written by ONE transaction, built and committed in one
 * synchronous turn of the event loop: no FUSE request runs in between, so
 * counts taken from the btrees and written to the header agree even while
 * writers run (their transactions come before or after, whole).
 *
 * - secondary-sb: AG agno's block 0 rewritten from the primary superblock,
 *   with what a copy has of its own as mkfs writes it (its block number;
 *   clean, no root inode, never mounted);
 * - agh: the header's roots, heights, block and record counts, free-space
 *   totals and inode counts recomputed by walking the trees; a root that is
 *   impossible (out of the AG, not a block of that tree, at the wrong level)
 *   is found from the rmap -- the tree owner's blocks whose header says the
 *   highest level -- as XFS does. The rmap's own root is the rmap repair's.
 * - agfl: the free list rebuilt from the rmap: the "ag" owner's blocks that
 *   are in no free-space or rmap btree (collected in paced slices, kept
 *   current by the live rmap hook), refilled to its target; what does not
 *   fit goes back to free space;
 * - counters: every AG header's free-extent, inode and free-inode counts
 *   recomputed from its free-space and inode btrees.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { Btree } from '../btree/btree';
import { OFF_LEVEL, OFF_NUMRECS } from '../btree/btree-block';
import { OFF_BLKNO, OFF_CRC, OFF_LSN, OFF_MAGIC, readU64, stampMetaHeader, writeU64 } from '../io/meta-header';
import { readField } from '../format/fields';
import type { Field } from '../format/fields';
import {
  AG_HEADER_FIELDS, AGFL_SIZE, AGH_AGBNO, AGH_MAGIC, OFF_AG_BLOCKS, OFF_AGFL, OFF_AGFL_COUNT, OFF_AGNO,
  OFF_FREE_BLOCKS, OFF_FREE_EXTENTS, OFF_FREE_INODES, OFF_INODE_COUNT, OFF_LONGEST, SLOT_BLOCKS, SLOT_HEIGHT,
  SLOT_RECORDS, SLOT_ROOT, agHeaderBufOps, slotOffset,
} from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import { STATE_CLEAN, SUPERBLOCK_FIELDS, decodeSuperblock, encodeSuperblock, superblockBufOps } from '../format/superblock';
import { OWN_AG, OWN_FS, OWN_INOBT } from '../format/owners';
import { decodeFreeExtent } from '../alloc/alloc-btree';
import { decodeInobt, INODES_PER_CHUNK } from '../alloc/inode-btree';
import type { AllocGroup } from '../alloc/ag';
import { decodeRmapOwner } from '../rmap/rmap-btree';
import type { Rmapfs } from '../fs/rmapfs';
import type { PacedRepairOptions } from './paced-repair';
import { ExtentBitmap } from './bitmap';
import { UsedSpaceCollector } from './free-space-repair';
import { reapExtents } from './reap';

const log = createDebug('rmapfs:repair');

/** The structures these repairers rebuild. */
export type HeaderStructure = 'secondary-sb' | 'agh' | 'agfl' | 'counters';

/** What one of them did to one object (an AG's, or the filesystem's: agno -1). */
export interface HeaderRepairResult {
  type: HeaderStructure;
  agno: number;
  /** What it changed: field names (or a phrase); empty when what was there was right after all. */
  fixed: string[];
  commitPauseMs: number;
}

/** Runs `commit` as one transaction and times it: the repair's only pause. */
function timedCommit(fsx: Rmapfs, commit: () => string[]): { fixed: string[]; commitPauseMs: number } {
  const t0 = process.hrtime.bigint();
  const fixed = fsx.fs.run(commit);
  return { fixed, commitPauseMs: Number(process.hrtime.bigint() - t0) / 1e6 };
}

/** The fields of `fields` that differ between two images of a block (the crc and lsn follow the rest). */
function changedFields(fields: readonly Field[], before: Buffer, after: Buffer): string[] {
  return fields.filter((f) => f.offset !== OFF_CRC && f.offset !== OFF_LSN && readField(before, 0, f) !== readField(after, 0, f))
    .map((f) => f.name);
}

// ---- secondary superblocks -------------------------------------------------

/** AG agno's copy of the superblock, rewritten from the primary. */
export function repairSecondarySuperblock(fsx: Rmapfs, agno: number): HeaderRepairResult {
  const fs = fsx.fs;
  if (agno === 0) return { type: 'secondary-sb', agno, fixed: [], commitPauseMs: 0 };
  const ops = superblockBufOps(fs.geo.uuid);
  const done = timedCommit(fsx, () => {
    const primary = fs.cache.read(0, ops).data;
    const bno = fs.geo.agStart(agno);
    // The copy as it is, unverified (it may not even be a superblock now), to say what changed.
    const before = Buffer.from(fs.cache.read(bno, null).data);
    const copy = fs.cache.get(bno, ops);
    primary.copy(copy.data);
    writeU64(copy.data, OFF_BLKNO, bno);
    // What a copy has of its own is what mkfs gives every copy: it is never updated after (the primary
    // alone says whether the filesystem is mounted, how often, and where its root is).
    const sb = decodeSuperblock(primary);
    encodeSuperblock({ ...sb, state: STATE_CLEAN, rootIno: 0, writtenSec: sb.createdSec, mountCount: 0 }, copy.data);
    fs.cache.markDirty(copy);
    return changedFields(SUPERBLOCK_FIELDS, before, copy.data);
  });
  log('AG %d: secondary superblock rewritten (%s)', agno, done.fixed.join(', '));
  return { type: 'secondary-sb', agno, ...done };
}

// ---- the AG header ---------------------------------------------------------

function treeOf(ag: AllocGroup, name: AgBtreeName): Btree {
  return name === 'bno' ? ag.bno : name === 'cnt' ? ag.cnt : name === 'rmap' ? ag.rmap : ag.ino;
}

/** The level of the block at ptr if it is a block of `tree` (its magic and own block number), else null. */
function treeBlockLevel(ag: AllocGroup, tree: Btree, ptr: number): number | null {
  if (ptr < 2 || ptr >= ag.length) return null;
  const b = ag.cache.read(ag.start + ptr, null).data;
  if (b.readUInt32BE(OFF_MAGIC) !== tree.ops.magic || readU64(b, OFF_BLKNO) !== ag.start + ptr) return null;
  return b.readUInt16BE(OFF_LEVEL);
}

/**
 * The root of `name` found from the rmap: of its owner's blocks ("ag" for the
 * free-space btrees, "inobt" for the inode btree), the one of that tree with
 * the highest level; two at that level cannot be told apart.
 */
function findRootFromRmap(ag: AllocGroup, name: AgBtreeName): { ptr: number; height: number } {
  const owner = name === 'ino' ? OWN_INOBT : OWN_AG;
  const tree = treeOf(ag, name);
  let best: { ptr: number; level: number; twins: number } | null = null;
  ag.rmap.forEach((b, off) => {
    if (decodeRmapOwner(b, off) !== owner) return;
    const start = b.readUInt32BE(off);
    const len = b.readUInt32BE(off + 4);
    for (let ptr = start; ptr < start + len; ptr++) {
      const level = treeBlockLevel(ag, tree, ptr);
      if (level === null) continue;
      if (best === null || level > best.level) best = { ptr, level, twins: 0 };
      else if (level === best.level) best.twins++;
    }
  });
  const found = best as { ptr: number; level: number; twins: number } | null;
  if (found === null) throw new RmapfsError('EFSCORRUPTED', `AG ${ag.agno}: no ${tree.ops.name} btree block is mapped in the rmap`);
  if (found.twins > 0) throw new RmapfsError('EFSCORRUPTED', `AG ${ag.agno}: ${found.twins + 1} ${tree.ops.name} btree blocks claim to be its root`);
  return { ptr: found.ptr, height: found.level + 1 };
}

/** A tree's blocks and leaf records, walked from the root the header now names. */
function countTree(tree: Btree): { blocks: number; records: number } {
  let blocks = 0;
  let records = 0;
  tree.visitBlocks((_ptr, level, block) => {
    blocks++;
    if (level === 0) records += block.readUInt16BE(OFF_NUMRECS);
  });
  return { blocks, records };
}

/**
 * The counts statfs sums and the allocator steers by, from the trees: free
 * blocks, free extents and the longest (bnobt), inodes and free inodes (inobt).
 */
function writeSummaryCounts(ag: AllocGroup, h: Buffer): void {
  let freeBlocks = 0;
  let freeExtents = 0;
  let longest = 0;
  ag.bno.forEach((b, off) => {
    const e = decodeFreeExtent(b, off);
    freeBlocks += e.blockcount;
    freeExtents++;
    longest = Math.max(longest, e.blockcount);
  });
  let inodes = 0;
  let freeInodes = 0;
  ag.ino.forEach((b, off) => {
    inodes += INODES_PER_CHUNK;
    freeInodes += decodeInobt(b, off).freecount;
  });
  h.writeUInt32BE(freeBlocks, OFF_FREE_BLOCKS);
  h.writeUInt32BE(freeExtents, OFF_FREE_EXTENTS);
  h.writeUInt32BE(longest, OFF_LONGEST);
  h.writeUInt32BE(inodes, OFF_INODE_COUNT);
  h.writeUInt32BE(freeInodes, OFF_FREE_INODES);
}

/** AG agno's header recomputed from its btrees (and the rmap, for a root it cannot trust). */
export function repairAgHeader(fsx: Rmapfs, agno: number): HeaderRepairResult {
  const fs = fsx.fs;
  const ag = fs.alloc.ag(agno);
  const done = timedCommit(fsx, () => {
    const bno = ag.start + AGH_AGBNO;
    // Read as it is: a header whose verifier fails is what this repair is for.
    const buf = fs.cache.read(bno, null);
    const h = buf.data;
    const before = Buffer.from(h);
    stampMetaHeader(h, AGH_MAGIC, bno, fs.geo.uuid, OWN_FS);
    h.writeUInt32BE(agno, OFF_AGNO);
    h.writeUInt32BE(ag.length, OFF_AG_BLOCKS);
    // A free list count past its size: none of its entries can be trusted; the list is rebuilt from the
    // rmap below, once the trees are known.
    const agflCount = h.readUInt32BE(OFF_AGFL_COUNT);
    const agflImpossible = agflCount > AGFL_SIZE;
    if (agflImpossible) {
      h.fill(0, OFF_AGFL, OFF_AGFL + 4 * AGFL_SIZE);
      h.writeUInt32BE(0, OFF_AGFL_COUNT);
    }
    // From now on the AG reads this buffer as its header (dirty: not verified again until written).
    buf.ops = agHeaderBufOps(fs.geo.uuid, agno, ag.length);
    fs.cache.markDirty(buf);
    // The rmap first: the others' roots may have to be found from it.
    for (const name of ['rmap', 'bno', 'cnt', 'ino'] as const) {
      const tree = treeOf(ag, name);
      const slot = slotOffset(name);
      const root = h.readUInt32BE(slot + SLOT_ROOT);
      const level = treeBlockLevel(ag, tree, root);
      if (level !== null) {
        h.writeUInt32BE(level + 1, slot + SLOT_HEIGHT);
      } else {
        if (name === 'rmap') throw new RmapfsError('EFSCORRUPTED', `AG ${agno}: the rmap btree's root ${root} is not an rmap block; repair rmapbt first`);
        const found = findRootFromRmap(ag, name);
        h.writeUInt32BE(found.ptr, slot + SLOT_ROOT);
        h.writeUInt32BE(found.height, slot + SLOT_HEIGHT);
      }
      const counted = countTree(tree);
      h.writeUInt32BE(counted.blocks, slot + SLOT_BLOCKS);
      h.writeUInt32BE(counted.records, slot + SLOT_RECORDS);
    }
    writeSummaryCounts(ag, h);
    fs.cache.markDirty(buf);
    const fixed = changedFields(AG_HEADER_FIELDS, before, h).filter((f) => f !== 'agflCount');
    // (Its refill changes the free-space counts the list was counted with: they stay right, allocation keeps them.)
    if (agflImpossible) fixed.push(`free list (count ${agflCount}): ${installFreeList(ag, agOwnedFromRmap(ag)).join(', ')}`);
    return fixed;
  });
  ag.health.markHealthy('agh');
  log('AG %d: header recomputed (%s)', agno, done.fixed.join(', '));
  return { type: 'agh', agno, ...done };
}

// ---- the free list -------------------------------------------------------------

/**
 * Inside the caller's transaction: the free list made of `agOwned` (the "ag"
 * owner's blocks as the rmap says) minus the free-space and rmap btrees'
 * blocks. Its entries that are among them keep their places, the others
 * join up to the list's size, the rest go back to free space; then it is
 * refilled (or trimmed) to its target. What it changed.
 */
function installFreeList(ag: AllocGroup, agOwned: ExtentBitmap): string[] {
  const candidates = agOwned;
  for (const name of ['bno', 'cnt', 'rmap'] as const) treeOf(ag, name).visitBlocks((ptr) => { candidates.subtract(ptr, 1); });
  const old = ag.agflBlocks();
  const list: number[] = [];
  for (const b of old) if (candidates.has(b) && !list.includes(b)) list.push(b);
  candidates.walk((start, len) => {
    for (let b = start; b < start + len && list.length < AGFL_SIZE; b++) if (!list.includes(b)) list.push(b);
  });
  const leftover = candidates.clone();
  for (const b of list) leftover.subtract(b, 1);
  const hdr = ag.header();
  hdr.data.fill(0, OFF_AGFL, OFF_AGFL + 4 * AGFL_SIZE);
  list.forEach((b, i) => hdr.data.writeUInt32BE(b, OFF_AGFL + 4 * i));
  hdr.data.writeUInt32BE(list.length, OFF_AGFL_COUNT);
  ag.cache.markDirty(hdr);
  const dropped = old.filter((b) => !list.includes(b)).length;
  const added = list.filter((b) => !old.includes(b)).length;
  const given = reapExtents(ag, leftover, { rmapOwner: OWN_AG });
  ag.fixFreelist();
  const fixed: string[] = [];
  if (dropped > 0) fixed.push(`${dropped} wrong entries dropped`);
  if (added > 0) fixed.push(`${added} blocks recovered from the rmap`);
  if (given > 0) fixed.push(`${given} blocks given back to free space`);
  if (fixed.length > 0) fixed.push(`${ag.agflCount} blocks now`);
  return fixed;
}

/** The "ag" owner's blocks, from a walk of the whole rmap in one go (the header repair's fallback). */
function agOwnedFromRmap(ag: AllocGroup): ExtentBitmap {
  const owned = new ExtentBitmap();
  ag.rmap.forEach((b, off) => { if (decodeRmapOwner(b, off) === OWN_AG) owned.add(b.readUInt32BE(off), b.readUInt32BE(off + 4)); });
  return owned;
}

/**
 * AG agno's free list rebuilt from its rmap, online: collect the "ag"
 * owner's blocks in paced slices, then in one transaction take out the
 * blocks of the free-space and rmap btrees; what is left is the free list's.
 * Its entries that are among them keep their places, the others join up to
 * the list's size, the rest go back to free space; then it is refilled (or
 * trimmed) to its target.
 */
export async function repairFreeList(fsx: Rmapfs, agno: number, options: PacedRepairOptions = {}): Promise<HeaderRepairResult> {
  const fs = fsx.fs;
  const ag = fs.alloc.ag(agno);
  const collector = new UsedSpaceCollector(fsx, agno);
  try {
    await collector.collect(options);
    // Nothing runs between here and the commit: the hook has nothing more to hear.
    collector.close();
    const done = timedCommit(fsx, () => installFreeList(ag, collector.agOwned.clone()));
    ag.health.markHealthy('agfl');
    log('AG %d: free list rebuilt (%s)', agno, done.fixed.join(', '));
    return { type: 'agfl', agno, ...done };
  } finally {
    collector.close();
  }
}

// ---- summary counters ----------------------------------------------------------

/**
 * The summary counters: each AG header's free-extent, inode and free-inode
 * counts (what statfs sums) recomputed from its btrees, every AG in one
 * transaction (one turn: a consistent total while writers run).
 */
export function repairSummaryCounters(fsx: Rmapfs): HeaderRepairResult {
  const fs = fsx.fs;
  const counted: readonly Field[] = AG_HEADER_FIELDS.filter((f) => [OFF_FREE_EXTENTS, OFF_INODE_COUNT, OFF_FREE_INODES].includes(f.offset));
  const done = timedCommit(fsx, () => {
    const fixed: string[] = [];
    for (const ag of fs.alloc.ags) {
      const hdr = ag.header();
      const before = Buffer.from(hdr.data);
      writeSummaryCounts(ag, hdr.data);
      fs.cache.markDirty(hdr);
      for (const f of changedFields(counted, before, hdr.data)) fixed.push(`AG ${ag.agno} ${f}`);
    }
    return fixed;
  });
  fs.alloc.fsHealth.markHealthy('counters');
  log('summary counters recomputed (%s)', done.fixed.join(', '));
  return { type: 'counters', agno: -1, ...done };
}
