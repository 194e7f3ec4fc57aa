/**
 * Regular file data: read, write at any offset, truncate both ways. Data
 * goes straight to its blocks on the device (never through the journal);
 * the filesystem syncs it before the log force that makes metadata point at
 * it (ordered mode), and freed blocks are not reused before that force
 * (busy extents), so a crash never shows a file someone else's old data.
 *
 * Unwritten extents (preallocated space, fallocate.ts) are mapped but read
 * as zeroes. A write into one converts exactly the blocks it touches, in the
 * same transaction that maps its data, the rest of a partly written block
 * zero-filled: until that transaction's log force (which syncs the data
 * first) the blocks stay unwritten, so a crash shows zeroes, never what the
 * blocks held before. Blocks wholly past EOF are never written ones:
 * preallocation past EOF is unwritten, and truncate frees what lies past
 * the new size.
 */
import type { Device } from '../io/device';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import { BLOCK_SIZE } from '../format/superblock';
import type { Inode } from '../inode/inode';
import { BlockMap } from './bmap';
import { MAX_EXTENT_LEN } from '../inode/inode-format';
import type { Extent } from '../inode/inode-format';
import { RmapfsError } from '../errors';
import { RMAP_UNWRITTEN } from '../rmap/rmap-btree';

/** Largest file: 2^32 blocks of 4 KiB (file offsets in the block map are u32). */
export const MAX_FILE_SIZE = 2 ** 32 * BLOCK_SIZE - 1;

/** File blocks a map can address (offsets are u32): a range "to the end of the map". */
const FILE_BLOCKS = 2 ** 32;

export interface FileContext {
  device: Device;
  alloc: Allocator;
  geo: Geometry;
  /** File data was written in place (the next log force must sync it first). */
  noteDataWritten(): void;
}

const zeroBlock = Buffer.alloc(BLOCK_SIZE);

/** Reads up to len bytes at pos (less at end of file); holes read as zeroes. */
export function readFile(ctx: FileContext, inode: Inode, pos: number, len: number): Buffer {
  const size = inode.size;
  if (pos >= size || len <= 0) return Buffer.alloc(0);
  const end = Math.min(size, pos + len);
  // Not zeroed up front: every byte is either read from the device or zeroed below as a hole.
  const out = Buffer.allocUnsafe(end - pos);
  const map = new BlockMap(inode, ctx.alloc, ctx.geo);
  let at = pos;
  while (at < end) {
    const fileoff = Math.floor(at / BLOCK_SIZE);
    const { hit, next } = map.lookup(fileoff);
    if (hit === null || hit.unwritten) {
      // A hole (or unwritten space): zeroes up to the next mapping.
      const holeEnd = hit !== null ? (hit.fileoff + hit.blockcount) * BLOCK_SIZE
        : next !== null ? next.fileoff * BLOCK_SIZE : end;
      out.fill(0, at - pos, Math.min(end, holeEnd) - pos);
      at = Math.min(end, holeEnd);
      continue;
    }
    const runEnd = Math.min(end, (hit.fileoff + hit.blockcount) * BLOCK_SIZE);
    const diskPos = (hit.fsbno + (fileoff - hit.fileoff)) * BLOCK_SIZE + (at % BLOCK_SIZE);
    ctx.device.read(diskPos, out, at - pos, runEnd - at);
    at = runEnd;
  }
  return out;
}

/**
 * Writes data at pos, allocating blocks for holes (contiguous with the
 * preceding extent when it can), and extends the size. Runs inside the
 * caller's transaction.
 */
export function writeFile(ctx: FileContext, inode: Inode, pos: number, data: Buffer): number {
  if (data.length === 0) return 0;
  if (pos + data.length > MAX_FILE_SIZE) throw new RmapfsError('EFBIG', `a write to ${pos + data.length} bytes is past the largest file`);
  const map = new BlockMap(inode, ctx.alloc, ctx.geo);
  const end = pos + data.length;
  const oldSize = inode.size;
  // 1. Map every hole first: metadata only, so an ENOSPC here rolls the transaction back before any
  //    data has moved -- a failed write must not have overwritten what the file held.
  const runs: { ext: Extent; fresh: boolean }[] = [];
  let at = pos;
  while (at < end) {
    const fileoff = Math.floor(at / BLOCK_SIZE);
    const lastBlock = Math.floor((end - 1) / BLOCK_SIZE);
    const { hit, next, prev } = map.lookup(fileoff);
    let ext: Extent;
    let fresh = false;
    if (hit !== null && hit.unwritten) {
      // Preallocated space: the blocks this write touches become written ones, nothing else.
      const to = Math.min(lastBlock + 1, hit.fileoff + hit.blockcount);
      setExtentState(ctx, inode, map, fileoff, to, false);
      ext = { fileoff, blockcount: to - fileoff, fsbno: hit.fsbno + (fileoff - hit.fileoff), unwritten: false };
      fresh = true; // what the blocks hold is not the file's: zeroes around the data
    } else if (hit !== null) {
      ext = hit;
    } else {
      // Allocate for the hole, up to the next mapping, as contiguous with the previous extent as we can.
      const want = Math.min(lastBlock + 1, next !== null ? next.fileoff : Infinity) - fileoff;
      const goal = prev !== null ? prev.fsbno + prev.blockcount + (fileoff - (prev.fileoff + prev.blockcount)) : null;
      const got = ctx.alloc.alloc({ owner: inode.ino, offset: fileoff, minLen: 1, maxLen: Math.min(want, 1 << 20), goal });
      ext = { fileoff, blockcount: got.len, fsbno: got.fsbno, unwritten: false };
      map.insert(ext);
      inode.nblocks = inode.nblocks + got.len;
      fresh = true;
    }
    runs.push({ ext, fresh });
    at = Math.min(end, (ext.fileoff + ext.blockcount) * BLOCK_SIZE);
  }
  // 2. The data, run by run.
  at = pos;
  for (const { ext, fresh } of runs) {
    const runEnd = Math.min(end, (ext.fileoff + ext.blockcount) * BLOCK_SIZE);
    const diskPos = (byte: number): number => (ext.fsbno - ext.fileoff) * BLOCK_SIZE + byte;
    while (at < runEnd) {
      const blockStart = Math.floor(at / BLOCK_SIZE) * BLOCK_SIZE;
      if (at === blockStart && runEnd - at >= BLOCK_SIZE) {
        // Whole blocks in one write.
        const wholeEnd = Math.floor(runEnd / BLOCK_SIZE) * BLOCK_SIZE;
        ctx.device.write(diskPos(at), data, at - pos, wholeEnd - at);
        at = wholeEnd;
      } else {
        // Part of one block: keep the rest of what it holds.
        const chunkEnd = Math.min(runEnd, blockStart + BLOCK_SIZE);
        writePartial(ctx, diskPos(blockStart), blockStart / BLOCK_SIZE, at - blockStart, data, at - pos, chunkEnd - at, fresh, oldSize);
        at = chunkEnd;
      }
    }
  }
  ctx.noteDataWritten();
  if (end > oldSize) inode.size = end;
  inode.touch('mtime', 'ctime');
  return data.length;
}

/** Writes part of one block, keeping the rest of it (zeroes where it held nothing). */
function writePartial(ctx: FileContext, diskPos: number, fileBlock: number, inBlock: number, data: Buffer,
  dataOff: number, len: number, fresh: boolean, oldSize: number): void {
  const block = Buffer.alloc(BLOCK_SIZE);
  const hadData = !fresh && fileBlock * BLOCK_SIZE < oldSize;
  if (hadData) {
    ctx.device.read(diskPos, block, 0, BLOCK_SIZE);
    // Bytes past the old end of file must read as zeroes once the file grows over them.
    const validEnd = oldSize - fileBlock * BLOCK_SIZE;
    if (validEnd < BLOCK_SIZE) block.fill(0, Math.max(0, validEnd));
  }
  data.copy(block, inBlock, dataOff, dataOff + len);
  ctx.device.write(diskPos, block, 0, BLOCK_SIZE);
}

/**
 * Sets the file's size. A size at or below the old one frees every block
 * past it (preallocated ones past the old EOF too, as XFS does) and zeroes
 * the rest of the last block; growing keeps what lies past the old EOF
 * (unwritten: it reads as zeroes).
 */
export function truncateFile(ctx: FileContext, inode: Inode, size: number): void {
  if (size > MAX_FILE_SIZE) throw new RmapfsError('EFBIG', `size ${size} is past the largest file`);
  const old = inode.size;
  if (size <= old) {
    const map = new BlockMap(inode, ctx.alloc, ctx.geo);
    const firstGone = Math.ceil(size / BLOCK_SIZE);
    freeExtents(ctx, inode, map.removeRange(firstGone, FILE_BLOCKS - firstGone));
    if (size < old && size % BLOCK_SIZE !== 0) {
      const { hit } = map.lookup(Math.floor(size / BLOCK_SIZE));
      if (hit !== null && !hit.unwritten) {
        const diskPos = (hit.fsbno + (Math.floor(size / BLOCK_SIZE) - hit.fileoff)) * BLOCK_SIZE + (size % BLOCK_SIZE);
        ctx.device.write(diskPos, zeroBlock, 0, BLOCK_SIZE - (size % BLOCK_SIZE));
        ctx.noteDataWritten();
      }
    }
  }
  inode.size = size;
  inode.touch('mtime', 'ctime');
}

/** Frees every data block and the block-map btree (the inode is being deleted). */
export function freeAllData(ctx: FileContext, inode: Inode): void {
  const map = new BlockMap(inode, ctx.alloc, ctx.geo);
  const all = map.extents();
  if (all.length > 0) {
    const last = all[all.length - 1]!;
    freeExtents(ctx, inode, map.removeRange(0, last.fileoff + last.blockcount));
  }
  map.destroyTree();
}

/** Frees extents removeRange took out of the map, and counts them off the inode's blocks. */
export function freeExtents(ctx: FileContext, inode: Inode, extents: Extent[]): void {
  let blocks = 0;
  for (const e of extents) {
    // The rmap holds a file extent as one record even across our pieces; free per AG-contiguous piece.
    ctx.alloc.free(e.fsbno, e.blockcount, inode.ino, e.fileoff, e.unwritten ? RMAP_UNWRITTEN : 0);
    blocks += e.blockcount;
  }
  if (blocks > 0) inode.nblocks = inode.nblocks - blocks;
}

/**
 * Maps every hole in file blocks [first, end) with unwritten extents: space
 * the file owns and reads as zeroes, no data written (metadata only). ENOSPC
 * part way leaves the caller's transaction to roll back.
 */
export function allocateUnwritten(ctx: FileContext, inode: Inode, map: BlockMap, first: number, end: number): void {
  let at = first;
  while (at < end) {
    const { hit, next, prev } = map.lookup(at);
    if (hit !== null) {
      at = hit.fileoff + hit.blockcount;
      continue;
    }
    const holeEnd = Math.min(end, next !== null ? next.fileoff : end);
    // As contiguous with the previous extent as we can (the same disk distance as the file distance).
    const goal = prev !== null ? prev.fsbno + prev.blockcount + (at - (prev.fileoff + prev.blockcount)) : null;
    const got = ctx.alloc.alloc({
      owner: inode.ino, offset: at, flags: RMAP_UNWRITTEN, minLen: 1, maxLen: Math.min(holeEnd - at, MAX_EXTENT_LEN), goal,
    });
    map.insert({ fileoff: at, blockcount: got.len, fsbno: got.fsbno, unwritten: true });
    inode.nblocks = inode.nblocks + got.len;
    at += got.len;
  }
}

/**
 * Marks what the file maps in blocks [first, end) written or unwritten,
 * extent by extent, in the block map and the rmap together (metadata only;
 * holes stay holes). Splitting an extent may spill the map into a btree,
 * joining may bring it back inline: `map` reads its format on every use.
 */
export function setExtentState(ctx: FileContext, inode: Inode, map: BlockMap, first: number, end: number, unwritten: boolean): void {
  let at = first;
  while (at < end) {
    const { hit, next } = map.lookup(at);
    if (hit === null) {
      at = next !== null ? next.fileoff : end;
      continue;
    }
    const to = Math.min(end, hit.fileoff + hit.blockcount);
    if (hit.unwritten !== unwritten) {
      const fsbno = hit.fsbno + (at - hit.fileoff);
      map.removeRange(at, to - at);
      ctx.alloc.setUnwritten(fsbno, to - at, inode.ino, at, unwritten);
      map.insert({ fileoff: at, blockcount: to - at, fsbno, unwritten });
    }
    at = to;
  }
}
