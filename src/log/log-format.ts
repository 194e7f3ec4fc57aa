/**
 * The on-disk log's block formats (docs/log-format.md has the byte tables).
 * Every log block that is not a raw image starts with the common 64-byte
 * metadata header (src/io/meta-header.ts): magic, type-specific bytes 4..15,
 * blkno (the block's own absolute number), lsn, uuid, owner (OWN_LOG), crc.
 *
 *   log superblock  RLSB  region block 0: geometry and the tail
 *   header          RLHD  a transaction's lsn, image count and image bnos
 *   commit          RLCM  closes a transaction: crc over headers + images
 *
 * The checkers here return a reason (for replay's debug log and for error
 * messages) instead of throwing: a bad header or commit during replay is the
 * normal end of the log, not an error.
 */
import { OWN_LOG } from '../format/owners';
import {
  META_HDR_SIZE, OFF_BLKNO, OFF_CRC, OFF_LSN, OFF_MAGIC, OFF_OWNER, OFF_UUID, blockCrc, magicOf, magicText, readU64,
  stampMetaHeader, writeU64,
} from '../io/meta-header';

export const LOG_SB_MAGIC = magicOf('RLSB');
export const LOG_HEADER_MAGIC = magicOf('RLHD');
export const LOG_COMMIT_MAGIC = magicOf('RLCM');
export const LOG_VERSION = 1;
/** Smallest log region (superblock + 63 circular blocks). */
export const MIN_LOG_BLOCKS = 64;
/** Largest log region: image counts are u32 on disk. */
export const MAX_LOG_BLOCKS = 0x100000000;
export const UUID_SIZE = 16;

// Log superblock: type-specific bytes, then the body.
export const OFF_SB_VERSION = 4;
export const OFF_SB_BLOCKSIZE = 8;
/** Region size in blocks (the region start is the header's blkno; tailLsn is its lsn). */
export const OFF_SB_SIZE = META_HDR_SIZE;
export const OFF_SB_TAILPOS = META_HDR_SIZE + 8;

// Header block.
export const OFF_HD_NIMAGES = 4;
export const OFF_HD_INDEX = 8;
export const OFF_HD_COUNT = 12;
export const OFF_HD_BNOS = META_HDR_SIZE;

// Commit block.
export const OFF_CM_NIMAGES = 4;
export const OFF_CM_HEADERS = 8;
export const OFF_CM_BODYCRC = 12;

/** Image block numbers one header block holds (504 for 4096-byte blocks). */
export function bnosPerHeader(blockSize: number): number {
  return Math.floor((blockSize - OFF_HD_BNOS) / 8);
}

/** Header blocks a transaction of n images needs. */
export function headersFor(n: number, blockSize: number): number {
  return Math.ceil(n / bnosPerHeader(blockSize));
}

/** The log superblock's contents. */
export interface LogSuper {
  blockSize: number;
  /** Absolute block number of region block 0 (this superblock). */
  start: number;
  /** Region size in blocks, superblock included. */
  size: number;
  /** Oldest lsn replay must consider. */
  tailLsn: number;
  /** Circular position of that transaction's first header. */
  tailPos: number;
  uuid: Buffer;
}

/** Fills b (one block) with the log superblock s, crc included. */
export function encodeLogSuper(b: Buffer, s: LogSuper): void {
  b.fill(0);
  stampMetaHeader(b, LOG_SB_MAGIC, s.start, s.uuid, OWN_LOG);
  b.writeUInt32BE(LOG_VERSION, OFF_SB_VERSION);
  b.writeUInt32BE(s.blockSize, OFF_SB_BLOCKSIZE);
  writeU64(b, OFF_LSN, s.tailLsn);
  writeU64(b, OFF_SB_SIZE, s.size);
  writeU64(b, OFF_SB_TAILPOS, s.tailPos);
  b.writeUInt32BE(blockCrc(b), OFF_CRC);
}

/** What the log superblock must say: the filesystem's view of its log. */
export interface LogSuperExpectation {
  blockSize: number;
  start: number;
  size: number;
  uuid: Buffer;
}

/** Decodes the log superblock in b, or returns why it is not the one expected. */
export function decodeLogSuper(b: Buffer, want: LogSuperExpectation): LogSuper | string {
  const magic = b.readUInt32BE(OFF_MAGIC);
  if (magic !== LOG_SB_MAGIC) return `bad magic ${magicText(magic)} (want RLSB)`;
  if (blockCrc(b) !== b.readUInt32BE(OFF_CRC)) return 'bad crc32c';
  const version = b.readUInt32BE(OFF_SB_VERSION);
  if (version !== LOG_VERSION) return `unknown version ${version}`;
  if (!b.subarray(OFF_UUID, OFF_UUID + UUID_SIZE).equals(want.uuid)) {
    return 'belongs to another filesystem (uuid mismatch)';
  }
  const blockSize = b.readUInt32BE(OFF_SB_BLOCKSIZE);
  if (blockSize !== want.blockSize) return `block size ${blockSize}, want ${want.blockSize}`;
  const start = readU64(b, OFF_BLKNO);
  const size = readU64(b, OFF_SB_SIZE);
  if (start !== want.start || size !== want.size) {
    return `says the log is at ${start}+${size}, the filesystem says ${want.start}+${want.size}`;
  }
  const owner = readU64(b, OFF_OWNER);
  if (owner !== OWN_LOG) return `owner ${owner}, want ${OWN_LOG}`;
  const tailLsn = readU64(b, OFF_LSN);
  const tailPos = readU64(b, OFF_SB_TAILPOS);
  if (tailLsn < 1 || !Number.isSafeInteger(tailLsn)) return `bad tail lsn ${tailLsn}`;
  if (tailPos >= size - 1) return `tail position ${tailPos} is outside the ${size - 1} circular blocks`;
  return { blockSize, start, size, tailLsn, tailPos, uuid: Buffer.from(want.uuid) };
}

/**
 * Fills b (one zeroed block) as header `index` of `count` of transaction lsn,
 * written at absolute block blkno. bnos are all the transaction's image block
 * numbers; this header lists its share, bnos[index * per .. (index + 1) * per).
 */
export function encodeHeader(b: Buffer, blkno: number, lsn: number, index: number, count: number,
  bnos: readonly number[], uuid: Buffer): void {
  stampMetaHeader(b, LOG_HEADER_MAGIC, blkno, uuid, OWN_LOG);
  writeU64(b, OFF_LSN, lsn);
  b.writeUInt32BE(bnos.length, OFF_HD_NIMAGES);
  b.writeUInt32BE(index, OFF_HD_INDEX);
  b.writeUInt32BE(count, OFF_HD_COUNT);
  const per = bnosPerHeader(b.length);
  const end = Math.min(bnos.length, (index + 1) * per);
  for (let i = index * per; i < end; i++) writeU64(b, OFF_HD_BNOS + (i - index * per) * 8, bnos[i]);
  b.writeUInt32BE(blockCrc(b), OFF_CRC);
}

/** What a header at a position must say; nImages/count are null for a transaction's first header. */
export interface HeaderExpectation {
  blkno: number;
  lsn: number;
  uuid: Buffer;
  index: number;
  count: number | null;
  nImages: number | null;
}

/** Why b is not the expected header (null when it is). Checks counts for consistency, not the bnos. */
export function headerProblem(b: Buffer, want: HeaderExpectation): string | null {
  const magic = b.readUInt32BE(OFF_MAGIC);
  if (magic !== LOG_HEADER_MAGIC) return `no header (magic ${magicText(magic)})`;
  if (blockCrc(b) !== b.readUInt32BE(OFF_CRC)) return 'header has a bad crc32c';
  if (!b.subarray(OFF_UUID, OFF_UUID + UUID_SIZE).equals(want.uuid)) return 'header from another filesystem';
  const lsn = readU64(b, OFF_LSN);
  if (lsn !== want.lsn) return `header has lsn ${lsn}, want ${want.lsn}`;
  const blkno = readU64(b, OFF_BLKNO);
  if (blkno !== want.blkno) return `header claims block ${blkno}`;
  const owner = readU64(b, OFF_OWNER);
  if (owner !== OWN_LOG) return `header owner ${owner}`;
  const n = b.readUInt32BE(OFF_HD_NIMAGES);
  const index = b.readUInt32BE(OFF_HD_INDEX);
  const count = b.readUInt32BE(OFF_HD_COUNT);
  if (index !== want.index) return `header index ${index}, want ${want.index}`;
  if (n < 1 || count !== headersFor(n, b.length)) return `header says ${n} images in ${count} headers`;
  if (want.nImages !== null && n !== want.nImages) return `header says ${n} images, first header ${want.nImages}`;
  if (want.count !== null && count !== want.count) return `header says ${count} headers, first header ${want.count}`;
  return null;
}

/** The image block numbers header b lists (b already passed headerProblem). */
export function headerBnos(b: Buffer, out: number[]): void {
  const n = b.readUInt32BE(OFF_HD_NIMAGES);
  const index = b.readUInt32BE(OFF_HD_INDEX);
  const per = bnosPerHeader(b.length);
  const here = Math.min(per, n - index * per);
  for (let i = 0; i < here; i++) out.push(readU64(b, OFF_HD_BNOS + i * 8));
}

/** Fills b (one zeroed block) as the commit block of transaction lsn. */
export function encodeCommit(b: Buffer, blkno: number, lsn: number, nImages: number, headers: number,
  bodyCrc: number, uuid: Buffer): void {
  stampMetaHeader(b, LOG_COMMIT_MAGIC, blkno, uuid, OWN_LOG);
  writeU64(b, OFF_LSN, lsn);
  b.writeUInt32BE(nImages, OFF_CM_NIMAGES);
  b.writeUInt32BE(headers, OFF_CM_HEADERS);
  b.writeUInt32BE(bodyCrc >>> 0, OFF_CM_BODYCRC);
  b.writeUInt32BE(blockCrc(b), OFF_CRC);
}

/** Why b is not the commit block that closes the transaction described (null when it is). */
export function commitProblem(b: Buffer, blkno: number, lsn: number, nImages: number, headers: number,
  bodyCrc: number, uuid: Buffer): string | null {
  const magic = b.readUInt32BE(OFF_MAGIC);
  if (magic !== LOG_COMMIT_MAGIC) return `no commit block (magic ${magicText(magic)})`;
  if (blockCrc(b) !== b.readUInt32BE(OFF_CRC)) return 'commit block has a bad crc32c';
  if (!b.subarray(OFF_UUID, OFF_UUID + UUID_SIZE).equals(uuid)) return 'commit block from another filesystem';
  const clsn = readU64(b, OFF_LSN);
  if (clsn !== lsn) return `commit block has lsn ${clsn}`;
  if (readU64(b, OFF_BLKNO) !== blkno) return `commit block claims block ${readU64(b, OFF_BLKNO)}`;
  if (readU64(b, OFF_OWNER) !== OWN_LOG) return `commit block owner ${readU64(b, OFF_OWNER)}`;
  const n = b.readUInt32BE(OFF_CM_NIMAGES);
  const h = b.readUInt32BE(OFF_CM_HEADERS);
  if (n !== nImages || h !== headers) return `commit block says ${n} images in ${h} headers`;
  const crc = b.readUInt32BE(OFF_CM_BODYCRC);
  if (crc !== (bodyCrc >>> 0)) return 'headers and images do not match the commit crc (torn transaction)';
  return null;
}
