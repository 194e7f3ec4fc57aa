/**
 * The on-disk inode: 512 bytes, eight to a block, each self-describing (its
 * own magic, inode number, UUID, LSN and crc32c over all 512 bytes), so a
 * flipped byte anywhere in an inode is caught when that inode is loaded
 * (its neighbours read on).
 *
 *   0 u32 magic "RINO"       4 u16 mode          6 u8 version   7 u8 data fork format
 *   8 u32 nlink             12 u32 uid           16 u32 gid     20 u32 flags
 *  24 u64 size              32 u64 nblocks (data + btree blocks held)
 *  40 i64 atime sec         48 i64 mtime sec     56 i64 ctime sec   64 i64 crtime sec
 *     (signed seconds since 1970, two's complement: times before 1970 are negative)
 *  72 u32 atime ns          76 u32 mtime ns      80 u32 ctime ns    84 u32 crtime ns
 *  88 u64 ino               96 u64 lsn          104 16 uuid        120 u32 crc
 * 124 u32 generation       128 u32 data fork count (extents, or local bytes)
 * 132 u32 data btree root  136 u32 data btree height
 * 140 u8 attr fork format  141 u8 pad   142 u16 attr local bytes
 * 144 u32 attr btree root  148 u32 attr btree height   152 u32 rdev
 * 156 u32 attr count (attributes in the attr btree: a lost record shows)
 * 160..191 reserved (zero)
 * 192..383 data fork: up to 12 extents of 16 bytes, or local data (symlink target)
 * 384..511 attr fork: local extended attributes
 *
 * An extent (16 bytes): fileoff u32, blockcount u32 (top bit: unwritten),
 * fsbno u64.
 *
 * flags (offset 20): the inode flags chattr(1) sets, IFLAG_* below; any other
 * bit is damage (check reports it, the inode core repair clears it).
 */
import { RmapfsError } from '../errors';
import { native } from '../native';
import type { Buf, BufOps } from '../io/buf-cache';
import { magicOf, readU64, u64Text, uuidAt, writeU64 } from '../io/meta-header';
import { INODE_SIZE, INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';
import type { Field } from '../format/fields';

export const INODE_MAGIC = magicOf('RINO');
export const INODE_VERSION = 1;

export const FORK_EXTENTS = 0;
export const FORK_BTREE = 1;
export const FORK_LOCAL = 2;
export const ATTR_NONE = 0;
export const ATTR_LOCAL = 1;
export const ATTR_BTREE = 2;

export const OFF_I_MODE = 4;
export const OFF_I_VERSION = 6;
export const OFF_I_FORMAT = 7;
export const OFF_I_NLINK = 8;
export const OFF_I_UID = 12;
export const OFF_I_GID = 16;
export const OFF_I_FLAGS = 20;
export const OFF_I_SIZE = 24;
export const OFF_I_NBLOCKS = 32;
export const OFF_I_TIMES = 40;
export const OFF_I_NSEC = 72;
export const OFF_I_INO = 88;
export const OFF_I_LSN = 96;
export const OFF_I_UUID = 104;
export const OFF_I_CRC = 120;
export const OFF_I_GEN = 124;
export const OFF_I_NEXTENTS = 128;
export const OFF_I_DROOT = 132;
export const OFF_I_DHEIGHT = 136;
export const OFF_I_AFORMAT = 140;
export const OFF_I_ALOCAL = 142;
export const OFF_I_AROOT = 144;
export const OFF_I_AHEIGHT = 148;
export const OFF_I_RDEV = 152;
export const OFF_I_ACOUNT = 156;
export const DATA_FORK_OFFSET = 192;
export const DATA_FORK_SIZE = 192;
export const ATTR_FORK_OFFSET = 384;
export const ATTR_FORK_SIZE = 128;
export const EXTENT_SIZE = 16;
export const MAX_INLINE_EXTENTS = DATA_FORK_SIZE / EXTENT_SIZE;
export const EXTENT_UNWRITTEN = 0x80000000;

/**
 * Inode flags, as stored in the core's `flags` field. Our own bits, not the
 * FS_*_FL numbers of the ioctl (src/fuse maps between the two), so the format
 * does not follow a kernel header. The rules they carry (who may set them,
 * what they refuse) are in src/fs/rmapfs.ts.
 */
/** chattr +i: no change to the data, the attributes, the name or (a directory) its entries. */
export const IFLAG_IMMUTABLE = 1 << 0;
/** chattr +a: written only at the end (opened O_APPEND), never truncated, renamed or removed. */
export const IFLAG_APPEND = 1 << 1;
/** chattr +d: dump(8) skips it; nothing else. */
export const IFLAG_NODUMP = 1 << 2;
/** chattr +A: reads do not update atime. */
export const IFLAG_NOATIME = 1 << 3;
/** Every defined flag bit. */
export const IFLAGS_DEFINED = IFLAG_IMMUTABLE | IFLAG_APPEND | IFLAG_NODUMP | IFLAG_NOATIME;
/** What a new file or directory takes from the directory it is made in (as ext4 and XFS). */
export const IFLAGS_INHERITED = IFLAG_NODUMP | IFLAG_NOATIME;
export const MAX_EXTENT_LEN = 0x7fffffff;

export const S_IFMT = 0o170000;
export const S_IFREG = 0o100000;
export const S_IFDIR = 0o040000;
export const S_IFLNK = 0o120000;
export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;
export const S_IFSOCK = 0o140000;
export const S_ISUID = 0o4000;
export const S_ISGID = 0o2000;

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface Extent {
  fileoff: number;
  blockcount: number;
  fsbno: number;
  unwritten: boolean;
}

export function encodeExtent(e: Extent, b: Buffer, off: number): void {
  b.writeUInt32BE(e.fileoff >>> 0, off);
  b.writeUInt32BE(((e.blockcount & MAX_EXTENT_LEN) | (e.unwritten ? EXTENT_UNWRITTEN : 0)) >>> 0, off + 4);
  writeU64(b, off + 8, e.fsbno);
}

export function decodeExtent(b: Buffer, off: number): Extent {
  const count = b.readUInt32BE(off + 4);
  return { fileoff: b.readUInt32BE(off), blockcount: count & MAX_EXTENT_LEN, fsbno: readU64(b, off + 8), unwritten: (count & EXTENT_UNWRITTEN) !== 0 };
}

/** crc32c of one inode with its crc field zero. */
export function inodeCrc(b: Buffer, off: number): number {
  const saved = b.readUInt32BE(off + OFF_I_CRC);
  b.writeUInt32BE(0, off + OFF_I_CRC);
  const crc = native.crc32c(b, off, INODE_SIZE, 0);
  b.writeUInt32BE(saved, off + OFF_I_CRC);
  return crc;
}

/** A free (never used, or released) inode slot: valid, self-describing, mode 0. */
export function formatFreeInode(b: Buffer, off: number, ino: number, uuid: Buffer): void {
  b.fill(0, off, off + INODE_SIZE);
  b.writeUInt32BE(INODE_MAGIC, off);
  b.writeUInt8(INODE_VERSION, off + OFF_I_VERSION);
  writeU64(b, off + OFF_I_INO, ino);
  uuid.copy(b, off + OFF_I_UUID);
}

/**
 * A free inode slot holds nothing but its identity (magic, version, number,
 * UUID, LSN, crc, generation): the inode at b[off] is one.
 */
export function isCleanFreeInode(b: Buffer, off: number): boolean {
  const zero = (from: number, to: number): boolean => {
    for (let i = off + from; i < off + to; i++) if (b[i] !== 0) return false;
    return true;
  };
  return zero(OFF_I_MODE, OFF_I_VERSION) && zero(OFF_I_FORMAT, OFF_I_INO) && zero(OFF_I_NEXTENTS, INODE_SIZE);
}

/** Why one inode cannot be used: the errno XFS gives and a one-line reason. */
export interface InodeDamage {
  code: 'EFSBADCRC' | 'EFSCORRUPTED';
  what: string;
}

/**
 * Checks the inode at b[off] (slot `ino`) as XFS's dinode verifier does at
 * iget: its crc first (`badCrc`: the verdict of the read, kept in
 * Buf.damagedParts -- the crc cannot be compared here, as a dirty block's
 * crcs are only made on its way out), then its identity (magic, version,
 * number, UUID) and a known data fork format. Null when sound.
 */
export function inodeDamage(b: Buffer, off: number, ino: number, uuid: Buffer, badCrc: boolean): InodeDamage | null {
  if (badCrc) return { code: 'EFSBADCRC', what: 'bad crc32c' };
  if (b.readUInt32BE(off) !== INODE_MAGIC) return { code: 'EFSCORRUPTED', what: 'bad magic' };
  if (b.readUInt8(off + OFF_I_VERSION) !== INODE_VERSION) {
    return { code: 'EFSCORRUPTED', what: `inode version ${b.readUInt8(off + OFF_I_VERSION)}, want ${INODE_VERSION}` };
  }
  if (readU64(b, off + OFF_I_INO) !== ino) return { code: 'EFSCORRUPTED', what: `claims to be inode ${u64Text(b, off + OFF_I_INO)}` };
  if (!uuidAt(b, off + OFF_I_UUID, uuid)) return { code: 'EFSCORRUPTED', what: 'belongs to another filesystem' };
  if (b.readUInt8(off + OFF_I_FORMAT) > FORK_LOCAL) return { code: 'EFSCORRUPTED', what: `unknown data fork format ${b.readUInt8(off + OFF_I_FORMAT)}` };
  return null;
}

/** The inodes of block b whose crc does not match their bytes (bit i: inode i). */
export function badCrcSlots(b: Buffer): number {
  let bad = 0;
  for (let i = 0; i < INODES_PER_BLOCK; i++) if (b.readUInt32BE(i * INODE_SIZE + OFF_I_CRC) !== inodeCrc(b, i * INODE_SIZE)) bad |= 1 << i;
  return bad;
}

/** Whether the inode at b[off] carries the inode magic and its slot's number. */
function atHome(b: Buffer, off: number, ino: number): boolean {
  return b.readUInt32BE(off) === INODE_MAGIC && readU64(b, off + OFF_I_INO) === ino;
}

/**
 * Buffer ops for an inode block. Each inode is checked where it is loaded
 * (`inodeDamage`, at InodeStore.get and by the scrub), not here: one damaged
 * inode must not make its neighbours unreadable. The block as a whole must
 * hold inodes (one at least at home: else it is not an inode block -- a
 * misplaced chunk); an inode whose crc is bad is noted in Buf.damagedParts,
 * and write keeps its bad crc (stamped anew over its new LSN, so it stays
 * bad) until a repair clears the note: a neighbour's change must not bless it.
 */
export function inodeBlockBufOps(geo: Geometry): BufOps {
  return {
    name: 'inode block',
    verifyRead(buf: Buf): void {
      const b = buf.data;
      const agno = geo.agnoOf(buf.bno);
      const firstAgino = geo.agbnoOf(buf.bno) * INODES_PER_BLOCK;
      const damaged = badCrcSlots(b);
      let home = 0;
      for (let i = 0; i < INODES_PER_BLOCK; i++) if (atHome(b, i * INODE_SIZE, geo.ino(agno, firstAgino + i))) home++;
      if (home === 0) {
        throw new RmapfsError(damaged !== 0 ? 'EFSBADCRC' : 'EFSCORRUPTED', `block ${buf.bno}: no inode in it carries the magic and its own number`);
      }
      buf.damagedParts = damaged;
    },
    prepareWrite(buf: Buf): void {
      for (let i = 0; i < INODES_PER_BLOCK; i++) {
        const off = i * INODE_SIZE;
        const crc = inodeCrc(buf.data, off);
        // A known bad crc stays bad (whatever else changed in the inode, e.g. its LSN).
        buf.data.writeUInt32BE((buf.damagedParts & (1 << i)) !== 0 ? (~crc) >>> 0 : crc, off + OFF_I_CRC);
      }
    },
    stampLsn(buf: Buf, lsn: number): void {
      for (let i = 0; i < INODES_PER_BLOCK; i++) writeU64(buf.data, i * INODE_SIZE + OFF_I_LSN, lsn);
    },
  };
}

/** Named fields of an inode, for `db`. */
export const INODE_FIELDS: readonly Field[] = [
  { name: 'magic', offset: 0, type: 'u32' },
  { name: 'mode', offset: OFF_I_MODE, type: 'u16' },
  { name: 'version', offset: OFF_I_VERSION, type: 'u8' },
  { name: 'format', offset: OFF_I_FORMAT, type: 'u8' },
  { name: 'nlink', offset: OFF_I_NLINK, type: 'u32' },
  { name: 'uid', offset: OFF_I_UID, type: 'u32' },
  { name: 'gid', offset: OFF_I_GID, type: 'u32' },
  { name: 'flags', offset: OFF_I_FLAGS, type: 'u32' },
  { name: 'size', offset: OFF_I_SIZE, type: 'u64' },
  { name: 'nblocks', offset: OFF_I_NBLOCKS, type: 'u64' },
  { name: 'atime', offset: OFF_I_TIMES, type: 'i64' },
  { name: 'mtime', offset: OFF_I_TIMES + 8, type: 'i64' },
  { name: 'ctime', offset: OFF_I_TIMES + 16, type: 'i64' },
  { name: 'crtime', offset: OFF_I_TIMES + 24, type: 'i64' },
  { name: 'ino', offset: OFF_I_INO, type: 'u64' },
  { name: 'lsn', offset: OFF_I_LSN, type: 'u64' },
  { name: 'uuid', offset: OFF_I_UUID, type: 'uuid' },
  { name: 'crc', offset: OFF_I_CRC, type: 'u32' },
  { name: 'generation', offset: OFF_I_GEN, type: 'u32' },
  { name: 'nextents', offset: OFF_I_NEXTENTS, type: 'u32' },
  { name: 'dataRoot', offset: OFF_I_DROOT, type: 'u32' },
  { name: 'dataHeight', offset: OFF_I_DHEIGHT, type: 'u32' },
  { name: 'attrFormat', offset: OFF_I_AFORMAT, type: 'u8' },
  { name: 'attrLocal', offset: OFF_I_ALOCAL, type: 'u16' },
  { name: 'attrRoot', offset: OFF_I_AROOT, type: 'u32' },
  { name: 'attrHeight', offset: OFF_I_AHEIGHT, type: 'u32' },
  { name: 'rdev', offset: OFF_I_RDEV, type: 'u32' },
  { name: 'attrCount', offset: OFF_I_ACOUNT, type: 'u32' },
];
