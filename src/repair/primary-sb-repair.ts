/**
 * The primary superblock rebuilt from its copies (offline only: nothing can
 * be opened, let alone mounted, without it). As xfs_repair does (phase 1,
 * repair/sb.c: find the secondaries, let them vote), the copies are found
 * where the geometry puts them -- block 0 of every AG, by the agBlocks the
 * damaged primary still says, if that is plausible -- or, when the geometry
 * itself is gone, by scanning the device for a block that verifies as a
 * superblock copy (its magic, its own block number, its crc, a sane
 * geometry); that copy's agBlocks then says where the others are. The copies
 * whose filesystem-wide fields agree most often win.
 *
 * A copy has what mkfs gave every copy (clean, no root inode, never
 * mounted): the rebuilt primary is that, at block 0, marked dirty; the root
 * inode is found afterwards from the filesystem (see findRootInode in
 * src/fsck/offline.ts) since only the primary ever named it.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { Device } from '../io/device';
import { OFF_BLKNO, OFF_CRC, OFF_OWNER, OFF_UUID, blockCrc, readU64, writeU64 } from '../io/meta-header';
import { OWN_FS } from '../format/owners';
import { AGH_AGBNO, AGH_MAGIC, OFF_AGNO, OFF_AG_BLOCKS } from '../format/ag-header';
import {
  BLOCK_SIZE, SB_MAGIC, STATE_DIRTY, checkSuperblockGeometry, decodeSuperblock, encodeSuperblock,
} from '../format/superblock';
import type { Superblock } from '../format/superblock';
import { MIN_AG_BLOCKS } from '../format/geometry';

const log = createDebug('rmapfs:repair');

/** Why the superblock image at block `bno` is not a good one (null: it is). */
export function superblockImageProblem(b: Buffer, bno: number): string | null {
  if (b.readUInt32BE(0) !== SB_MAGIC) return 'bad magic';
  if (readU64(b, OFF_BLKNO) !== bno) return `claims to be block ${readU64(b, OFF_BLKNO)}`;
  if (readU64(b, OFF_OWNER) !== OWN_FS) return `owner ${readU64(b, OFF_OWNER)}, want ${OWN_FS}`;
  if (blockCrc(b) !== b.readUInt32BE(OFF_CRC)) return 'bad crc32c';
  try {
    const sb = decodeSuperblock(b);
    checkSuperblockGeometry(sb, `superblock block ${bno}`);
    // A value the fields cannot hold again (a u64 past 2^53, a label with no end): every rewrite of
    // it -- the secondary superblocks' repair copies the primary -- would fail.
    encodeSuperblock(sb, Buffer.alloc(BLOCK_SIZE));
  } catch (e) {
    if (e instanceof RmapfsError) return e.message;
    throw e;
  }
  return null;
}

/** What the primary superblock rebuild did. */
export interface PrimarySuperblockRebuild {
  /** The AGs whose copy the rebuilt primary was made from (they all agreed). */
  agreeing: number[];
  /** Copies found (agreeing or not). */
  copies: number;
  /** How the copies were found: where the old primary's geometry put them, or by a scan. */
  foundBy: 'geometry' | 'scan';
  /** The rebuilt primary's fields (rootIno still 0: the caller finds the root). */
  superblock: Superblock;
}

/** The fields every copy shares with the primary: what the copies vote on. */
const VOTED_FIELDS = ['uuid', 'version', 'features', 'blockSize', 'totalBlocks', 'agBlocks', 'agCount', 'logStart', 'logBlocks',
  'inodeSize', 'inodesPerChunk', 'createdSec', 'label'] as const;

function votedValues(b: Buffer): unknown[] {
  const sb = decodeSuperblock(b);
  return VOTED_FIELDS.map((f) => (f === 'uuid' ? b.subarray(OFF_UUID, OFF_UUID + 16).toString('hex') : sb[f]));
}

function voteKey(b: Buffer): string {
  return JSON.stringify(votedValues(b));
}

function readBlock(device: Device, bno: number, into: Buffer): boolean {
  if ((bno + 1) * BLOCK_SIZE > device.size) return false;
  device.read(bno * BLOCK_SIZE, into, 0, BLOCK_SIZE);
  return true;
}

/** The good copies at block 0 of AGs 1.. for AGs of agBlocks blocks: agno -> image. */
function copiesAt(device: Device, agBlocks: number): Map<number, Buffer> {
  const found = new Map<number, Buffer>();
  for (let agno = 1; ; agno++) {
    const b = Buffer.alloc(BLOCK_SIZE);
    if (!readBlock(device, agno * agBlocks, b)) break;
    if (superblockImageProblem(b, agno * agBlocks) === null) found.set(agno, b);
  }
  return found;
}

/** Scans the device for the first block past 0 that verifies as a superblock copy; its agBlocks (or null). */
function scanForCopy(device: Device): number | null {
  const chunkBlocks = 256;
  const chunk = Buffer.alloc(chunkBlocks * BLOCK_SIZE);
  const blocks = Math.floor(device.size / BLOCK_SIZE);
  // A copy sits at a multiple of agBlocks >= MIN_AG_BLOCKS: the first one is at least that far in.
  for (let start = MIN_AG_BLOCKS; start < blocks; start += chunkBlocks) {
    const n = Math.min(chunkBlocks, blocks - start);
    device.read(start * BLOCK_SIZE, chunk, 0, n * BLOCK_SIZE);
    for (let i = 0; i < n; i++) {
      const b = chunk.subarray(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE);
      if (b.readUInt32BE(0) !== SB_MAGIC || superblockImageProblem(b, start + i) !== null) continue;
      const agBlocks = decodeSuperblock(b).agBlocks;
      // The first copy is AG 1's: it sits at agBlocks.
      if (agBlocks === start + i) return agBlocks;
    }
  }
  return null;
}

/** The copies that verify (where the primary's agBlocks puts them, else by a scan) and the AGs of those that agree most often. */
function votedCopies(device: Device, primary: Buffer): { copies: Map<number, Buffer>; agreeing: number[]; foundBy: PrimarySuperblockRebuild['foundBy'] } | null {
  const claimed = primary.readUInt32BE(64 + 8);
  let foundBy: PrimarySuperblockRebuild['foundBy'] = 'geometry';
  let copies = claimed >= MIN_AG_BLOCKS && claimed * BLOCK_SIZE < device.size ? copiesAt(device, claimed) : new Map<number, Buffer>();
  if (copies.size === 0) {
    foundBy = 'scan';
    const agBlocks = scanForCopy(device);
    if (agBlocks !== null) copies = copiesAt(device, agBlocks);
  }
  if (copies.size === 0) return null;
  const votes = new Map<string, number[]>();
  for (const [agno, b] of copies) {
    const key = voteKey(b);
    votes.set(key, [...(votes.get(key) ?? []), agno]);
  }
  const agreeing = [...votes.values()].sort((a, b) => b.length - a.length || a[0]! - b[0]!)[0]!;
  return { copies, agreeing, foundBy };
}

/**
 * The voted fields (uuid, geometry, label, ...) on which a primary superblock
 * that verifies differs from the copies' vote: empty when it agrees, or
 * when there is no copy to ask. On its own this does not say which side is
 * wrong (two AGs: one copy against the primary); the caller asks when the
 * primary has already failed in use (its log cannot be opened by it).
 */
export function primaryDisagreement(device: Device): string[] {
  const primary = Buffer.alloc(BLOCK_SIZE);
  readBlock(device, 0, primary);
  const voted = votedCopies(device, primary);
  if (voted === null) return [];
  const ours = votedValues(primary);
  const theirs = votedValues(voted.copies.get(voted.agreeing[0]!)!);
  return VOTED_FIELDS.filter((_, i) => ours[i] !== theirs[i]);
}

/**
 * Whether the AG headers are where a superblock's geometry puts them, each
 * naming its own AG and the length that geometry gives it (the last AG the
 * rest of totalBlocks): how a geometry that verifies on its own (agBlocks,
 * agCount, totalBlocks within each other's bounds) is told right or wrong.
 */
function headersFitGeometry(device: Device, sbImage: Buffer): boolean {
  const sb = decodeSuperblock(sbImage);
  const h = Buffer.alloc(BLOCK_SIZE);
  for (let agno = 0; agno < sb.agCount; agno++) {
    const start = agno * sb.agBlocks;
    if (!readBlock(device, start + AGH_AGBNO, h)) return false;
    const length = Math.min(sb.agBlocks, sb.totalBlocks - start);
    if (h.readUInt32BE(0) !== AGH_MAGIC || h.readUInt32BE(OFF_AGNO) !== agno || h.readUInt32BE(OFF_AG_BLOCKS) !== length) return false;
  }
  return true;
}

/**
 * The geometry fields on which a primary that verifies differs from its
 * copies' vote, when the AG headers fit the copies' geometry and not the
 * primary's (then the primary is the one that is wrong); empty otherwise.
 */
export function primaryGeometryWrong(device: Device): string[] {
  const primary = Buffer.alloc(BLOCK_SIZE);
  readBlock(device, 0, primary);
  const voted = votedCopies(device, primary);
  if (voted === null) return [];
  const copy = voted.copies.get(voted.agreeing[0]!)!;
  const ours = decodeSuperblock(primary);
  const theirs = decodeSuperblock(copy);
  const differing = (['agBlocks', 'agCount', 'totalBlocks'] as const).filter((f) => ours[f] !== theirs[f]);
  if (differing.length === 0 || headersFitGeometry(device, primary) || !headersFitGeometry(device, copy)) return [];
  return differing;
}

/**
 * Rebuilds block 0 from the copies (the caller knows it is damaged). Throws
 * EFSCORRUPTED when no copy verifies; writes nothing then.
 */
export function rebuildPrimarySuperblock(device: Device): PrimarySuperblockRebuild {
  const primary = Buffer.alloc(BLOCK_SIZE);
  readBlock(device, 0, primary);
  const voted = votedCopies(device, primary);
  if (voted === null) throw new RmapfsError('EFSCORRUPTED', 'the primary superblock is damaged and no copy of it verifies');
  const { copies, agreeing, foundBy } = voted;
  const image = Buffer.from(copies.get(agreeing[0]!)!);
  writeU64(image, OFF_BLKNO, 0);
  const sb = decodeSuperblock(image);
  // Dirty: the filesystem was not known to be unmounted cleanly (its log is replayed at the next open).
  const rebuilt: Superblock = { ...sb, state: STATE_DIRTY };
  encodeSuperblock(rebuilt, image);
  image.writeUInt32BE(blockCrc(image), OFF_CRC);
  device.write(0, image, 0, BLOCK_SIZE);
  device.sync();
  log('primary superblock rebuilt from the copies of AG %s (%d copies found by %s)', agreeing.join(','), copies.size, foundBy);
  return { agreeing, copies: copies.size, foundBy, superblock: rebuilt };
}
