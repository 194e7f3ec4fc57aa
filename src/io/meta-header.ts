/**
 * The self-describing header every metadata block starts with (btree blocks,
 * superblocks, AG headers...). Bytes 4..15 belong to the block type; the rest
 * is common, so one verifier proves for any block that it is what the reader
 * expects, where the reader expects it, from this filesystem, and intact:
 *
 *   0  u32 magic     4..15 type-specific
 *  16  u64 blkno     the block's own number on its target
 *  24  u64 lsn       log sequence number of its last change
 *  32  16  uuid      filesystem UUID
 *  48  u64 owner     who owns the block (AG number, inode, special owner)
 *  56  u32 crc       crc32c of the whole block with this field zero
 *  60  u32 pad       zero
 */
import { native } from '../native';
import { RmapfsError } from '../errors';
import type { Buf, BufOps } from './buf-cache';

export const META_HDR_SIZE = 64;
export const OFF_MAGIC = 0;
export const OFF_BLKNO = 16;
export const OFF_LSN = 24;
export const OFF_UUID = 32;
export const OFF_OWNER = 48;
export const OFF_CRC = 56;

const TWO32 = 0x100000000;

export function readU64(b: Buffer, off: number): number {
  return b.readUInt32BE(off) * TWO32 + b.readUInt32BE(off + 4);
}

/**
 * A u64 as exact decimal text: a number above 2^53 (Number.MAX_SAFE_INTEGER) loses its low bits, and a
 * damaged field can hold any value. For reports of what is on disk; readU64 for arithmetic.
 */
export function u64Text(b: Buffer, off: number): string {
  return ((BigInt(b.readUInt32BE(off)) << 32n) | BigInt(b.readUInt32BE(off + 4))).toString();
}

/**
 * Whether b holds `uuid` (16 bytes) at off. Four word compares: Buffer.compare with offsets is a
 * native call with range checks, and this runs for every metadata block and every inode read.
 */
export function uuidAt(b: Buffer, off: number, uuid: Buffer): boolean {
  return b.readInt32BE(off) === uuid.readInt32BE(0) && b.readInt32BE(off + 4) === uuid.readInt32BE(4)
    && b.readInt32BE(off + 8) === uuid.readInt32BE(8) && b.readInt32BE(off + 12) === uuid.readInt32BE(12);
}

export function writeU64(b: Buffer, off: number, v: number): void {
  b.writeUInt32BE(Math.floor(v / TWO32) >>> 0, off);
  b.writeUInt32BE(v >>> 0, off + 4);
}

/** A signed (two's complement) 64-bit big-endian integer; inode times are these. */
export function readI64(b: Buffer, off: number): number {
  return b.readInt32BE(off) * TWO32 + b.readUInt32BE(off + 4);
}

export function writeI64(b: Buffer, off: number, v: number): void {
  // floor keeps the high word right for negative values (-1 -> 0xffffffff 0xffffffff).
  b.writeInt32BE(Math.floor(v / TWO32), off);
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

/** Fills in the common header of a fresh block (the rest of the buffer must be zero). */
export function stampMetaHeader(b: Buffer, magic: number, blkno: number, uuid: Buffer, owner: number): void {
  b.writeUInt32BE(magic >>> 0, OFF_MAGIC);
  writeU64(b, OFF_BLKNO, blkno);
  uuid.copy(b, OFF_UUID, 0, 16);
  writeU64(b, OFF_OWNER, owner);
}

/** crc32c of a block with its crc field counted as zero. */
export function blockCrc(b: Buffer, crcOffset = OFF_CRC): number {
  const saved = b.readUInt32BE(crcOffset);
  b.writeUInt32BE(0, crcOffset);
  const crc = native.crc32c(b, 0, b.length, 0);
  b.writeUInt32BE(saved, crcOffset);
  return crc;
}

export interface MetaExpectation {
  /** For messages: "rmap btree", "superblock", "AG 3 header"... */
  what: string;
  magic: number;
  uuid: Buffer;
  /** The owner the block must name; null to accept any (the caller checks it). */
  owner: number | null;
  checksummed: boolean;
}

function badHeader(code: 'EFSBADCRC' | 'EFSCORRUPTED', want: MetaExpectation, buf: Buf, what: string): never {
  throw new RmapfsError(code, `${want.what} block ${buf.bno}: ${what}`);
}

/** Throws EFSBADCRC / EFSCORRUPTED, naming the block, unless the header is as expected. */
export function verifyMetaHeader(buf: Buf, want: MetaExpectation): void {
  const b = buf.data;
  // Messages are built only when a check fails (this runs on every metadata block read).
  if (want.checksummed && blockCrc(b) !== b.readUInt32BE(OFF_CRC)) badHeader('EFSBADCRC', want, buf, 'bad crc32c');
  const magic = b.readUInt32BE(OFF_MAGIC);
  if (magic !== want.magic) badHeader('EFSCORRUPTED', want, buf, `bad magic ${magicText(magic)} (want ${magicText(want.magic)})`);
  const blkno = readU64(b, OFF_BLKNO);
  if (blkno !== buf.bno) badHeader('EFSCORRUPTED', want, buf, `claims to be block ${blkno}`);
  if (!uuidAt(b, OFF_UUID, want.uuid)) {
    badHeader('EFSCORRUPTED', want, buf, 'belongs to another filesystem (uuid mismatch)');
  }
  if (want.owner !== null) {
    const owner = readU64(b, OFF_OWNER);
    if (owner !== want.owner) badHeader('EFSCORRUPTED', want, buf, `owner ${owner}, want ${want.owner}`);
  }
}

/** Buffer ops for a metadata block type: verify the header (and more) on read, crc on write. */
export function metaBufOps(want: MetaExpectation, verifyBody?: (buf: Buf) => void): BufOps {
  return {
    name: want.what,
    verifyRead(buf: Buf): void {
      verifyMetaHeader(buf, want);
      verifyBody?.(buf);
    },
    prepareWrite(buf: Buf): void {
      if (want.checksummed) buf.data.writeUInt32BE(blockCrc(buf.data), OFF_CRC);
    },
    stampLsn(buf: Buf, lsn: number): void {
      writeU64(buf.data, OFF_LSN, lsn);
    },
  };
}
