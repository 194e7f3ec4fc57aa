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
 *    attribute fork is small: its reading is part of the pause): every leaf
 *    of this inode's attribute btree that verifies gives its records; a
 *    record that fails its checks is dropped, and so is one whose value is
 *    out of line and does not match its crc, or lies in blocks the rmap does
 *    not give the fork (or another attribute already holds) -- each named.
 *    The new tree is bulk-loaded into new blocks written in place, the root
 *    and counts put in the inode, the old tree's blocks and the values no
 *    attribute keeps reaped.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { Btree } from '../btree/btree';
import { BTREE_HDR_SIZE, BtreeGeometry, OFF_LEVEL, OFF_NUMRECS, btreeBufOps } from '../btree/btree-block';
import { computeBulkLoadGeometry } from '../btree/bulk-load';
import type { RecordSource } from '../btree/bulk-load';
import { BLOCK_SIZE } from '../format/superblock';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../rmap/rmap-btree';
import { ATTR_BTREE, ATTR_NONE } from '../inode/inode-format';
import { ForkBtreeStorage } from '../inode/fork-btree';
import { ATTR_REC_SIZE, attrBtreeOps, decodeAttrEntry, readOutOfLineValue, valueBlocks, valueCrc } from '../attr/attr';
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

const OFF_CIDX = 4;

/**
 * Rebuilds inode `ino`'s attribute btree online from what still verifies
 * (see the top of this file). The old tree stays in use until the commit.
 */
export async function repairXattrs(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  fsx.inodes.get(ino); // a free inode fails here
  const pacing = new RepairPacing(options, `inode ${ino}'s attributes`);
  const [btreeBlocks, valueBlockSet] = await collectOwnerBlocks(fsx.fs, ino, [ATTR_BTREE_ROLE, ATTR_VALUE_ROLE], pacing) as [OwnerBlocks, OwnerBlocks];
  try {
    btreeBlocks.throwIfAborted();
    valueBlockSet.throwIfAborted();
    // Nothing runs between here and the commit: the hooks have nothing more to hear.
    btreeBlocks.close();
    valueBlockSet.close();
    const changes: string[] = [];
    const c0 = process.hrtime.bigint();
    const kept = fsx.fs.run(() => commitXattrs(fsx, ino, btreeBlocks, valueBlockSet, changes));
    const commitPauseMs = Number(process.hrtime.bigint() - c0) / 1e6;
    log('inode %d: attributes rebuilt: %d kept, %d changes; pause %s ms', ino, kept, changes.length, commitPauseMs.toFixed(1));
    return { type: 'xattr', ino, path: null, changes, commitPauseMs };
  } finally {
    btreeBlocks.close();
    valueBlockSet.close();
  }
}

/** The commit: salvage, rebuild, reap. Returns the attributes kept. */
function commitXattrs(fsx: Rmapfs, ino: number, btreeBlocks: OwnerBlocks, valueBlockSet: OwnerBlocks, changes: string[]): number {
  const fs = fsx.fs;
  const alloc = fs.alloc;
  const geo = fs.geo;
  const inode = fsx.inodes.get(ino);
  changes.length = 0; // a transaction run again starts over
  const oldTree = btreeBlocks.current();
  const oldValues = valueBlockSet.current();
  const bufOps = btreeBufOps(attrBtreeOps, new BtreeGeometry(attrBtreeOps, BLOCK_SIZE), geo.uuid, ino, fs.cache.target.checksummed);
  // Value blocks a kept attribute holds (per AG): the rest are reaped.
  const keptValues = new Map<number, ExtentBitmap>();
  const records: Buffer[] = [];
  const names = new Set<string>();
  const badBlocks: number[] = [];
  let salvaged = 0;
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
        if (b.readUInt16BE(OFF_LEVEL) !== 0) continue;
        for (let i = 0; i < b.readUInt16BE(OFF_NUMRECS); i++) {
          const off = BTREE_HDR_SIZE + i * ATTR_REC_SIZE;
          const why = attrBtreeOps.checkRecord!(b, off);
          if (why !== null) {
            dropped++;
            changes.push(`attribute ${i} of block ${fsbno} dropped: ${why}`);
            continue;
          }
          const e = decodeAttrEntry(b, off);
          const name = `'${e.name.toString()}'`;
          if (names.has(e.name.toString('latin1'))) {
            changes.push(`duplicate attribute ${name} in block ${fsbno} dropped`);
            dropped++;
            continue;
          }
          const n = valueBlocks(e.valueLen);
          if (n > 0) {
            const vAgno = geo.agnoOf(e.valueBlock);
            const vStart = geo.agbnoOf(e.valueBlock);
            const owned = vAgno < geo.agCount && oldValues.get(vAgno)?.covers(vStart, n) === true;
            const taken = keptValues.get(vAgno)?.overlaps(vStart, n) === true;
            if (!owned || taken) {
              changes.push(`attribute ${name} dropped: its value (${e.valueLen} bytes at block ${e.valueBlock}) is ${taken ? "another attribute's" : 'not in blocks the attribute fork owns'}`);
              dropped++;
              continue;
            }
            if (valueCrc(readOutOfLineValue(fs.device, e)) !== e.valueCrc) {
              changes.push(`attribute ${name} dropped: its value (${e.valueLen} bytes at block ${e.valueBlock}) does not match its crc`);
              dropped++;
              continue;
            }
            let k = keptValues.get(vAgno);
            if (k === undefined) keptValues.set(vAgno, (k = new ExtentBitmap()));
            k.add(vStart, n);
          }
          names.add(e.name.toString('latin1'));
          records.push(Buffer.from(b.subarray(off, off + ATTR_REC_SIZE)));
          salvaged++;
        }
      }
    });
  }
  const lost = Math.max(0, inode.attrCount - salvaged - dropped);
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
    const k = keptValues.get(agno);
    if (k !== undefined) unkept.subtractAll(k);
    freed += reapInodeBlocks(alloc, agno, unkept, ino, RMAP_ATTR_FORK);
  }
  inode.nblocks = inode.nblocks - freed + blocks.length;
  if (inode.nblocks < 0) throw new RmapfsError('EFSCORRUPTED', `inode ${ino}: block count below zero after its attribute repair`);
  return records.length;
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
      dst.writeUInt16BE(cidx, off + OFF_CIDX);
    },
  };
}
