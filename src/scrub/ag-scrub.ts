/**
 * Checks of one AG's own metadata: the header, the structure of its four
 * btrees, the free-space btrees against each other and the header's
 * figures, and the coverage invariant -- every block of the AG is either
 * free in the free-space btrees or covered by exactly one rmap record, and
 * every piece of AG metadata is mapped to its proper owner.
 */
import { RmapfsError } from '../errors';
import type { AllocGroup } from '../alloc/ag';
import type { Btree } from '../btree/btree';
import { verifyBtreeSteps } from '../btree/verify';
import type { BtreeVerifyResult } from '../btree/verify';
import { decodeFreeExtent } from '../alloc/alloc-btree';
import { AG_BTREES, AGFL_SIZE, SLOT_BLOCKS, SLOT_RECORDS, slotOffset } from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import { isInodeOwner, OWN_AG, ownerName } from '../format/owners';
import { fixedOwners, inodeOwnerSteps } from '../alloc/ag-owners';
import type { OwnedExtent } from '../alloc/ag-owners';
import { decodeRmap, decodeRmapOwner } from '../rmap/rmap-btree';
import { CHUNK_BLOCKS, INODE_SIZE, INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';
import { decodeInobt, INODES_PER_CHUNK } from '../alloc/inode-btree';
import { INODE_MAGIC, OFF_I_INO, inodeBlockBufOps } from '../inode/inode-format';
import { readU64 } from '../io/meta-header';
import type { MappingDigest } from '../rmap/rmap-digest';
import { eachBlock, eachRecord, runToEnd } from './common';
import type { ProblemList, ScrubSteps } from './common';

/** Items of a whole-AG list (records, free extents) handled between two pauses. */
const LIST_STEP = 1024;

const TREE_STRUCTURE: Record<AgBtreeName, string> = { bno: 'bnobt', cnt: 'cntbt', rmap: 'rmap', ino: 'inobt' };

export interface AgScrubResult {
  /** Whether the btrees could be walked at all (a tree that cannot be read is not cross-referenced). */
  treesReadable: boolean;
  rmapRecords: number;
  freeExtents: number;
}

function treeOf(ag: AllocGroup, name: AgBtreeName): Btree {
  return name === 'bno' ? ag.bno : name === 'cnt' ? ag.cnt : name === 'rmap' ? ag.rmap : ag.ino;
}

export function scrubAg(ag: AllocGroup, geo: Geometry, problems: ProblemList): AgScrubResult {
  return runToEnd(scrubAgSteps(ag, geo, problems));
}

/**
 * The checks of everything an rmap repair of the AG relies on but does not
 * rebuild: the header, the free-space and inode btrees, the free list (the
 * rmap itself and the coverage walk are left out). Run before a repair, on
 * the live filesystem, in one go: these trees are small next to the rmap.
 */
export function scrubAgForRmapRepair(ag: AllocGroup, geo: Geometry, problems: ProblemList): AgScrubResult {
  return runToEnd(scrubAgSteps(ag, geo, problems, { withoutRmap: true }));
}

export interface AgScrubOptions {
  /** Leave the rmap and the coverage walk out (scrubAgForRmapRepair). */
  withoutRmap?: boolean;
  /** The file owners' records of the rmap, digested as the coverage walk streams them (rmap-digest.ts; the offline check). */
  fileRecords?: MappingDigest;
}

/** scrubAg, pausing after each btree block (see common.ts). */
export function* scrubAgSteps(ag: AllocGroup, geo: Geometry, problems: ProblemList,
  options: AgScrubOptions = {}): ScrubSteps<AgScrubResult> {
  const result: AgScrubResult = { treesReadable: true, rmapRecords: 0, freeExtents: 0 };
  const agno = ag.agno;
  let header: Buffer;
  try {
    header = ag.header().data;
  } catch (e) {
    problems.add('AG header', agno, ag.start + 1, e instanceof RmapfsError ? e.message : String(e));
    result.treesReadable = false;
    return result;
  }

  // 1. Each btree's structure, and the counts the header keeps for it.
  for (const name of AG_BTREES) {
    if (options.withoutRmap === true && name === 'rmap') continue;
    const tree = treeOf(ag, name);
    let v: BtreeVerifyResult;
    try {
      v = yield* verifyBtreeSteps(tree);
    } catch (e) {
      problems.add(TREE_STRUCTURE[name], agno, -1, e instanceof Error ? e.message : String(e));
      result.treesReadable = false;
      continue;
    }
    for (const p of v.problems) problems.add(TREE_STRUCTURE[name], agno, p.bno, p.message);
    if (!v.ok) {
      result.treesReadable = false;
      continue;
    }
    const blocks = header.readUInt32BE(slotOffset(name) + SLOT_BLOCKS);
    const records = header.readUInt32BE(slotOffset(name) + SLOT_RECORDS);
    if (blocks !== v.blocks) problems.add('AG header', agno, ag.start + 1, `${name} btree has ${v.blocks} blocks, header says ${blocks}`);
    if (records !== v.records) problems.add('AG header', agno, ag.start + 1, `${name} btree has ${v.records} records, header says ${records}`);
  }
  if (!result.treesReadable) return result;
  yield* checkInodeChunks(ag, geo, problems);

  // 2. Free space: bnobt and cntbt hold the same extents; header figures match.
  const free: { start: number; len: number }[] = [];
  let freeBlocks = 0;
  let longest = 0;
  yield* eachRecord(ag.bno, (b, off) => {
    const e = decodeFreeExtent(b, off);
    free.push({ start: e.startblock, len: e.blockcount });
    freeBlocks += e.blockcount;
    longest = Math.max(longest, e.blockcount);
  });
  result.freeExtents = free.length;
  const byCount = new Set<string>();
  yield* eachRecord(ag.cnt, (b, off) => { const e = decodeFreeExtent(b, off); byCount.add(`${e.startblock}+${e.blockcount}`); });
  for (const [k, e] of free.entries()) {
    if (k % LIST_STEP === LIST_STEP - 1) yield;
    if (!byCount.delete(`${e.start}+${e.len}`)) problems.add('cntbt', agno, -1, `free extent ${e.start}+${e.len} is in the bnobt but not the cntbt`);
  }
  for (const e of byCount) problems.add('bnobt', agno, -1, `free extent ${e} is in the cntbt but not the bnobt`);
  for (let i = 1; i < free.length; i++) {
    if (free[i - 1]!.start + free[i - 1]!.len === free[i]!.start) {
      problems.add('bnobt', agno, -1, `free extents ${free[i - 1]!.start}+${free[i - 1]!.len} and ${free[i]!.start}+${free[i]!.len} touch but were not merged`);
    }
  }
  if (ag.freeBlocks !== freeBlocks) problems.add('AG header', agno, ag.start + 1, `free blocks ${ag.freeBlocks}, the bnobt holds ${freeBlocks}`);
  if (ag.longestFree !== longest) problems.add('AG header', agno, ag.start + 1, `longest free extent ${ag.longestFree}, the cntbt's is ${longest}`);
  if (options.withoutRmap === true) {
    checkFreeList(ag, free, problems);
    return result;
  }

  // 3. What the AG's own metadata says it owns (the static owners, ag-owners.ts).
  const expected: OwnedExtent[] = fixedOwners(agno, geo);
  for (const name of ['bno', 'cnt', 'rmap'] as const) {
    yield* eachBlock(treeOf(ag, name), (ptr) => { expected.push({ start: ptr, len: 1, owner: OWN_AG }); });
  }
  yield* inodeOwnerSteps(ag, (e) => expected.push(e),
    (startino) => problems.add('inobt', agno, -1, `chunk at inode ${startino} is misplaced`));
  // The free list on its own (inside the AG, none twice, none free); against the rmap in step 5.
  const agfl = ag.agflBlocks();
  const freeListProblems = problems.count;
  checkFreeList(ag, free, problems);
  const freeListBad = problems.count > freeListProblems;
  expected.sort((a, b) => a.start - b.start);

  // 4. Walk rmap and free space together, block order: each block exactly once. The rmap is streamed
  //    (a leaf per step), not gathered: at 250k records an AG, an array of them would be tens of MiB of
  //    objects surviving the young generation -- long GC pauses for the foreground. Only the metadata
  //    owners' records (few) are kept, for step 5.
  const coverage = new CoverageWalk(ag, free, problems);
  const metadata: OwnedExtent[] = [];
  const fileRecords = options.fileRecords;
  let rmapRecords = 0;
  yield* eachRecord(ag.rmap, (b, off) => {
    rmapRecords++;
    const start = b.readUInt32BE(off);
    const len = b.readUInt32BE(off + 4);
    coverage.rmap(b, off, start, len);
    const owner = decodeRmapOwner(b, off);
    if (!isInodeOwner(owner)) metadata.push({ start, len, owner });
    else if (fileRecords !== undefined) {
      const r = decodeRmap(b, off);
      fileRecords.add(owner, start, len, r.offset, r.flags);
    }
  }, 32);
  result.rmapRecords = rmapRecords;
  coverage.finish();

  // 5. Every metadata extent is mapped to its owner, and every special-owner record is metadata we know.
  yield;
  checkMetadataOwners(ag, metadata, expected, problems);
  checkAgOwned(ag, metadata, expected, agfl, freeListBad, problems);
  return result;
}

/** How problems of the AG's free list (kept in the header block) are named. */
export const FREE_LIST = 'free list';

/**
 * The free list without the rmap: blocks inside the AG's own space, none
 * twice, none also free. (The full scrub's coverage walk finds the rest.)
 */
function checkFreeList(ag: AllocGroup, free: readonly { start: number; len: number }[], problems: ProblemList): void {
  const agfl = ag.agflBlocks();
  const seen = new Set<number>();
  for (const b of agfl) {
    if (b < 2 || b >= ag.length) problems.add(FREE_LIST, ag.agno, ag.start + 1, `block ${b} is outside the AG`);
    else if (seen.has(b)) problems.add(FREE_LIST, ag.agno, ag.start + 1, `block ${b} is on the free list twice`);
    seen.add(b);
  }
  for (const e of free) {
    for (const b of agfl) {
      if (b >= e.start && b < e.start + e.len) problems.add(FREE_LIST, ag.agno, ag.start + 1, `block ${b} is on the free list and free`);
    }
  }
}

/**
 * Step 4's walk: the rmap's records fed one at a time in block order, the
 * free extents merged in where they fall; every block must be accounted for
 * exactly once. At most 50 problems are reported.
 */
class CoverageWalk {
  private at = 0;
  private j = 0;
  private reported = 0;

  constructor(private readonly ag: AllocGroup, private readonly free: readonly { start: number; len: number }[],
    private readonly problems: ProblemList) {}

  private report(msg: string, agbno: number): void {
    if (this.reported++ < 50) this.problems.add('coverage', this.ag.agno, this.ag.start + agbno, msg);
  }

  /** Accounts for [start, start+len); `what` names it when it overlaps what came before. */
  private take(start: number, len: number, what: () => string): void {
    if (start > this.at) this.report(`blocks ${this.at}..${start - 1} are neither free nor in the rmap`, this.at);
    if (start < this.at) this.report(`${what()} overlaps space already accounted for`, start);
    this.at = Math.max(this.at, start + len);
  }

  private freeBefore(limit: number): void {
    while (this.j < this.free.length && this.free[this.j]!.start < limit) {
      const f = this.free[this.j++]!;
      this.take(f.start, f.len, () => `free extent ${f.start}+${f.len}`);
    }
  }

  /** The next rmap record (at b[off], its start and length already read). */
  rmap(b: Buffer, off: number, start: number, len: number): void {
    this.freeBefore(start);
    this.take(start, len, () => {
      const r = decodeRmap(b, off);
      return `rmap record ${r.startblock}+${r.blockcount} (${ownerName(r.owner, r.ownerExact)})`;
    });
  }

  finish(): void {
    this.freeBefore(Infinity);
    const { at, ag } = this;
    if (at < ag.length) this.report(`blocks ${at}..${ag.length - 1} are neither free nor in the rmap`, at);
    if (at > ag.length) this.report(`space is accounted for past the end of the AG (${at} > ${ag.length})`, ag.length - 1);
  }
}

/** Sorted blocks as runs [start, len]. */
function runsOf(blocks: readonly number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const b of [...blocks].sort((x, y) => x - y)) {
    const last = out[out.length - 1];
    if (last !== undefined && last[0] + last[1] === b) last[1]++;
    else out.push([b, 1]);
  }
  return out;
}

/**
 * The "ag" owner's blocks, block by block (the btrees' blocks and the free
 * list, a few hundred): each of the free-space and rmap btrees' blocks and
 * each free list block mapped to "ag" in the rmap, and nothing else mapped
 * to it. What is wrong is the free list's when a free list block is not
 * mapped (or the free list was found wrong on its own, freeListBad): an
 * "ag" block that is in no btree is then one the free list lost, which its
 * repair takes back from the rmap. Otherwise it is the rmap's.
 */
function checkAgOwned(ag: AllocGroup, metadata: readonly OwnedExtent[], expected: readonly OwnedExtent[],
  agfl: readonly number[], freeListBad: boolean, problems: ProblemList): void {
  const agno = ag.agno;
  const treeBlocks = new Set<number>();
  for (const e of expected) if (e.owner === OWN_AG) for (let b = e.start; b < e.start + e.len; b++) treeBlocks.add(b);
  const onList = new Set(agfl);
  let n = 0;
  // A record longer than all of the owner's metadata together is the rmap's damage (and is not expanded).
  const most = treeBlocks.size + onList.size + AGFL_SIZE;
  const mapped = new Set<number>();
  for (const e of metadata) {
    if (e.owner !== OWN_AG) continue;
    if (e.len > most || e.start + e.len > ag.length) {
      if (n++ < 50) problems.add('rmap', agno, ag.start + e.start, `rmap says ag owns ${e.start}+${e.len}, which is not such metadata`);
      continue;
    }
    for (let b = e.start; b < e.start + e.len; b++) mapped.add(b);
  }
  for (const [start, len] of runsOf([...treeBlocks].filter((b) => !mapped.has(b)))) {
    if (n++ < 50) problems.add('rmap', agno, ag.start + start, `ag metadata at ${start}+${len} is not mapped to it`);
  }
  const unmappedOnList = runsOf([...onList].filter((b) => !mapped.has(b) && !treeBlocks.has(b)));
  for (const [start, len] of unmappedOnList) {
    if (n++ < 50) problems.add(FREE_LIST, agno, ag.start + 1, `free list blocks ${start}+${len} are not mapped to ag in the rmap`);
  }
  const lost = runsOf([...mapped].filter((b) => !treeBlocks.has(b) && !onList.has(b)));
  for (const [start, len] of lost) {
    if (n++ >= 50) break;
    if (freeListBad || unmappedOnList.length > 0) {
      problems.add(FREE_LIST, agno, ag.start + 1, `ag blocks ${start}+${len} are in no btree and not on the free list`);
    } else {
      problems.add('rmap', agno, ag.start + start, `rmap says ag owns ${start}+${len}, which is not such metadata`);
    }
  }
}

function checkMetadataOwners(ag: AllocGroup, metadata: OwnedExtent[], expected: OwnedExtent[], problems: ProblemList): void {
  const agno = ag.agno;
  // Expand both sides into per-owner block ranges and compare them merged.
  const merge = (list: OwnedExtent[]): OwnedExtent[] => {
    const out: OwnedExtent[] = [];
    for (const e of list) {
      const last = out[out.length - 1];
      if (last !== undefined && last.owner === e.owner && last.start + last.len === e.start) last.len += e.len;
      else out.push({ ...e });
    }
    return out;
  };
  // The "ag" owner's blocks are checkAgOwned's (which of the btrees and the free list is wrong).
  const want = merge(expected.filter((e) => e.owner !== OWN_AG));
  const have = merge(metadata.filter((e) => e.owner !== OWN_AG));
  const key = (e: OwnedExtent): string => `${e.start}+${e.len}:${e.owner}`;
  const haveSet = new Set(have.map(key));
  const wantSet = new Set(want.map(key));
  let n = 0;
  for (const e of want) {
    if (!haveSet.has(key(e)) && n++ < 50) {
      problems.add('rmap', agno, ag.start + e.start, `${ownerName(e.owner)} metadata at ${e.start}+${e.len} is not mapped to it`);
    }
  }
  for (const e of have) {
    if (!wantSet.has(key(e)) && n++ < 50) {
      problems.add('rmap', agno, ag.start + e.start, `rmap says ${ownerName(e.owner)} owns ${e.start}+${e.len}, which is not such metadata`);
    }
  }
}

/**
 * 1b. Each inode chunk the inode btree names holds inodes (XFS's
 * xchk_iallocbt_check_clusters): a record moved to where there is no chunk
 * is the inode btree's own damage, found by its own check -- also before an
 * rmap repair, whose inode scan would read those blocks as inodes. A chunk
 * (eight blocks) a step. Misplaced chunks (unaligned, past the end) are
 * reported with the static owners.
 */
function* checkInodeChunks(ag: AllocGroup, geo: Geometry, problems: ProblemList): ScrubSteps<void> {
  const chunks: number[] = [];
  yield* eachRecord(ag.ino, (b, off) => { chunks.push(decodeInobt(b, off).startino); });
  const ops = inodeBlockBufOps(geo);
  for (const startino of chunks) {
    const bno = startino / INODES_PER_BLOCK;
    if (startino % INODES_PER_CHUNK !== 0 || bno + CHUNK_BLOCKS > ag.length) continue;
    // The chunk in one read (the blocks that verify are cached; each read below reports one that does not).
    ag.cache.readAhead(ag.start + bno, CHUNK_BLOCKS, ops);
    for (let i = 0; i < CHUNK_BLOCKS; i++) {
      try {
        ag.cache.read(ag.start + bno + i, ops);
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        // One damaged inode is the inode's problem (the file pass reports it), and so is a whole block of
        // them destroyed in a chunk whose other blocks hold their inodes; a chunk where no inode is at
        // home is not inodes at all: the inode btree points at the wrong place.
        if (inodesAtHome(ag, geo, bno + i) > 0) continue;
        let home = 0;
        for (let j = 0; j < CHUNK_BLOCKS && home === 0; j++) if (j !== i) home += inodesAtHome(ag, geo, bno + j);
        if (home > 0) continue;
        problems.add('inobt', ag.agno, ag.start + bno, `chunk at inode ${startino} does not hold inodes: ${e.message}`);
        break;
      }
    }
    yield;
  }
}

/** How many of the inodes of AG block bno (read raw, unverified) carry the inode magic and their own number. */
function inodesAtHome(ag: AllocGroup, geo: Geometry, bno: number): number {
  const raw = Buffer.alloc(ag.cache.blockSize);
  ag.cache.target.readBlocks(ag.start + bno, 1, raw, 0);
  let home = 0;
  for (let j = 0; j < INODES_PER_BLOCK; j++) {
    const off = j * INODE_SIZE;
    if (raw.readUInt32BE(off) === INODE_MAGIC && readU64(raw, off + OFF_I_INO) === geo.ino(ag.agno, bno * INODES_PER_BLOCK + j)) home++;
  }
  return home;
}
