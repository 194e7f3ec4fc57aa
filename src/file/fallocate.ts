/**
 * fallocate(2) on a regular file: the modes Linux's FUSE passes to a daemon
 * (fs/fuse/file.c answers EOPNOTSUPP itself for every other bit), each run
 * inside the caller's one transaction, metadata first and data last, so an
 * ENOSPC part way rolls everything back with nothing on the device changed.
 *
 * - allocate (mode 0, KEEP_SIZE): every hole in the range gets unwritten
 *   extents (no data written); mode 0 grows the size to the range's end.
 * - punch (PUNCH_HOLE | KEEP_SIZE): whole blocks unmapped and freed (busy
 *   until the log force that records the free, as every free of file data),
 *   the bytes of partly covered written blocks zeroed in place.
 * - zero (ZERO_RANGE, optionally KEEP_SIZE): whole written blocks become
 *   unwritten (in place: nothing freed or allocated for them), holes get
 *   unwritten extents, the bytes of partly covered written blocks zeroed.
 *
 * Large ranges cost a few extents' metadata, not their size.
 */
import { RmapfsError } from '../errors';
import { BLOCK_SIZE } from '../format/superblock';
import type { Inode } from '../inode/inode';
import { BlockMap } from './bmap';
import { MAX_FILE_SIZE, allocateUnwritten, freeExtents, setExtentState } from './file';
import type { FileContext } from './file';

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
export const FALLOC_FL_WRITE_ZEROES = 0x80;

/** The operations one fallocate(2) mode field can name (the kernel's FALLOC_FL_MODE_MASK; 0 = allocate). */
const MODE_MASK = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_ZERO_RANGE | FALLOC_FL_INSERT_RANGE
  | FALLOC_FL_UNSHARE_RANGE | FALLOC_FL_WRITE_ZEROES;

export type FallocateOp = 'allocate' | 'punch' | 'zero';

/**
 * What a fallocate(2) call asks for, by the rules vfs_fallocate applies
 * before any filesystem sees it (so an in-process caller gets the errno a
 * system call would): EINVAL for a negative offset or a length <= 0;
 * EOPNOTSUPP for unknown bits, a punch without KEEP_SIZE, two operations at
 * once, and the operations rmapfs does not do (collapse and insert range
 * never reach a FUSE daemon; unshare and write-zeroes neither).
 */
export function fallocateOp(mode: number, offset: number, length: number): FallocateOp {
  if (!(offset >= 0) || !(length > 0)) throw new RmapfsError('EINVAL', `fallocate of ${length} bytes at ${offset}`);
  if ((mode & ~(MODE_MASK | FALLOC_FL_KEEP_SIZE)) !== 0) {
    throw new RmapfsError('EOPNOTSUPP', `fallocate mode 0x${mode.toString(16)} has unknown flags`);
  }
  switch (mode & MODE_MASK) {
    case 0: return 'allocate';
    case FALLOC_FL_ZERO_RANGE: return 'zero';
    case FALLOC_FL_PUNCH_HOLE:
      if ((mode & FALLOC_FL_KEEP_SIZE) === 0) throw new RmapfsError('EOPNOTSUPP', 'a hole punch must keep the size (FALLOC_FL_KEEP_SIZE)');
      return 'punch';
    default:
      throw new RmapfsError('EOPNOTSUPP', `fallocate mode 0x${mode.toString(16)} is not supported`);
  }
}

/** Runs one fallocate(2) call on a regular file, inside the caller's transaction. */
export function fallocateFile(ctx: FileContext, inode: Inode, mode: number, offset: number, length: number): void {
  const op = fallocateOp(mode, offset, length);
  const end = offset + length;
  if (end > MAX_FILE_SIZE) throw new RmapfsError('EFBIG', `fallocate to ${end} bytes is past the largest file`);
  const keepSize = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
  const map = new BlockMap(inode, ctx.alloc, ctx.geo);
  const first = Math.floor(offset / BLOCK_SIZE);
  const last = Math.ceil(end / BLOCK_SIZE); // exclusive
  // Blocks the range covers whole.
  const firstWhole = Math.ceil(offset / BLOCK_SIZE);
  const endWhole = Math.floor(end / BLOCK_SIZE);
  const sizeBefore = inode.size;
  switch (op) {
    case 'allocate':
      allocateUnwritten(ctx, inode, map, first, last);
      break;
    case 'punch':
      if (firstWhole < endWhole) freeExtents(ctx, inode, map.removeRange(firstWhole, endWhole - firstWhole));
      zeroPartialBlocks(ctx, inode, map, offset, end);
      break;
    case 'zero':
      // Metadata first (an ENOSPC rolls back before any byte is zeroed), then the partial blocks' bytes.
      if (firstWhole < endWhole) setExtentState(ctx, inode, map, firstWhole, endWhole, true);
      allocateUnwritten(ctx, inode, map, first, last);
      zeroPartialBlocks(ctx, inode, map, offset, end);
      break;
  }
  if (!keepSize && end > inode.size) inode.size = end;
  if (op === 'allocate' && inode.size === sizeBefore) inode.touch('ctime');
  else inode.touch('mtime', 'ctime');
}

/**
 * Zeroes the bytes of [offset, end) that lie in blocks the range covers
 * only in part, where those blocks hold written data (holes and unwritten
 * blocks read as zeroes already; bytes past EOF are zero in a written block).
 */
function zeroPartialBlocks(ctx: FileContext, inode: Inode, map: BlockMap, offset: number, end: number): void {
  const head = Math.floor(offset / BLOCK_SIZE);
  const tail = Math.floor((end - 1) / BLOCK_SIZE);
  for (const block of tail === head ? [head] : [head, tail]) {
    const from = Math.max(offset, block * BLOCK_SIZE);
    const rangeEnd = Math.min(end, (block + 1) * BLOCK_SIZE);
    if (rangeEnd - from === BLOCK_SIZE) continue; // a whole block: done as metadata
    const to = Math.min(rangeEnd, inode.size);
    if (to <= from) continue; // nothing inside EOF
    const { hit } = map.lookup(block);
    if (hit === null || hit.unwritten) continue;
    const diskPos = (hit.fsbno + (block - hit.fileoff)) * BLOCK_SIZE + (from - block * BLOCK_SIZE);
    ctx.device.write(diskPos, Buffer.alloc(to - from), 0, to - from);
    ctx.noteDataWritten();
  }
}
