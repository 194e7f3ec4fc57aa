/**
 * Filesystem geometry: how the device is cut into allocation groups, where
 * the log sits, and how block and inode numbers are formed.
 *
 * - Filesystem block number (fsbno) = agno * agBlocks + agbno.
 * - Inode number = agno * 2^32 + agino, agino = agbno * inodesPerBlock + slot;
 *   inodes are 512 bytes, 8 to a block, allocated in chunks of 64 (8 blocks,
 *   8-block aligned). Inode numbers stay below 2^53 while agCount < 2^21.
 */
import { RmapfsError } from '../errors';
import { BLOCK_SIZE } from './superblock';

export const INODE_SIZE = 512;
export const INODES_PER_BLOCK = BLOCK_SIZE / INODE_SIZE;
export const CHUNK_BLOCKS = 8;
/** Largest AG: AG block numbers and AG inode numbers must fit in u32. */
export const MAX_AG_BLOCKS = 1 << 28;
/** Smallest AG we make (room for headers, btree roots, the free list and some space). */
export const MIN_AG_BLOCKS = 256;
export const MIN_LOG_BLOCKS = 256;
export const MAX_LOG_BLOCKS = 32768;
const TWO32 = 0x100000000;

export interface FsGeometry {
  uuid: Buffer;
  totalBlocks: number;
  agBlocks: number;
  agCount: number;
  logStart: number;
  logBlocks: number;
}

export interface GeometryRequest {
  totalBlocks: number;
  agCount?: number;
  agBlocks?: number;
  logBlocks?: number;
}

/** Chooses AG size/count and log placement for a device of totalBlocks blocks. */
export function planGeometry(req: GeometryRequest): Omit<FsGeometry, 'uuid'> {
  const total = Math.floor(req.totalBlocks);
  if (req.agCount !== undefined && req.agBlocks !== undefined) {
    throw new RmapfsError('EINVAL', 'give --ag-count or --ag-size, not both');
  }
  let agBlocks: number;
  if (req.agBlocks !== undefined) {
    agBlocks = req.agBlocks;
  } else if (req.agCount !== undefined) {
    if (!Number.isInteger(req.agCount) || req.agCount < 1) throw new RmapfsError('EINVAL', `bad AG count ${req.agCount}`);
    agBlocks = Math.ceil(total / req.agCount);
  } else {
    // Four AGs once each can be at least 16 MiB; more as the device grows past 4 TiB.
    const count = total >= 4 * 4096 ? Math.max(4, Math.ceil(total / MAX_AG_BLOCKS)) : 1;
    agBlocks = Math.ceil(total / count);
  }
  if (agBlocks > MAX_AG_BLOCKS) throw new RmapfsError('EINVAL', `AG size ${agBlocks} blocks is over the ${MAX_AG_BLOCKS}-block limit`);
  if (agBlocks < MIN_AG_BLOCKS) throw new RmapfsError('EINVAL', `AGs of ${agBlocks} blocks are too small (at least ${MIN_AG_BLOCKS})`);
  let agCount = Math.ceil(total / agBlocks);
  let usable = total;
  // A runt last AG too small to hold its own metadata is left unused.
  if (agCount > 1 && total - (agCount - 1) * agBlocks < MIN_AG_BLOCKS) {
    agCount--;
    usable = agCount * agBlocks;
  }
  // A roomy log: fewer checkpoints, and big metadata bursts (a 100,000-entry directory) stay in one force.
  const logBlocks = req.logBlocks ?? Math.min(MAX_LOG_BLOCKS, Math.max(MIN_LOG_BLOCKS, Math.floor(usable / 16)));
  const ag0 = Math.min(agBlocks, usable);
  const logStart = firstFreeAgbno(0);
  if (logStart + logBlocks + 16 > ag0) {
    throw new RmapfsError('ENOSPC', `the device is too small: ${total} blocks cannot hold the metadata and a ${logBlocks}-block log`);
  }
  return { totalBlocks: usable, agBlocks, agCount, logStart, logBlocks };
}

/** Blocks at the start of every AG that mkfs fills: sb, AG header, 4 btree roots, the first free list blocks. */
export const AG_FIXED_BLOCKS = 2 + 4;
export const MKFS_AGFL_BLOCKS = 16;

/** First AG block after the AG's fixed metadata (and its initial free list). */
export function firstFreeAgbno(_agno: number): number {
  return AG_FIXED_BLOCKS + MKFS_AGFL_BLOCKS;
}

export class Geometry implements FsGeometry {
  readonly uuid: Buffer;
  readonly totalBlocks: number;
  readonly agBlocks: number;
  readonly agCount: number;
  readonly logStart: number;
  readonly logBlocks: number;

  constructor(g: FsGeometry) {
    this.uuid = g.uuid;
    this.totalBlocks = g.totalBlocks;
    this.agBlocks = g.agBlocks;
    this.agCount = g.agCount;
    this.logStart = g.logStart;
    this.logBlocks = g.logBlocks;
  }

  agStart(agno: number): number {
    return agno * this.agBlocks;
  }

  agLength(agno: number): number {
    return agno < this.agCount - 1 ? this.agBlocks : this.totalBlocks - agno * this.agBlocks;
  }

  fsbno(agno: number, agbno: number): number {
    return agno * this.agBlocks + agbno;
  }

  agnoOf(fsbno: number): number {
    return Math.floor(fsbno / this.agBlocks);
  }

  agbnoOf(fsbno: number): number {
    return fsbno % this.agBlocks;
  }

  ino(agno: number, agino: number): number {
    return agno * TWO32 + agino;
  }

  inoAgno(ino: number): number {
    return Math.floor(ino / TWO32);
  }

  inoAgino(ino: number): number {
    return ino % TWO32;
  }

  /** The filesystem block holding an inode, and its byte offset there. */
  inoLocation(ino: number): { fsbno: number; offset: number } {
    const agino = this.inoAgino(ino);
    return {
      fsbno: this.fsbno(this.inoAgno(ino), Math.floor(agino / INODES_PER_BLOCK)),
      offset: (agino % INODES_PER_BLOCK) * INODE_SIZE,
    };
  }

  isValidIno(ino: number): boolean {
    const agno = this.inoAgno(ino);
    const agino = this.inoAgino(ino);
    return agno < this.agCount && agino >= AG_FIXED_BLOCKS * INODES_PER_BLOCK
      && Math.floor(agino / INODES_PER_BLOCK) < this.agLength(agno);
  }
}
