/**
 * The superblock: block 0 of every AG (AG 0's is the primary; the others are
 * copies for recovery). It names the filesystem (UUID, label) and its
 * geometry, and says whether it was cleanly unmounted.
 */
import { RmapfsError } from '../errors';
import type { BufOps } from '../io/buf-cache';
import { META_HDR_SIZE, magicOf, metaBufOps, readU64 } from '../io/meta-header';
import type { Field } from './fields';
import { readFields, writeField } from './fields';
import { OWN_FS } from './owners';

export const SB_MAGIC = magicOf('RMSB');
export const FORMAT_VERSION = 1;
export const BLOCK_SIZE = 4096;
export const STATE_CLEAN = 1;
export const STATE_DIRTY = 2;

export interface Superblock {
  version: number;
  features: number;
  blockSize: number;
  uuid: string;
  totalBlocks: number;
  agBlocks: number;
  agCount: number;
  logStart: number;
  logBlocks: number;
  state: number;
  rootIno: number;
  inodeSize: number;
  inodesPerChunk: number;
  createdSec: number;
  writtenSec: number;
  mountCount: number;
  label: string;
}

/** The superblock's fields after the common 64-byte header. */
export const SUPERBLOCK_FIELDS: readonly Field[] = [
  { name: 'magic', offset: 0, type: 'u32' },
  { name: 'version', offset: 4, type: 'u32' },
  { name: 'features', offset: 8, type: 'u32' },
  { name: 'blockSize', offset: 12, type: 'u32' },
  { name: 'blkno', offset: 16, type: 'u64' },
  { name: 'lsn', offset: 24, type: 'u64' },
  { name: 'uuid', offset: 32, type: 'uuid' },
  { name: 'owner', offset: 48, type: 'u64' },
  { name: 'crc', offset: 56, type: 'u32' },
  { name: 'totalBlocks', offset: META_HDR_SIZE + 0, type: 'u64' },
  { name: 'agBlocks', offset: META_HDR_SIZE + 8, type: 'u32' },
  { name: 'agCount', offset: META_HDR_SIZE + 12, type: 'u32' },
  { name: 'logStart', offset: META_HDR_SIZE + 16, type: 'u64' },
  { name: 'logBlocks', offset: META_HDR_SIZE + 24, type: 'u32' },
  { name: 'state', offset: META_HDR_SIZE + 28, type: 'u32' },
  { name: 'rootIno', offset: META_HDR_SIZE + 32, type: 'u64' },
  { name: 'inodeSize', offset: META_HDR_SIZE + 40, type: 'u32' },
  { name: 'inodesPerChunk', offset: META_HDR_SIZE + 44, type: 'u32' },
  { name: 'createdSec', offset: META_HDR_SIZE + 48, type: 'u64' },
  { name: 'writtenSec', offset: META_HDR_SIZE + 56, type: 'u64' },
  { name: 'mountCount', offset: META_HDR_SIZE + 64, type: 'u32' },
  { name: 'label', offset: META_HDR_SIZE + 68, type: 'label' },
];

const BODY_FIELDS = SUPERBLOCK_FIELDS.filter((f) => f.offset >= META_HDR_SIZE || f.name === 'version'
  || f.name === 'features' || f.name === 'blockSize');

export function decodeSuperblock(b: Buffer): Superblock {
  const v = readFields(b, 0, SUPERBLOCK_FIELDS);
  return {
    version: v.version as number, features: v.features as number, blockSize: v.blockSize as number,
    uuid: v.uuid as string, totalBlocks: v.totalBlocks as number, agBlocks: v.agBlocks as number,
    agCount: v.agCount as number, logStart: v.logStart as number, logBlocks: v.logBlocks as number,
    state: v.state as number, rootIno: v.rootIno as number, inodeSize: v.inodeSize as number,
    inodesPerChunk: v.inodesPerChunk as number, createdSec: v.createdSec as number,
    writtenSec: v.writtenSec as number, mountCount: v.mountCount as number, label: v.label as string,
  };
}

/** Writes the body fields (the common header is stamped separately). */
export function encodeSuperblock(sb: Superblock, b: Buffer): void {
  const values = sb as unknown as Record<string, number | string>;
  for (const f of BODY_FIELDS) if (f.name !== 'uuid') writeField(b, 0, f, values[f.name]!);
}

/** Checks that the geometry is self-consistent (on top of the header checks). */
export function checkSuperblockGeometry(sb: Superblock, where: string): void {
  const bad = (what: string): never => { throw new RmapfsError('EFSCORRUPTED', `${where}: ${what}`); };
  if (sb.version !== FORMAT_VERSION) bad(`format version ${sb.version}, this rmapfs reads version ${FORMAT_VERSION}`);
  if (sb.blockSize !== BLOCK_SIZE) bad(`block size ${sb.blockSize}, want ${BLOCK_SIZE}`);
  if (sb.agCount < 1 || sb.agBlocks < 64) bad(`impossible geometry: ${sb.agCount} AGs of ${sb.agBlocks} blocks`);
  if ((sb.agCount - 1) * sb.agBlocks >= sb.totalBlocks || sb.agCount * sb.agBlocks < sb.totalBlocks) {
    bad(`${sb.agCount} AGs of ${sb.agBlocks} blocks do not make ${sb.totalBlocks} blocks`);
  }
  if (sb.logBlocks < 64 || sb.logStart + sb.logBlocks > Math.min(sb.agBlocks, sb.totalBlocks)) {
    bad(`log at ${sb.logStart}+${sb.logBlocks} is outside AG 0`);
  }
  if (sb.state !== STATE_CLEAN && sb.state !== STATE_DIRTY) bad(`unknown state ${sb.state}`);
  // No optional features exist yet: any bit set is one this rmapfs does not know, so it must not mount.
  if (sb.features !== 0) bad(`unknown feature bits 0x${(sb.features >>> 0).toString(16)}`);
  if (sb.inodeSize !== 512) bad(`inode size ${sb.inodeSize}, want 512`);
  if (sb.inodesPerChunk !== 64) bad(`${sb.inodesPerChunk} inodes per chunk, want 64`);
  if (sb.rootIno !== 0) {
    // (0 in the AG copies: mkfs sets the root after writing them.) Else an inode inside the filesystem.
    const agno = Math.floor(sb.rootIno / 2 ** 32);
    const agino = sb.rootIno % 2 ** 32;
    if (agno >= sb.agCount || agino / 8 >= sb.agBlocks || agino < 16) bad(`root inode ${sb.rootIno} is outside the filesystem`);
  }
}

/**
 * Buffer ops for a superblock: the common header (magic, own block number,
 * UUID, owner "fs", crc) and a sane geometry.
 */
export function superblockBufOps(uuid: Buffer): BufOps {
  return metaBufOps({ what: 'superblock', magic: SB_MAGIC, uuid, owner: OWN_FS, checksummed: true }, (buf) => {
    checkSuperblockGeometry(decodeSuperblock(buf.data), `superblock block ${buf.bno}`);
  });
}

/** The UUID a superblock claims (read before anything else can be verified). */
export function superblockUuid(b: Buffer): Buffer {
  return Buffer.from(b.subarray(32, 48));
}

export function superblockMagicOk(b: Buffer): boolean {
  return b.readUInt32BE(0) === SB_MAGIC && readU64(b, 16) === 0;
}
