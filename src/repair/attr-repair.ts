/**
 * Online salvage of an inode's extended attributes (the method of XFS's
 * fs/xfs/scrub/attr_repair.c, our own way): every attribute whose record and
 * value still verify goes into a rebuilt attribute btree.
 *
 * 1. The rmap (owner-blocks.ts, walked in slices on a frozen view) says
 *    which blocks the inode's attribute fork owns: btree blocks and value
 *    blocks -- found even when the fork root or the tree's nodes are
 *    damaged. A live rmap hook logs changes after the view.
 * 2. The commit, ONE transaction, reads those blocks as they are then (an
 *    attribute fork is small: its reading is part of the pause): every
 *    block of this inode's attribute btree that verifies is read as a
 *    possible leaf, slot by slot up to a leaf's capacity, whatever its level
 *    and record count say (a damaged level or count loses nothing); a block
 *    whose slots hold no record that verifies and whose pointers all name
 *    the tree's blocks is a node. A record that fails its checks is
 *    dropped; an out-of-line value must lie in value blocks the rmap gives
 *    the fork, held by no other attribute, and match its crc -- else the
 *    length (at its block) or the block (among the fork's free value blocks)
 *    that matches the crc is taken, and failing that the attribute is
 *    dropped -- each named.
 *    The new tree is bulk-loaded into new blocks written in place, the root
 *    and counts put in the inode (the block count from the rmap), the old
 *    tree's blocks and the values no attribute keeps reaped.
 */
import createDebug from 'debug';
import { Btree } from '../btree/btree';
import { BTREE_HDR_SIZE, BtreeGeometry, OFF_LEVEL, OFF_NUMRECS, btreeBufOps } from '../btree/btree-block';
import { computeBulkLoadGeometry } from '../btree/bulk-load';
import type { RecordSource } from '../btree/bulk-load';
import { BLOCK_SIZE } from '../format/superblock';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../rmap/rmap-btree';
import { ATTR_BTREE, ATTR_NONE } from '../inode/inode-format';
import { ForkBtreeStorage } from '../inode/fork-btree';
import { ATTR_INLINE_MAX, ATTR_REC_SIZE, ATTR_VALUE_MAX, attrBtreeOps, checkAttrName, decodeAttrEntry, inlineValueArea, setCollisionIndex, setValuePlace, valueBlocks, valueCrc } from '../attr/attr';
import type { AttrEntry } from '../attr/attr';
import { POSIX_ACL_NAMES, posixAclProblem } from '../attr/posix-acl';
import { native } from '../native';
import type { Device } from '../io/device';
import type { Geometry } from '../format/geometry';
import type { Rmapfs } from '../fs/rmapfs';
import type { FileRepairOptions, FileRepairResult } from './file-repair';
import { ExtentBitmap } from './bitmap';
import { RepairPacing, allocateInodeBlocks, collectOwnerBlocks, formatBlockRanges } from './owner-blocks';
import type { OwnerBlocks } from './owner-blocks';
import { reapInodeBlocks } from './reap';
import { writeStagedBtree } from './staged-btree';

const log = createDebug('rmapfs:repair');

const ATTR_BTREE_FLAGS = (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK) >>> 0;
/** The rmap's records of an attribute fork's btree blocks, and of its out-of-line values. */
const ATTR_BTREE_ROLE = (flags: number): boolean => (flags & ATTR_BTREE_FLAGS) >>> 0 === ATTR_BTREE_FLAGS;
const ATTR_VALUE_ROLE = (flags: number): boolean => (flags & RMAP_ATTR_FORK) !== 0 && (flags & RMAP_BMBT_BLOCK) === 0;
/** The rest of what the inode owns: its data and block-map btree. */
const NOT_ATTR_ROLE = (flags: number): boolean => (flags & RMAP_ATTR_FORK) === 0;

/**
 * Rebuilds inode `ino`'s attribute btree online from what still verifies
 * (see the top of this file). The old tree stays in use until the commit.
 */
export async function repairXattrs(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  fsx.inodes.get(ino); // a free inode fails here
  const pacing = new RepairPacing(options, `inode ${ino}'s attributes`);
  const [btree, values, others] = await collectOwnerBlocks(fsx.fs, ino, [ATTR_BTREE_ROLE, ATTR_VALUE_ROLE, NOT_ATTR_ROLE], pacing) as [OwnerBlocks, OwnerBlocks, OwnerBlocks];
  const sources: AttrSources = { btree, values, others };
  try {
    for (const o of [btree, values, others]) o.throwIfAborted();
    // Nothing runs between here and the commit: the hooks have nothing more to hear.
    for (const o of [btree, values, others]) o.close();
    const changes: string[] = [];
    const c0 = process.hrtime.bigint();
    const kept = fsx.fs.run(() => commitXattrs(fsx, ino, sources, changes));
    const commitPauseMs = Number(process.hrtime.bigint() - c0) / 1e6;
    log('inode %d: attributes rebuilt: %d kept, %d changes; pause %s ms', ino, kept, changes.length, commitPauseMs.toFixed(1));
    return { type: 'xattr', ino, path: null, changes, commitPauseMs };
  } finally {
    for (const o of [btree, values, others]) o.close();
  }
}

/** What the rmap gives the inode: its attribute btree's blocks, its values' blocks, and everything else (for the block count). */
interface AttrSources {
  btree: OwnerBlocks;
  values: OwnerBlocks;
  others: OwnerBlocks;
}

/** An attribute record salvaged from a leaf, with its entry as the record has it. */
interface SalvagedRecord {
  rec: Buffer;
  entry: AttrEntry;
  /** Its name verifies but its value's length or place does not (why): the value is looked for by its crc. */
  valueWrong: string | null;
}

/** The commit: salvage, rebuild, reap. Returns the attributes kept. */
function commitXattrs(fsx: Rmapfs, ino: number, sources: AttrSources, changes: string[]): number {
  const fs = fsx.fs;
  const alloc = fs.alloc;
  const geo = fs.geo;
  const inode = fsx.inodes.get(ino);
  changes.length = 0; // a transaction run again starts over
  const oldTree = sources.btree.current();
  const oldValues = sources.values.current();
  const treeGeometry = new BtreeGeometry(attrBtreeOps, BLOCK_SIZE);
  const bufOps = btreeBufOps(attrBtreeOps, treeGeometry, geo.uuid, ino, fs.cache.target.checksummed);
  const isTreeBlock = (fsbno: number): boolean => {
    const agno = geo.agnoOf(fsbno);
    return agno < geo.agCount && oldTree.get(agno)?.has(geo.agbnoOf(fsbno)) === true;
  };
  const salvaged: SalvagedRecord[] = [];
  const names = new Set<string>();
  const badBlocks: number[] = [];
  /** Records read from verified leaves and not kept. */
  let dropped = 0;
  for (const [agno, set] of [...oldTree].sort((a, b) => a[0] - b[0])) {
    set.walk((start, len) => {
      for (let agbno = start; agbno < start + len; agbno++) {
        const fsbno = geo.fsbno(agno, agbno);
        let b: Buffer;
        try {
          b = fs.cache.read(fsbno, bufOps).data;
        } catch {
          badBlocks.push(fsbno);
          continue;
        }
        // Every block the rmap gives the tree is read as a possible leaf, whatever its level and
        // record count say (either may be the damage), slot by slot up to a leaf's capacity.
        const slots = readLeafSlots(b, treeGeometry.maxLeafRecs);
        // No record verifies, and its level says node or its pointers all name the tree's other
        // blocks: a node (its keys are no attributes).
        if (slots.good.length === 0 && (b.readUInt16BE(OFF_LEVEL) !== 0 || readsAsNode(b, fsbno, treeGeometry, isTreeBlock))) continue;
        for (const bad of slots.bad) {
          dropped++;
          changes.push(`attribute ${bad.slot} of block ${fsbno} dropped: ${bad.why}`);
        }
        for (const { off, valueWrong } of slots.good) {
          const e = decodeAttrEntry(b, off);
          if (names.has(e.name.toString('latin1'))) {
            changes.push(`duplicate attribute '${e.name.toString()}' in block ${fsbno} dropped`);
            dropped++;
            continue;
          }
          names.add(e.name.toString('latin1'));
          salvaged.push({ rec: Buffer.from(b.subarray(off, off + ATTR_REC_SIZE)), entry: e, valueWrong });
        }
      }
    });
  }
  const values = new ValuePlacement(fs.device, geo, oldValues);
  const records = dropMalformedAcls(placeValues(salvaged, values, changes), values, inode.isDir, changes);
  dropped += salvaged.length - records.length;
  const lost = Math.max(0, inode.attrCount - records.length - dropped);
  if (badBlocks.length > 0) {
    changes.unshift(`${lost} attribute${lost === 1 ? '' : 's'} lost (block${badBlocks.length === 1 ? '' : 's'} ${formatBlockRanges(badBlocks)} did not verify)`);
  }
  // Key order, collision indexes counted afresh.
  records.sort((x, y) => x.readUInt32BE(0) - y.readUInt32BE(0));
  let blocks: number[] = [];
  if (records.length > 0) {
    inode.attrFormat = ATTR_BTREE;
    const tree = new Btree(attrBtreeOps, new ForkBtreeStorage(inode, 'attr', alloc, geo));
    const geometry = computeBulkLoadGeometry(tree, records.length, 1);
    blocks = allocateInodeBlocks(alloc, ino, ATTR_BTREE_FLAGS, geometry.totalBlocks, geo.inoLocation(ino).fsbno);
    const { loaded } = writeStagedBtree(fs, tree, records.length, attrRecordSource(records), blocks, `inode ${ino} attribute fork`);
    inode.attrRoot = loaded.ptr;
    inode.attrHeight = loaded.height;
  } else {
    inode.attrFormat = ATTR_NONE;
    inode.attrRoot = 0;
    inode.attrHeight = 0;
  }
  inode.attrCount = records.length;
  let freed = 0;
  for (const [agno, set] of oldTree) freed += reapInodeBlocks(alloc, agno, set, ino, ATTR_BTREE_FLAGS);
  for (const [agno, set] of oldValues) {
    const unkept = set.clone();
    const k = values.claimed.get(agno);
    if (k !== undefined) unkept.subtractAll(k);
    freed += reapInodeBlocks(alloc, agno, unkept, ino, RMAP_ATTR_FORK);
  }
  // The block count from the rmap, the second source: what else the inode owns, the values kept, the
  // new tree. Reported only when it is not what the count before, less what was reaped, gives.
  let others = 0;
  for (const set of sources.others.current().values()) others += set.blocks;
  let keptValueBlocks = 0;
  for (const set of values.claimed.values()) keptValueBlocks += set.blocks;
  const nblocks = others + keptValueBlocks + blocks.length;
  const followed = inode.nblocks - freed + blocks.length;
  if (nblocks !== followed) changes.push(`block count ${followed} -> ${nblocks} (the rmap's)`);
  inode.nblocks = nblocks;
  return records.length;
}

/**
 * A leaf's slots read up to its capacity: the records whose name verifies
 * (with why their value's length or place does not, if so), and the others
 * that hold something.
 */
function readLeafSlots(b: Buffer, capacity: number): { good: { off: number; valueWrong: string | null }[]; bad: { slot: number; why: string }[] } {
  const good: { off: number; valueWrong: string | null }[] = [];
  const bad: { slot: number; why: string }[] = [];
  for (let i = 0; i < capacity; i++) {
    const off = BTREE_HDR_SIZE + i * ATTR_REC_SIZE;
    // Freed slots are zeroed (Btree.removeEntry, clearEntries): an empty slot is no attribute.
    if (isZero(b, off, ATTR_REC_SIZE)) continue;
    const why = attrBtreeOps.checkRecord!(b, off);
    if (why === null) good.push({ off, valueWrong: null });
    else if (checkAttrName(b, off) === null) good.push({ off, valueWrong: why });
    else bad.push({ slot: i, why });
  }
  return { good, bad };
}

function isZero(b: Buffer, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (b[i] !== 0) return false;
  return true;
}

/**
 * Whether block b reads as a node of the attribute tree whatever its level
 * says: at least one key, and every pointer names another block the rmap
 * gives the tree (a leaf's record bytes almost never do).
 */
function readsAsNode(b: Buffer, fsbno: number, g: BtreeGeometry, isTreeBlock: (fsbno: number) => boolean): boolean {
  const n = b.readUInt16BE(OFF_NUMRECS);
  if (n === 0 || n > g.maxNodeRecs) return false;
  for (let i = 0; i < n; i++) {
    const ptr = b.readUInt32BE(g.ptrOffset(i));
    if (ptr === fsbno || !isTreeBlock(ptr)) return false;
  }
  return true;
}

/**
 * The attribute fork's value blocks as the rmap gives them, and those a kept
 * attribute has claimed: a value must lie in blocks of the first and none of
 * the second, and match the crc its record keeps.
 */
class ValuePlacement {
  /** Per AG: value blocks a kept attribute holds (the rest are reaped). */
  readonly claimed = new Map<number, ExtentBitmap>();

  constructor(private readonly device: Device, private readonly geo: Geometry, private readonly owned: Map<number, ExtentBitmap>) {}

  /** Why a value of n blocks at fsbno cannot be there, or null when it can. */
  whyNotAt(fsbno: number, n: number): string | null {
    const agno = this.geo.agnoOf(fsbno);
    const agbno = this.geo.agbnoOf(fsbno);
    if (agno >= this.geo.agCount || agbno + n > this.geo.agLength(agno)) return `block ${fsbno} is outside the filesystem`;
    if (this.owned.get(agno)?.covers(agbno, n) !== true) return `block ${fsbno} is not the attribute fork's`;
    if (this.claimed.get(agno)?.overlaps(agbno, n) === true) return `block ${fsbno} holds another attribute's value`;
    return null;
  }

  /** len bytes at fsbno. */
  read(fsbno: number, len: number): Buffer {
    const value = Buffer.alloc(len);
    this.device.read(fsbno * BLOCK_SIZE, value, 0, len);
    return value;
  }

  /** Whether len bytes at fsbno match crc. */
  matches(fsbno: number, len: number, crc: number): boolean {
    return valueCrc(this.read(fsbno, len)) === crc;
  }

  claim(fsbno: number, n: number): void {
    const agno = this.geo.agnoOf(fsbno);
    let k = this.claimed.get(agno);
    if (k === undefined) this.claimed.set(agno, (k = new ExtentBitmap()));
    k.add(this.geo.agbnoOf(fsbno), n);
  }

  /** A claimed value given up after all: its blocks are reaped. */
  unclaim(fsbno: number, n: number): void {
    this.claimed.get(this.geo.agnoOf(fsbno))?.subtract(this.geo.agbnoOf(fsbno), n);
  }

  /**
   * A record whose length is wrong: the length (over 64 bytes, in the free
   * owned blocks from fsbno on) whose bytes match crc, or null. The crc is
   * carried forward a byte at a time: one pass over at most 64 KiB.
   */
  lengthAt(fsbno: number, crc: number): number | null {
    let run = 0;
    while (run < valueBlocks(ATTR_VALUE_MAX) && this.whyNotAt(fsbno + run, 1) === null && this.geo.agnoOf(fsbno + run) === this.geo.agnoOf(fsbno)) run++;
    if (run === 0) return null;
    const bytes = Buffer.alloc(run * BLOCK_SIZE);
    this.device.read(fsbno * BLOCK_SIZE, bytes, 0, bytes.length);
    let sum = 0;
    for (let len = 1; len <= Math.min(bytes.length, ATTR_VALUE_MAX); len++) {
      sum = native.crc32c(bytes, len - 1, 1, sum);
      if (len > ATTR_INLINE_MAX && sum >>> 0 === crc) return len;
    }
    return null;
  }

  /** A record whose block is wrong: the first free owned place whose len bytes match crc, or null. */
  blockFor(len: number, crc: number): number | null {
    const n = valueBlocks(len);
    for (const [agno, set] of [...this.owned].sort((a, b) => a[0] - b[0])) {
      const free = set.clone();
      const k = this.claimed.get(agno);
      if (k !== undefined) free.subtractAll(k);
      for (const { start, len: runLen } of free.extents()) {
        for (let s = start; s + n <= start + runLen; s++) {
          const fsbno = this.geo.fsbno(agno, s);
          if (this.matches(fsbno, len, crc)) return fsbno;
        }
      }
    }
    return null;
  }
}

/**
 * The length (1 to 64) of the record's inline bytes that matches crc, or
 * null. Not 0: an empty value's crc is 0, what a zeroed crc field reads.
 */
function inlineLength(rec: Buffer, crc: number): number | null {
  const area = inlineValueArea(rec, 0);
  let sum = 0;
  for (let len = 1; len <= area.length; len++) {
    sum = native.crc32c(area, len - 1, 1, sum);
    if (sum >>> 0 === crc) return len;
  }
  return null;
}

/**
 * Gives each salvaged record's out-of-line value its blocks: first every
 * value where its record says and its crc verifies; then, the rmap being the
 * second source of where values lie, a record whose length or block is wrong
 * (its crc fails, or its length and place do not agree) gets the length (in
 * its record, or at its block) or the block (in the fork's value blocks no
 * other attribute holds) whose bytes match its crc. The rest are dropped and
 * named. The records kept, fixed where their value was found elsewhere.
 */
function placeValues(salvaged: readonly SalvagedRecord[], values: ValuePlacement, changes: string[]): Buffer[] {
  const kept: Buffer[] = [];
  const unplaced: SalvagedRecord[] = [];
  for (const s of salvaged) {
    const { entry: e } = s;
    const n = valueBlocks(e.valueLen);
    if (s.valueWrong === null && n === 0) {
      kept.push(s.rec);
    } else if (s.valueWrong === null && values.whyNotAt(e.valueBlock, n) === null && values.matches(e.valueBlock, e.valueLen, e.valueCrc)) {
      values.claim(e.valueBlock, n);
      kept.push(s.rec);
    } else {
      unplaced.push(s);
    }
  }
  for (const s of unplaced) {
    const { entry: e, rec } = s;
    const name = e.name.toString();
    // Inline (no block): the length of the record's inline bytes that matches; else at its block; else anywhere.
    const len = e.valueBlock === 0 ? inlineLength(rec, e.valueCrc) : values.lengthAt(e.valueBlock, e.valueCrc);
    const block = len === null && e.valueLen > ATTR_INLINE_MAX && e.valueLen <= ATTR_VALUE_MAX ? values.blockFor(e.valueLen, e.valueCrc) : null;
    if (len !== null) {
      if (e.valueBlock !== 0) values.claim(e.valueBlock, valueBlocks(len));
      setValuePlace(rec, 0, len, e.valueBlock);
      changes.push(`${name}: value length ${e.valueLen} -> ${len} (found by its checksum${e.valueBlock !== 0 ? ` at block ${e.valueBlock}` : ' in its record'})`);
      kept.push(rec);
    } else if (block !== null) {
      values.claim(block, valueBlocks(e.valueLen));
      setValuePlace(rec, 0, e.valueLen, block);
      changes.push(`${name}: value block ${e.valueBlock} -> ${block} (found by its checksum)`);
      kept.push(rec);
    } else {
      const why = s.valueWrong ?? values.whyNotAt(e.valueBlock, valueBlocks(e.valueLen)) ?? `block ${e.valueBlock} did not match its checksum`;
      changes.push(`${name}: value dropped (${why})`);
    }
  }
  return kept;
}

/**
 * The records kept less the POSIX ACLs the kernel would refuse (or a default
 * ACL on a non-directory), each named as dropped; their value blocks are
 * given back to be reaped. The mode stays as it is (what ext4 shows once an
 * ACL is gone).
 */
function dropMalformedAcls(records: Buffer[], values: ValuePlacement, isDir: boolean, changes: string[]): Buffer[] {
  return records.filter((rec) => {
    const e = decodeAttrEntry(rec, 0);
    if (!POSIX_ACL_NAMES.has(e.name.toString('latin1'))) return true;
    const value = e.valueBlock === 0 ? inlineValueArea(rec, 0).subarray(0, e.valueLen) : values.read(e.valueBlock, e.valueLen);
    const why = posixAclProblem(e.name, value, isDir);
    if (why === null) return true;
    if (e.valueBlock !== 0) values.unclaim(e.valueBlock, valueBlocks(e.valueLen));
    changes.push(`${e.name.toString()}: value dropped (${why.slice(e.name.length + 2)})`);
    return false;
  });
}

/** Salvaged records (sorted by hash) as a bulk-load source, collision indexes counted as they go out. */
function attrRecordSource(records: readonly Buffer[]): RecordSource {
  let i = 0;
  let prevHash = -1;
  let cidx = 0;
  return {
    next(dst, off) {
      const r = records[i++]!;
      r.copy(dst, off);
      const h = r.readUInt32BE(0);
      cidx = h === prevHash ? cidx + 1 : 0;
      prevHash = h;
      setCollisionIndex(dst, off, cidx);
    },
  };
}
