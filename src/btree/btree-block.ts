/**
 * The btree block: a self-describing 64-byte header, then records (leaves)
 * or keys followed by pointers (nodes). Big-endian, like XFS.
 *
 *   off size field
 *     0    4 magic      the btree type's magic number
 *     4    2 level      0 for leaves
 *     6    2 numrecs    records (or keys/pointers) in use
 *     8    4 leftsib    pointer, NULL_PTR at the left edge
 *    12    4 rightsib   pointer, NULL_PTR at the right edge
 *    16    8 blkno      this block's own block number on its target
 *    24    8 lsn        log sequence number of the last change (journal)
 *    32   16 uuid       filesystem (or xfile) UUID
 *    48    8 owner      AG number, inode number, or 0 in an xfile
 *    56    4 crc        crc32c of the block with this field zero (device only)
 *    60    4 pad        zero
 *    64      leaf:  numrecs records of recSize bytes
 *            node:  maxrecs keys of keySize bytes, then maxrecs u32 pointers
 */
import { RmapfsError } from '../errors';
import type { Buf, BufOps } from '../io/buf-cache';
import type { BtreeOps } from './btree-ops';
import {
  OFF_BLKNO, OFF_CRC, OFF_LSN, OFF_MAGIC, OFF_OWNER, OFF_UUID, blockCrc, magicOf, magicText, metaBufOps, readU64,
  stampMetaHeader, writeU64,
} from '../io/meta-header';

export const BTREE_HDR_SIZE = 64;
export const OFF_LEVEL = 4;
export const OFF_NUMRECS = 6;
export const OFF_LEFTSIB = 8;
export const OFF_RIGHTSIB = 12;
export { OFF_MAGIC, OFF_BLKNO, OFF_LSN, OFF_UUID, OFF_OWNER, OFF_CRC, readU64, writeU64, magicOf, magicText, blockCrc };
export const PTR_SIZE = 4;
/** No btree is taller than this (a 2-entry-per-node tree of 2^32 records). */
export const MAX_BTREE_HEIGHT = 32;

/** Records/keys per block for one btree type in blocks of blockSize bytes. */
export class BtreeGeometry {
  readonly maxLeafRecs: number;
  readonly maxNodeRecs: number;
  readonly minLeafRecs: number;
  readonly minNodeRecs: number;
  /** Byte offset of the pointer array in a node block. */
  readonly nodePtrOffset: number;

  constructor(readonly ops: BtreeOps, readonly blockSize: number) {
    const room = blockSize - BTREE_HDR_SIZE;
    const leafFit = Math.floor(room / ops.recSize);
    const nodeFit = Math.floor(room / (ops.keySize + PTR_SIZE));
    this.maxLeafRecs = Math.min(leafFit, ops.maxLeafRecs ?? leafFit);
    this.maxNodeRecs = Math.min(nodeFit, ops.maxNodeRecs ?? nodeFit);
    if (this.maxLeafRecs < 4 || this.maxNodeRecs < 4) {
      throw new Error(`btree ${ops.name}: fewer than 4 records per block`);
    }
    this.minLeafRecs = this.maxLeafRecs >> 1;
    this.minNodeRecs = this.maxNodeRecs >> 1;
    this.nodePtrOffset = BTREE_HDR_SIZE + this.maxNodeRecs * ops.keySize;
  }

  maxRecs(level: number): number {
    return level === 0 ? this.maxLeafRecs : this.maxNodeRecs;
  }

  minRecs(level: number): number {
    return level === 0 ? this.minLeafRecs : this.minNodeRecs;
  }

  /** Size of one entry at a level, for moving entries between blocks. */
  entrySize(level: number): number {
    return level === 0 ? this.ops.recSize : this.ops.keySize;
  }

  recOffset(i: number): number {
    return BTREE_HDR_SIZE + i * this.ops.recSize;
  }

  keyOffset(i: number): number {
    return BTREE_HDR_SIZE + i * this.ops.keySize;
  }

  ptrOffset(i: number): number {
    return this.nodePtrOffset + i * PTR_SIZE;
  }
}

/** Fills in a fresh block's header (the rest of the buffer must be zero). */
export function initHeader(b: Buffer, magic: number, level: number, blkno: number, uuid: Buffer, owner: number): void {
  stampMetaHeader(b, magic, blkno, uuid, owner);
  b.writeUInt16BE(level, OFF_LEVEL);
  b.writeUInt16BE(0, OFF_NUMRECS);
  b.writeUInt32BE(0xffffffff, OFF_LEFTSIB);
  b.writeUInt32BE(0xffffffff, OFF_RIGHTSIB);
}

/**
 * The read verifier and write hook of one btree's blocks: a block read from
 * the target must carry this type's magic, its own block number, our UUID and
 * owner, a sane level and count, and (on checksummed targets) a good crc32c.
 */
export function btreeBufOps(ops: BtreeOps, geo: BtreeGeometry, uuid: Buffer, owner: number,
  checksummed: boolean): BufOps {
  return metaBufOps({ what: `${ops.name} btree`, magic: ops.magic, uuid, owner, checksummed }, (buf: Buf) => {
    const b = buf.data;
    const level = b.readUInt16BE(OFF_LEVEL);
    if (level >= MAX_BTREE_HEIGHT) {
      throw new RmapfsError('EFSCORRUPTED', `${ops.name} btree block ${buf.bno}: level ${level} is too high`);
    }
    const numrecs = b.readUInt16BE(OFF_NUMRECS);
    if (numrecs > geo.maxRecs(level)) {
      throw new RmapfsError('EFSCORRUPTED',
        `${ops.name} btree block ${buf.bno}: ${numrecs} records, at most ${geo.maxRecs(level)} fit`);
    }
  });
}
