/**
 * Reverse-mapping operations on an rmap btree (on disk or in memory): map an
 * extent to its owner, unmap part of it. Records never overlap (rmapfs has no
 * shared blocks), so records are ordered by startblock alone, and a new
 * mapping merges with a neighbour that continues it (same owner and flags,
 * adjacent blocks, and -- for file data -- adjacent file offsets).
 */
import { RmapfsError, corruption } from '../errors';
import type { Btree, BtreeCursor } from '../btree/btree';
import { NULL_PTR } from '../btree/btree-ops';
import { OFF_LEFTSIB, OFF_NUMRECS, OFF_RIGHTSIB } from '../btree/btree-block';
import { isInodeOwner, ownerName } from '../format/owners';
import type { RmapRecord } from './rmap-btree';
import { RMAP_BMBT_BLOCK, RMAP_KEY_SIZE, RMAP_REC_SIZE, RMAP_UNWRITTEN, decodeRmap, encodeRmap, encodeRmapKey } from './rmap-btree';

/**
 * Whether a record's offset is a file offset that moves with its blocks:
 * file data and attribute values. Btree blocks of an inode have offset 0
 * however many blocks one record maps (a repair maps a new tree's blocks as
 * one extent), so unmapping part of one keeps 0 on both sides.
 */
function hasFileOffset(r: RmapRecord): boolean {
  return isInodeOwner(r.owner) && (r.flags & RMAP_BMBT_BLOCK) === 0;
}

/**
 * Whether b continues a (b starts where a ends, same owner/flags, offsets
 * line up). An inode's btree blocks have no file offset: adjacent ones join
 * (a directory grown block by block then has one record per run, and its
 * repair reaps a run with one delete).
 */
export function rmapContinues(a: RmapRecord, b: RmapRecord): boolean {
  if (a.startblock + a.blockcount !== b.startblock || a.owner !== b.owner || (a.flags >>> 0) !== (b.flags >>> 0)) return false;
  return !hasFileOffset(a) || a.offset + a.blockcount === b.offset;
}

export function formatRmap(r: RmapRecord): string {
  return `[${r.startblock}+${r.blockcount}] ${ownerName(r.owner, r.ownerExact)}${isInodeOwner(r.owner) ? ` offset ${r.offset}` : ''}`
    + `${r.flags & RMAP_UNWRITTEN ? ' unwritten' : ''}`;
}

const scratchKey = Buffer.alloc(RMAP_KEY_SIZE);
const scratchRec = Buffer.alloc(RMAP_REC_SIZE);

/** The record under the cursor, decoded where it sits (no copy). */
function recordUnder(cur: BtreeCursor): RmapRecord {
  const { block, offset } = cur.recordAt();
  return decodeRmap(block, offset);
}

/** Positions the cursor on the last record starting at or before `agbno`; false when none. */
function lookupAtOrBefore(tree: Btree, agbno: number, cur = tree.opCursor()): BtreeCursor | null {
  // Highest possible key with this startblock: every owner/offset sorts below it.
  scratchKey.fill(0xff);
  scratchKey.writeUInt32BE(agbno >>> 0, 0);
  return cur.lookup(scratchKey, 0, 'le') ? cur : null;
}

/** The record covering agbno, or null. */
export function rmapFind(tree: Btree, agbno: number): RmapRecord | null {
  const cur = lookupAtOrBefore(tree, agbno);
  if (cur === null) return null;
  const r = recordUnder(cur);
  return agbno < r.startblock + r.blockcount ? r : null;
}

/**
 * rmapFind for a run of look-ups that mostly land near the one before (a
 * check of every file: a file's extents in order, files in the order they
 * were written): the leaf of the last answer is searched first, and the tree
 * is descended only for a block outside that leaf's keys -- a descent is a
 * block read and key search per level. Only for a tree nothing changes while
 * it is used (an offline check's, a scrub's frozen view): it keeps the leaf's
 * block number, and re-reads it through the cache.
 */
export class RmapFinder implements RmapLookup {
  /** The leaves of the last answers, the latest first (a file's extents may alternate between regions). */
  private readonly leaves: number[] = [];
  private readonly cur: BtreeCursor;

  constructor(private readonly tree: Btree) {
    this.cur = tree.cursor();
  }

  find(agbno: number): RmapRecord | null {
    scratchKey.fill(0xff);
    scratchKey.writeUInt32BE(agbno >>> 0, 0);
    for (let i = 0; i < this.leaves.length; i++) {
      const r = this.findInLeaf(this.leaves[i]!, agbno);
      if (r === undefined) continue;
      if (i > 0) this.leaves.unshift(...this.leaves.splice(i, 1));
      return r;
    }
    if (!this.cur.lookup(scratchKey, 0, 'le')) return null;
    this.leaves.unshift(this.cur.ptrs[0]!);
    if (this.leaves.length > FINDER_LEAVES) this.leaves.pop();
    const r = recordUnder(this.cur);
    return agbno < r.startblock + r.blockcount ? r : null;
  }

  /**
   * The answer from this leaf or the one right of it (scratchKey is the block's), or undefined when the
   * block is before this leaf's first key or at or after its right neighbour's (a leaf of the next answer
   * is often the next one: records are dense where files were written together).
   */
  private findInLeaf(leaf: number, agbno: number): RmapRecord | null | undefined {
    const { tree } = this;
    const b = tree.readBlock(leaf, 0).data;
    const n = b.readUInt16BE(OFF_NUMRECS);
    if (n === 0 || tree.ops.compareRecToKey(b, tree.geo.recOffset(0), scratchKey, 0) > 0) return undefined;
    let hi = n - 1;
    if (tree.ops.compareRecToKey(b, tree.geo.recOffset(n - 1), scratchKey, 0) <= 0) {
      // At or after this leaf's last record: the answer is that record when the next leaf starts after the block.
      const right = b.readUInt32BE(OFF_RIGHTSIB);
      if (right === NULL_PTR) return this.answer(b, n - 1, agbno);
      // A sibling pointer is followed only where the two leaves name each other (a damaged one is the
      // AG scrub's to report): otherwise the descent answers, as rmapFind would.
      if (!tree.storage.isValidPtr(right)) return undefined;
      let rb: Buffer;
      try {
        rb = tree.readBlock(right, 0).data;
      } catch (e) {
        if (e instanceof RmapfsError) return undefined;
        throw e;
      }
      if (rb.readUInt32BE(OFF_LEFTSIB) !== leaf || rb.readUInt16BE(OFF_NUMRECS) === 0) return undefined;
      if (tree.ops.compareRecToKey(rb, tree.geo.recOffset(0), scratchKey, 0) > 0) return this.answer(b, n - 1, agbno);
      return undefined;
    }
    // The last record <= key: records [0, lo] are <= it, (hi, n) are after it.
    let lo = 0;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (tree.ops.compareRecToKey(b, tree.geo.recOffset(mid), scratchKey, 0) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return this.answer(b, lo, agbno);
  }

  /** Record i of leaf b when it covers the block, else null (the block is in no record). */
  private answer(b: Buffer, i: number, agbno: number): RmapRecord | null {
    const r = decodeRmap(b, this.tree.geo.recOffset(i));
    return agbno < r.startblock + r.blockcount ? r : null;
  }
}

/** Leaves an RmapFinder keeps. */
const FINDER_LEAVES = 4;

/** Answers "which record covers this block" (rmapFind's question). */
export interface RmapLookup {
  find(agbno: number): RmapRecord | null;
}

/**
 * An AG's rmap records copied in leaf order, in ONE walk of the leaves, and
 * searched in memory: a check of every file asks for each of its extents
 * (a million look-ups at 1M records), and a look-up through the tree --
 * even through RmapFinder's recent leaves -- was most of the check's time
 * (files in inode order jump between leaves). Same answers as rmapFind only
 * where leaf order is the tree's key order (a verified tree): `add` refuses
 * a record out of order, and the caller keeps the tree then.
 */
export class RmapIndex implements RmapLookup {
  private records = Buffer.alloc(RMAP_REC_SIZE * 1024);
  private starts = new Uint32Array(1024);
  private count = 0;

  /** Appends the record at b[off]; false (nothing added) when it starts before the last one. */
  add(b: Buffer, off: number): boolean {
    const start = b.readUInt32BE(off);
    if (this.count > 0 && start < this.starts[this.count - 1]!) return false;
    if (this.count === this.starts.length) this.grow();
    b.copy(this.records, this.count * RMAP_REC_SIZE, off, off + RMAP_REC_SIZE);
    this.starts[this.count++] = start;
    return true;
  }

  get size(): number {
    return this.count;
  }

  find(agbno: number): RmapRecord | null {
    // The last record starting at or before agbno (as lookupAtOrBefore: of equal starts, the last in key order).
    let lo = 0;
    let hi = this.count;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.starts[mid]! <= agbno) lo = mid + 1;
      else hi = mid;
    }
    if (lo === 0) return null;
    const r = decodeRmap(this.records, (lo - 1) * RMAP_REC_SIZE);
    return agbno < r.startblock + r.blockcount ? r : null;
  }

  private grow(): void {
    const starts = new Uint32Array(this.starts.length * 2);
    starts.set(this.starts);
    this.starts = starts;
    const records = Buffer.alloc(this.records.length * 2);
    this.records.copy(records);
    this.records = records;
  }
}

/** Records an extent as owned; it must not overlap any mapped extent. */
export function rmapMap(tree: Btree, rec: RmapRecord, where: string): void {
  if (rec.blockcount <= 0) throw new RmapfsError('EINVAL', `${where}: mapping ${formatRmap(rec)} of no blocks`);
  const end = rec.startblock + rec.blockcount;
  let left: RmapRecord | null = null;
  let right: RmapRecord | null = null;
  const cur = tree.opCursor();
  if (lookupAtOrBefore(tree, rec.startblock, cur) !== null) {
    left = recordUnder(cur);
    if (left.startblock + left.blockcount > rec.startblock) {
      throw corruption(`${where}: mapping ${formatRmap(rec)} overlaps ${formatRmap(left)}`);
    }
    if (cur.increment()) right = recordUnder(cur);
  } else if (cur.first()) {
    right = recordUnder(cur);
  }
  if (right !== null && right.startblock < end) {
    throw corruption(`${where}: mapping ${formatRmap(rec)} overlaps ${formatRmap(right)}`);
  }
  const joinLeft = left !== null && rmapContinues(left, rec);
  const joinRight = right !== null && rmapContinues(rec, right);
  if (joinLeft && joinRight) {
    deleteRecord(tree, right!);
    updateRecord(tree, left!, { ...left!, blockcount: left!.blockcount + rec.blockcount + right!.blockcount });
  } else if (joinLeft) {
    updateRecord(tree, left!, { ...left!, blockcount: left!.blockcount + rec.blockcount });
  } else if (joinRight) {
    updateRecord(tree, right!, { ...rec, blockcount: rec.blockcount + right!.blockcount });
  } else {
    // The cursor stands on `right` (or past `left`, the last record): where the new record goes.
    encodeRmap(rec, scratchRec, 0);
    tree.insertAtCursor(cur, scratchRec);
  }
}

/**
 * Removes the mapping of [startblock, startblock+blockcount) by `owner`; the
 * whole range must be mapped by one record of that owner (at that offset).
 */
export function rmapUnmap(tree: Btree, rec: RmapRecord, where: string): void {
  const found = rmapFind(tree, rec.startblock);
  const end = rec.startblock + rec.blockcount;
  if (found === null || found.startblock + found.blockcount < end || found.owner !== rec.owner
    || (hasFileOffset(found) && found.offset + (rec.startblock - found.startblock) !== rec.offset)) {
    throw corruption(`${where}: unmapping ${formatRmap(rec)}, but the rmap has ${found === null ? 'nothing there' : formatRmap(found)}`);
  }
  const fEnd = found.startblock + found.blockcount;
  const headLen = rec.startblock - found.startblock;
  const tailLen = fEnd - end;
  if (headLen === 0 && tailLen === 0) {
    deleteRecord(tree, found);
  } else if (headLen === 0) {
    updateRecord(tree, found, {
      ...found, startblock: end, blockcount: tailLen,
      offset: hasFileOffset(found) ? found.offset + rec.blockcount : found.offset,
    });
  } else {
    updateRecord(tree, found, { ...found, blockcount: headLen });
    if (tailLen > 0) {
      encodeRmap({
        ...found, startblock: end, blockcount: tailLen,
        offset: hasFileOffset(found) ? found.offset + (end - found.startblock) : found.offset,
      }, scratchRec, 0);
      tree.insert(scratchRec);
    }
  }
}

/**
 * Removes the records of `owner` that follow one another from `agbno`, each
 * wholly before `end`, with one lookup (a reaped directory's blocks are one
 * record each, several to a run): stops at the first record that is not
 * such. Calls `removed` with each. The block reached (`agbno` when none was).
 */
export function rmapRemoveWholeRun(tree: Btree, agbno: number, end: number, owner: number,
  removed: (r: RmapRecord) => void): number {
  const cur = lookupAtOrBefore(tree, agbno);
  if (cur === null) return agbno;
  return removeFollowing(cur, agbno, end, owner, removed).reached;
}

/** rmapRemoveWholeRun's loop from a cursor on the record at or before agbno; whether the cursor is left on a record. */
function removeFollowing(cur: BtreeCursor, agbno: number, end: number, owner: number,
  removed: (r: RmapRecord) => void): { reached: number; onRecord: boolean } {
  let at = agbno;
  let ok = true;
  while (ok && at < end) {
    const r = recordUnder(cur);
    if (r.startblock !== at || r.startblock + r.blockcount > end || r.owner !== owner) break;
    ok = cur.deleteAndNext();
    removed(r);
    at += r.blockcount;
  }
  return { reached: at, onRecord: ok };
}

/** How far RmapRunRemover steps its cursor forward before it descends from the root instead. */
const MAX_STEPS_TO_NEXT_RUN = 16;

/**
 * rmapRemoveWholeRun for many runs freed in ascending block order in one
 * transaction (a repair's reap of an old directory: ~1,250 runs, with other
 * owners' records -- inode chunks -- between them): the cursor left on the
 * record after one run is stepped forward to the next run's first record,
 * which is usually a few records on in the same leaf, instead of a lookup
 * from the root for every run. The cursor is only valid while nothing else
 * changes the tree: call `forget()` after anything that may (a free-list
 * fix maps and unmaps the AG's blocks; rmapUnmap).
 */
export class RmapRunRemover {
  private readonly cur: BtreeCursor;
  /** The cursor stands on a record and the tree has not changed under it since. */
  private onRecord = false;
  /** Look-ups from the root, for the tests: the stepping must not make every run one. */
  descents = 0;

  constructor(private readonly tree: Btree) {
    this.cur = tree.cursor();
  }

  forget(): void {
    this.onRecord = false;
  }

  /** As rmapRemoveWholeRun. */
  remove(agbno: number, end: number, owner: number, removed: (r: RmapRecord) => void): number {
    if (!this.stepTo(agbno)) {
      this.descents++;
      if (lookupAtOrBefore(this.tree, agbno, this.cur) === null) {
        this.onRecord = false;
        return agbno;
      }
    }
    const { reached, onRecord } = removeFollowing(this.cur, agbno, end, owner, removed);
    this.onRecord = onRecord;
    return reached;
  }

  /**
   * Steps the cursor forward onto the record starting at agbno; false when it
   * is not a few records ahead (the caller looks it up: the record before
   * agbno may cover it). Records do not overlap, so the one starting at agbno
   * is the one a look-up at or before agbno finds.
   */
  private stepTo(agbno: number): boolean {
    if (!this.onRecord) return false;
    for (let steps = 0; steps < MAX_STEPS_TO_NEXT_RUN; steps++) {
      const start = recordUnder(this.cur).startblock;
      if (start === agbno) return true;
      if (start > agbno) return false;
      if (!this.cur.increment()) {
        this.onRecord = false;
        return false;
      }
    }
    return false;
  }
}

/** Changes a record in place (its key may move between its neighbours). */
function updateRecord(tree: Btree, old: RmapRecord, next: RmapRecord): void {
  const cur = tree.opCursor();
  encodeRmapKey(old.startblock, old.owner, old.offset, old.flags, scratchKey);
  if (!cur.lookup(scratchKey, 0, 'eq')) throw corruption(`rmap: record ${formatRmap(old)} vanished`);
  encodeRmap(next, scratchRec, 0);
  cur.update(scratchRec);
}

function deleteRecord(tree: Btree, old: RmapRecord): void {
  encodeRmapKey(old.startblock, old.owner, old.offset, old.flags, scratchKey);
  if (!tree.delete(scratchKey)) throw corruption(`rmap: record ${formatRmap(old)} vanished`);
}
