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
import { native } from '../native';
import { RmapfsError } from '../errors';
import type { Buf, BufOps } from '../io/buf-cache';
import type { BtreeOps } from './btree-ops';

export const BTREE_HDR_SIZE = 64;
export const OFF_MAGIC = 0;
export const OFF_LEVEL = 4;
export const OFF_NUMRECS = 6;
export const OFF_LEFTSIB = 8;
export const OFF_RIGHTSIB = 12;
export const OFF_BLKNO = 16;
export const OFF_LSN = 24;
export const OFF_UUID = 32;
export const OFF_OWNER = 48;
export const OFF_CRC = 56;
export const PTR_SIZE = 4;
/** No btree is taller than this (a 2-entry-per-node tree of 2^32 records). */
export const MAX_BTREE_HEIGHT = 32;

const TWO32 = 0x100000000;

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32BE(off) * TWO32 + b.readUInt32BE(off + 4);
}

export function writeU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / TWO32) >>> 0, off);
  b.writeUInt32BE(v >>> 0, off + 4);
}

/** Four ASCII characters as a big-endian magic number. */
export function magicOf(text: string): number {
  if (text.length !== 4) throw new Error(`magic must be 4 characters: ${text}`);
  return Buffer.from(text, 'latin1').readUInt32BE(0);
}

export function magicText(magic: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(magic >>> 0, 0);
  return /^[\x20-\x7e]{4}$/.test(b.toString('latin1')) ? b.toString('latin1') : `0x${(magic >>> 0).toString(16)}`;
}

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

export interface BlockHeader {
  magic: number;
  level: number;
  numrecs: number;
  leftsib: number;
  rightsib: number;
  blkno: number;
  lsn: number;
  uuid: Buffer;
  owner: number;
  crc: number;
}

export function readHeader(b: Buffer): BlockHeader {
  return {
    magic: b.readUInt32BE(OFF_MAGIC),
    level: b.readUInt16BE(OFF_LEVEL),
    numrecs: b.readUInt16BE(OFF_NUMRECS),
    leftsib: b.readUInt32BE(OFF_LEFTSIB),
    rightsib: b.readUInt32BE(OFF_RIGHTSIB),
    blkno: readU64(b, OFF_BLKNO),
    lsn: readU64(b, OFF_LSN),
    uuid: Buffer.from(b.subarray(OFF_UUID, OFF_UUID + 16)),
    owner: readU64(b, OFF_OWNER),
    crc: b.readUInt32BE(OFF_CRC),
  };
}

/** Fills in a fresh block's header (the rest of the buffer must be zero). */
export function initHeader(b: Buffer, magic: number, level: number, blkno: number, uuid: Buffer, owner: number): void {
  b.writeUInt32BE(magic >>> 0, OFF_MAGIC);
  b.writeUInt16BE(level, OFF_LEVEL);
  b.writeUInt16BE(0, OFF_NUMRECS);
  b.writeUInt32BE(0xffffffff, OFF_LEFTSIB);
  b.writeUInt32BE(0xffffffff, OFF_RIGHTSIB);
  writeU64(b, OFF_BLKNO, blkno);
  uuid.copy(b, OFF_UUID, 0, 16);
  writeU64(b, OFF_OWNER, owner);
}

/** crc32c of a block with its crc field counted as zero. */
export function blockCrc(b: Buffer, crcOffset: number): number {
  const saved = b.readUInt32BE(crcOffset);
  b.writeUInt32BE(0, crcOffset);
  const crc = native.crc32c(b, 0, b.length, 0);
  b.writeUInt32BE(saved, crcOffset);
  return crc;
}

/**
 * The read verifier and write hook of one btree's blocks: a block read from
 * the target must carry this type's magic, its own block number, our UUID and
 * owner, a sane level and count, and (on checksummed targets) a good crc32c.
 */
export function btreeBufOps(ops: BtreeOps, geo: BtreeGeometry, uuid: Buffer, owner: number,
  checksummed: boolean): BufOps {
  const where = (buf: Buf): string => `${ops.name} btree block ${buf.bno}`;
  return {
    name: ops.name,
    verifyRead(buf: Buf): void {
      const b = buf.data;
      if (checksummed && blockCrc(b, OFF_CRC) !== b.readUInt32BE(OFF_CRC)) {
        throw new RmapfsError('EFSBADCRC', `${where(buf)}: bad crc32c`);
      }
      const magic = b.readUInt32BE(OFF_MAGIC);
      if (magic !== ops.magic) {
        throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: bad magic ${magicText(magic)} (want ${magicText(ops.magic)})`);
      }
      const blkno = readU64(b, OFF_BLKNO);
      if (blkno !== buf.bno) throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: claims to be block ${blkno}`);
      if (!b.subarray(OFF_UUID, OFF_UUID + 16).equals(uuid)) {
        throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: belongs to another filesystem (uuid mismatch)`);
      }
      const blockOwner = readU64(b, OFF_OWNER);
      if (blockOwner !== owner) throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: owner ${blockOwner}, want ${owner}`);
      const level = b.readUInt16BE(OFF_LEVEL);
      if (level >= MAX_BTREE_HEIGHT) throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: level ${level} is too high`);
      const numrecs = b.readUInt16BE(OFF_NUMRECS);
      if (numrecs > geo.maxRecs(level)) {
        throw new RmapfsError('EFSCORRUPTED', `${where(buf)}: ${numrecs} records, at most ${geo.maxRecs(level)} fit`);
      }
    },
    prepareWrite(buf: Buf): void {
      if (checksummed) buf.data.writeUInt32BE(blockCrc(buf.data, OFF_CRC), OFF_CRC);
    },
  };
}
