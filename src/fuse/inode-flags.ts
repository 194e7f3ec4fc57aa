/**
 * The inode-flag ioctls as Linux's FUSE sends them (fs/fuse/ioctl.c,
 * fuse_fileattr_get/_set): FS_IOC_GETFLAGS / FS_IOC_SETFLAGS (lsattr, chattr)
 * carry a u32 of FS_*_FL bits, FS_IOC_FSGETXATTR / FS_IOC_FSSETXATTR (xfs_io
 * lsattr/chattr; and the kernel's own read of the old flags before every
 * set) a struct fsxattr of FS_XFLAG_* bits. Both are mapped here to the
 * inode's own IFLAG_* bits (src/inode/inode-format.ts). Data is in the
 * machine's byte order.
 */
import { endianness } from 'os';
import { RmapfsError } from '../errors';
import { IFLAG_APPEND, IFLAG_IMMUTABLE, IFLAG_NOATIME, IFLAG_NODUMP } from '../inode/inode-format';

/** linux/fs.h: _IOR('f', 1, long), _IOW('f', 2, long), their 32-bit (compat) forms, _IOR/_IOW('X', 31/32, struct fsxattr). */
export const FS_IOC_GETFLAGS = 0x80086601;
export const FS_IOC_SETFLAGS = 0x40086602;
export const FS_IOC32_GETFLAGS = 0x80046601;
export const FS_IOC32_SETFLAGS = 0x40046602;
export const FS_IOC_FSGETXATTR = 0x801c581f;
export const FS_IOC_FSSETXATTR = 0x401c5820;

/** struct fsxattr: xflags, extsize, nextents, projid, cowextsize (u32 each), 8 bytes of padding. */
export const FSXATTR_SIZE = 28;
const FSX_XFLAGS = 0;
const FSX_NEXTENTS = 8;
const FSX_PROJID = 12;

/** FS_*_FL and FS_XFLAG_* for each flag rmapfs keeps. */
const FLAG_TABLE: ReadonlyArray<{ iflag: number; fsFlag: number; xflag: number }> = [
  { iflag: IFLAG_IMMUTABLE, fsFlag: 0x10, xflag: 0x08 },
  { iflag: IFLAG_APPEND, fsFlag: 0x20, xflag: 0x10 },
  { iflag: IFLAG_NODUMP, fsFlag: 0x40, xflag: 0x80 },
  { iflag: IFLAG_NOATIME, fsFlag: 0x80, xflag: 0x40 },
];
/** FS_XFLAG_HASATTR: reported by XFS, ignored when set (read-only); we do not report it. */
const FS_XFLAG_HASATTR = 0x80000000;

function toBits(iflags: number, key: 'fsFlag' | 'xflag'): number {
  let bits = 0;
  for (const f of FLAG_TABLE) if ((iflags & f.iflag) !== 0) bits |= f[key];
  return bits >>> 0;
}

/** EOPNOTSUPP for any bit rmapfs does not keep, as XFS answers chattr +C (ext4 its own unknown ones). */
function fromBits(bits: number, key: 'fsFlag' | 'xflag', what: string): number {
  let iflags = 0;
  let known = 0;
  for (const f of FLAG_TABLE) {
    known |= f[key];
    if ((bits & f[key]) !== 0) iflags |= f.iflag;
  }
  const unknown = (bits & ~known) >>> 0;
  if (unknown !== 0) throw new RmapfsError('EOPNOTSUPP', `${what} 0x${unknown.toString(16)} not supported`);
  return iflags;
}

const littleEndian = endianness() === 'LE';
function readU32(b: Buffer, off: number): number {
  return littleEndian ? b.readUInt32LE(off) : b.readUInt32BE(off);
}
function writeU32(b: Buffer, off: number, v: number): void {
  if (littleEndian) b.writeUInt32LE(v >>> 0, off);
  else b.writeUInt32BE(v >>> 0, off);
}

export type FlagIoctl = 'getflags' | 'setflags' | 'fsgetxattr' | 'fssetxattr';

/** Which flag ioctl `cmd` is; null for any other (the handler answers ENOTTY, as for an ioctl a filesystem lacks). */
export function flagIoctlOf(cmd: number): FlagIoctl | null {
  switch (cmd >>> 0) {
    case FS_IOC_GETFLAGS: case FS_IOC32_GETFLAGS: return 'getflags';
    case FS_IOC_SETFLAGS: case FS_IOC32_SETFLAGS: return 'setflags';
    case FS_IOC_FSGETXATTR: return 'fsgetxattr';
    case FS_IOC_FSSETXATTR: return 'fssetxattr';
    default: return null;
  }
}

/** FS_IOC_GETFLAGS's answer: the u32 of FS_*_FL bits. */
export function encodeFsFlags(iflags: number): Buffer {
  const b = Buffer.alloc(4);
  writeU32(b, 0, toBits(iflags, 'fsFlag'));
  return b;
}

/** FS_IOC_SETFLAGS's argument as IFLAG_* bits (EINVAL when short, EOPNOTSUPP for unknown bits). */
export function decodeFsFlags(input: Buffer): number {
  if (input.length < 4) throw new RmapfsError('EINVAL', `FS_IOC_SETFLAGS with ${input.length} bytes`);
  return fromBits(readU32(input, 0), 'fsFlag', 'inode flags (FS_*_FL)');
}

/** FS_IOC_FSGETXATTR's answer: the flags and the data fork's extent count; no extent size hints, project 0. */
export function encodeFsxattr(iflags: number, nextents: number): Buffer {
  const b = Buffer.alloc(FSXATTR_SIZE);
  writeU32(b, FSX_XFLAGS, toBits(iflags, 'xflag'));
  writeU32(b, FSX_NEXTENTS, nextents);
  return b;
}

/**
 * FS_IOC_FSSETXATTR's argument as IFLAG_* bits: EOPNOTSUPP for unknown
 * flags and for a project id (rmapfs has no project quota; ext4 without
 * the project feature answers so too). Extent size hints are ignored, as
 * ext4 does.
 */
export function decodeFsxattr(input: Buffer): number {
  if (input.length < FSXATTR_SIZE) throw new RmapfsError('EINVAL', `FS_IOC_FSSETXATTR with ${input.length} bytes`);
  if (readU32(input, FSX_PROJID) !== 0) throw new RmapfsError('EOPNOTSUPP', 'project ids are not supported');
  return fromBits(readU32(input, FSX_XFLAGS) & ~FS_XFLAG_HASATTR, 'xflag', 'inode flags (FS_XFLAG_*)');
}
