/**
 * Online repair of a symlink's target (the method of XFS's
 * fs/xfs/scrub/symlink_repair.c, our own way). A target of up to
 * DATA_FORK_SIZE bytes lives in the inode (local); a longer one in one data
 * block. The target is salvaged where it verifies -- the right length, no
 * NUL byte -- else cut at its first NUL byte when something is left, else
 * the link is replaced by a dummy target that says so, and the report names
 * what happened.
 *
 * A block-held target is found through the rmap (owner-blocks.ts: the
 * block the inode owns at file offset 0), so a damaged block map loses
 * nothing. The commit (ONE transaction) writes the target back (local when
 * it fits, else the salvaged block as the one extent) and reaps every other
 * data and block-map block the inode held.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { BLOCK_SIZE } from '../format/superblock';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../rmap/rmap-btree';
import { rmapFind } from '../rmap/rmap';
import { DATA_FORK_SIZE, FORK_EXTENTS, FORK_LOCAL, S_IFLNK, decodeExtent, encodeExtent } from '../inode/inode-format';
import type { Inode } from '../inode/inode';
import { SYMLINK_MAX } from '../fs/rmapfs';
import type { Rmapfs } from '../fs/rmapfs';
import type { FileRepairOptions, FileRepairResult } from './file-repair';
import type { ExtentBitmap } from './bitmap';
import { RepairPacing, collectOwnerBlocks } from './owner-blocks';
import type { OwnerBlocks } from './owner-blocks';
import { reapInodeBlocks } from './reap';

const log = createDebug('rmapfs:repair');

/** What a symlink whose target could not be recovered points at (as XFS's repair does, a sentence). */
export const LOST_SYMLINK_TARGET = 'the target of this symbolic link could not be recovered';

/** The rmap's records of a file's data blocks, and of its block-map btree blocks. */
const DATA_ROLE = (flags: number): boolean => (flags & (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK)) === 0;
const BMBT_ROLE = (flags: number): boolean => (flags & RMAP_BMBT_BLOCK) !== 0 && (flags & RMAP_ATTR_FORK) === 0;

/**
 * The target in `bytes`: `lengths` tried in order (each must be 1..max with
 * no NUL byte), else everything before the first NUL byte; null when
 * nothing is left.
 */
function salvageTarget(bytes: Buffer, lengths: readonly number[], max: number): { target: Buffer; cut: boolean } | null {
  for (const len of lengths) {
    if (Number.isInteger(len) && len >= 1 && len <= Math.min(max, bytes.length) && !bytes.subarray(0, len).includes(0)) {
      return { target: Buffer.from(bytes.subarray(0, len)), cut: false };
    }
  }
  const nul = bytes.subarray(0, Math.min(max, bytes.length)).indexOf(0);
  const len = nul < 0 ? Math.min(max, bytes.length) : nul;
  return len >= 1 ? { target: Buffer.from(bytes.subarray(0, len)), cut: true } : null;
}

/** Repairs symlink `ino`'s target online (see the top of this file). */
export async function repairSymlink(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  const inode = fsx.inodes.get(ino);
  if (inode.type !== S_IFLNK) throw new RmapfsError('EINVAL', `inode ${ino} is not a symlink`);
  const pacing = new RepairPacing(options, `symlink ${ino}`);
  // A local target needs no rmap: nothing outside the inode holds it.
  const owned = inode.format === FORK_LOCAL ? null
    : await collectOwnerBlocks(fsx.fs, ino, [DATA_ROLE, BMBT_ROLE], pacing) as [OwnerBlocks, OwnerBlocks];
  try {
    for (const c of owned ?? []) {
      c.throwIfAborted();
      c.close();
    }
    const changes: string[] = [];
    const c0 = process.hrtime.bigint();
    fsx.fs.run(() => commitSymlink(fsx, ino, owned, changes));
    const commitPauseMs = Number(process.hrtime.bigint() - c0) / 1e6;
    log('symlink %d repaired: %s', ino, changes.join('; ') || 'nothing to change');
    return { type: 'symlink', ino, path: null, changes, commitPauseMs };
  } finally {
    for (const c of owned ?? []) c.close();
  }
}

/** The inode's own idea of where its target's block is (its first extent), or null. */
function mappedBlock(inode: Inode): number | null {
  if (inode.format !== FORK_EXTENTS || inode.nextents < 1) return null;
  const { buf, offset } = inode.dataFork();
  return decodeExtent(buf.data, offset).fsbno;
}

function commitSymlink(fsx: Rmapfs, ino: number, owned: [OwnerBlocks, OwnerBlocks] | null, changes: string[]): void {
  const fs = fsx.fs;
  const geo = fs.geo;
  const inode = fsx.inodes.get(ino);
  changes.length = 0; // a transaction run again starts over
  let salvaged: { target: Buffer; cut: boolean } | null = null;
  let fromBlock: number | null = null;
  const dataBlocks = owned?.[0].current() ?? new Map<number, ExtentBitmap>();
  const bmbtBlocks = owned?.[1].current() ?? new Map<number, ExtentBitmap>();
  if (owned === null) {
    const { buf, offset } = inode.dataFork();
    salvaged = salvageTarget(buf.data.subarray(offset, offset + DATA_FORK_SIZE), [inode.nextents, inode.size], DATA_FORK_SIZE);
    if (salvaged !== null && !salvaged.cut && salvaged.target.length !== inode.nextents) {
      changes.push(`local target length ${inode.nextents} -> ${salvaged.target.length} (its size)`);
    }
  } else {
    // The block the rmap gives the inode at file offset 0.
    for (const [agno, set] of dataBlocks) {
      set.walk((start, len) => {
        for (let agbno = start; agbno < start + len && fromBlock === null; agbno++) {
          const r = rmapFind(fs.alloc.ag(agno).rmap, agbno);
          if (r !== null && r.offset + (agbno - r.startblock) === 0) fromBlock = geo.fsbno(agno, agbno);
        }
      });
    }
    if (fromBlock !== null) {
      const block = Buffer.alloc(BLOCK_SIZE);
      fs.device.read(fromBlock * BLOCK_SIZE, block, 0, BLOCK_SIZE);
      salvaged = salvageTarget(block, [inode.size], SYMLINK_MAX);
      const mapped = mappedBlock(inode);
      if (salvaged !== null && mapped !== fromBlock) changes.push(`target recovered from block ${fromBlock} (the block map pointed at ${mapped ?? 'nothing'})`);
    }
  }
  const target = salvaged?.target ?? Buffer.from(LOST_SYMLINK_TARGET);
  if (salvaged === null) changes.push(`target lost: replaced by '${LOST_SYMLINK_TARGET}'`);
  else if (salvaged.cut) changes.push(`target's length did not verify: cut to the ${target.length} bytes before its first NUL byte`);
  // The block kept (a long target stays where it is); every other data and block-map block goes.
  const keep = target.length > DATA_FORK_SIZE ? fromBlock : null;
  let freed = 0;
  for (const [agno, set] of dataBlocks) {
    const drop = set.clone();
    if (keep !== null && geo.agnoOf(keep) === agno) drop.subtract(geo.agbnoOf(keep), 1);
    freed += reapInodeBlocks(fs.alloc, agno, drop, ino, 0);
  }
  for (const [agno, set] of bmbtBlocks) freed += reapInodeBlocks(fs.alloc, agno, set, ino, RMAP_BMBT_BLOCK);
  const { buf, offset } = inode.dataFork();
  buf.data.fill(0, offset, offset + DATA_FORK_SIZE);
  if (keep === null) {
    target.copy(buf.data, offset);
    fs.cache.markDirty(buf);
    inode.format = FORK_LOCAL;
    inode.nextents = target.length;
  } else {
    encodeExtent({ fileoff: 0, blockcount: 1, fsbno: keep, unwritten: false }, buf.data, offset);
    fs.cache.markDirty(buf);
    inode.format = FORK_EXTENTS;
    inode.nextents = 1;
  }
  inode.dataRoot = 0;
  inode.dataHeight = 0;
  inode.size = target.length;
  inode.nblocks = inode.nblocks - freed;
}
