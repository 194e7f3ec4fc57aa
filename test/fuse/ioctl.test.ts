/**
 * The ioctl and copy_file_range handlers (LowLevelOps, as the daemon runs
 * them): the four flag ioctls in both their 64-bit and 32-bit (compat)
 * numbers, FS_*_FL and FS_XFLAG_* mapped to the inode's own bits, a short
 * argument EINVAL, unknown flags and a project id EOPNOTSUPP, any other
 * ioctl ENOTTY, the caller's uid deciding who may; copy_file_range answered
 * with the bytes copied. Registered, so the binding's mask names both ops.
 */
import * as os from 'os';
import t from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import type { Caller, IoctlReply, WriteReply } from '../../src/fuse/lowlevel';
import {
  FS_IOC32_GETFLAGS, FS_IOC32_SETFLAGS, FS_IOC_FSGETXATTR, FS_IOC_FSSETXATTR, FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FSXATTR_SIZE,
} from '../../src/fuse/inode-flags';
import { IFLAG_APPEND, IFLAG_IMMUTABLE, IFLAG_NOATIME, IFLAG_NODUMP, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

const { EINVAL, ENOTTY, EOPNOTSUPP, EPERM } = os.constants.errno;
const FS_IMMUTABLE_FL = 0x10;
const FS_APPEND_FL = 0x20;
const FS_NODUMP_FL = 0x40;
const FS_NOATIME_FL = 0x80;
const FS_NOCOW_FL = 0x800000;
const FS_XFLAG_IMMUTABLE = 0x8;
const FS_XFLAG_APPEND = 0x10;
const FS_XFLAG_NOATIME = 0x40;
const FS_XFLAG_NODUMP = 0x80;
const FS_XFLAG_HASATTR = 0x80000000;
const root: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };
const user: Caller = { uid: 1000, gid: 1000, pid: 1, umask: 0o022 };

/** A reply that keeps its answer: the result and out bytes, or the errno as a negative result. */
function ioctlReply(): IoctlReply & { result: number | null; out: Buffer | null } {
  const r = {
    result: null as number | null,
    out: null as Buffer | null,
    get answered(): boolean { return r.result !== null; },
    ioctl(result: number, out?: Uint8Array): void { r.result = result; r.out = out === undefined ? null : Buffer.from(out); },
    error(errno: number): void { r.result = -errno; },
  };
  return r;
}

const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
};
const fsxattr = (xflags: number, projid = 0): Buffer => {
  const b = Buffer.alloc(FSXATTR_SIZE);
  b.writeUInt32LE(xflags >>> 0, 0);
  b.writeUInt32LE(projid, 12);
  return b;
};

// The ioctl data is in the machine's byte order; the test writes it little-endian.
t.test('the flag ioctls through the handler', { skip: os.endianness() !== 'LE' ? 'little-endian machines only' : false }, (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 16 << 20 }));
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  t.type(h.ioctl, 'function', 'the ioctl handler is there');
  t.type(h.copyFileRange, 'function', 'the copy_file_range handler is there');
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 1000, 1000).ino;
  const ioctl = (cmd: number, input: Buffer = Buffer.alloc(0), caller = root): { result: number | null; out: Buffer | null } => {
    const reply = ioctlReply();
    void h.ioctl?.({ caller, ino, fh: ino, cmd, flags: 0, input, outSize: 64 }, reply);
    return { result: reply.result, out: reply.out };
  };

  t.same(ioctl(FS_IOC_SETFLAGS, u32(FS_IMMUTABLE_FL | FS_NODUMP_FL)), { result: 0, out: null }, 'SETFLAGS');
  t.equal(fsx.getFlags(ino), IFLAG_IMMUTABLE | IFLAG_NODUMP, 'kept as the inode bits');
  t.equal(ioctl(FS_IOC_GETFLAGS).out?.readUInt32LE(0), FS_IMMUTABLE_FL | FS_NODUMP_FL, 'GETFLAGS');
  t.equal(ioctl(FS_IOC32_GETFLAGS).out?.readUInt32LE(0), FS_IMMUTABLE_FL | FS_NODUMP_FL, 'GETFLAGS, 32-bit number');
  const x = ioctl(FS_IOC_FSGETXATTR).out;
  t.equal(x?.length, FSXATTR_SIZE, 'FSGETXATTR: a struct fsxattr');
  t.equal(x?.readUInt32LE(0), FS_XFLAG_IMMUTABLE | FS_XFLAG_NODUMP, 'FSGETXATTR: the xflags');
  t.same(ioctl(FS_IOC32_SETFLAGS, u32(FS_APPEND_FL | FS_NOATIME_FL)), { result: 0, out: null }, 'SETFLAGS, 32-bit number');
  t.equal(fsx.getFlags(ino), IFLAG_APPEND | IFLAG_NOATIME);
  t.same(ioctl(FS_IOC_FSSETXATTR, fsxattr(FS_XFLAG_NOATIME | FS_XFLAG_NODUMP | FS_XFLAG_HASATTR)), { result: 0, out: null },
    'FSSETXATTR (HASATTR, read-only, ignored)');
  t.equal(fsx.getFlags(ino), IFLAG_NOATIME | IFLAG_NODUMP);
  t.equal(ioctl(FS_IOC_FSSETXATTR, fsxattr(FS_XFLAG_APPEND)).result, 0);
  t.equal(fsx.getFlags(ino), IFLAG_APPEND);
  t.equal(ioctl(FS_IOC_SETFLAGS, u32(FS_NOCOW_FL)).result, -EOPNOTSUPP, 'chattr +C: EOPNOTSUPP');
  t.equal(ioctl(FS_IOC_FSSETXATTR, fsxattr(0x20 /* FS_XFLAG_NODEFRAG... any we lack */)).result, -EOPNOTSUPP, 'an xflag rmapfs lacks: EOPNOTSUPP');
  t.equal(ioctl(FS_IOC_FSSETXATTR, fsxattr(0, 7)).result, -EOPNOTSUPP, 'a project id: EOPNOTSUPP');
  t.equal(ioctl(FS_IOC_SETFLAGS, Buffer.alloc(2)).result, -EINVAL, 'a short argument: EINVAL');
  t.equal(ioctl(FS_IOC_FSSETXATTR, Buffer.alloc(8)).result, -EINVAL, 'a short fsxattr: EINVAL');
  t.equal(ioctl(0x5401 /* TCGETS */).result, -ENOTTY, 'any other ioctl: ENOTTY');
  t.equal(fsx.getFlags(ino), IFLAG_APPEND, 'nothing changed by the refusals');
  t.equal(ioctl(FS_IOC_SETFLAGS, u32(0), user).result, -EPERM, 'the owner may not clear append-only');
  t.equal(ioctl(FS_IOC_SETFLAGS, u32(FS_APPEND_FL | FS_NODUMP_FL), user).result, 0, 'the owner sets nodump beside it');
  t.equal(ioctl(FS_IOC_SETFLAGS, u32(FS_APPEND_FL), { ...user, uid: 1001 }).result, -EPERM, 'another user: EPERM');

  const other = fsx.create(fsx.rootIno, 'g', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(other, 0, Buffer.from('0123456789'));
  const dst = fsx.create(fsx.rootIno, 'h', S_IFREG | 0o644, 0, 0).ino;
  const copied: { n: number | null } = { n: null };
  const reply: WriteReply = {
    get answered(): boolean { return copied.n !== null; },
    written(count: number): void { copied.n = count; },
    error(errno: number): void { copied.n = -errno; },
  };
  void h.copyFileRange?.({ caller: root, ino: other, fh: other, offset: 2, inoOut: dst, fhOut: dst, offsetOut: 1, length: 5, flags: 0 }, reply);
  t.equal(copied.n, 5, 'copy_file_range: the bytes copied');
  t.equal(fsx.read(dst, 0, 10).toString('latin1'), '\x0023456', 'from offset 2 to offset 1');
  t.end();
});
