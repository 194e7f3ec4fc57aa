/**
 * The adapter from fuse-native's path-based callbacks to rmapfs's
 * operations by inode number. Every handler runs to completion in one JS
 * turn (the filesystem works synchronously), answers with 0 or a negative
 * errno, and never lets an exception escape into the binding: an error that
 * is not an RmapfsError is logged and answered with EIO.
 *
 * File handles are small numbers mapped to inode numbers (fuse-native passes
 * handles as 32 bits; inode numbers of AGs past the first do not fit): an
 * open file keeps working across renames of its path. For the same reason
 * stat's st_ino is left to FUSE (no use_ino). Names longer than 255 bytes
 * are ENAMETOOLONG here -- the kernel does not check that for FUSE.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { Rmapfs, Stat } from '../fs/rmapfs';
import { S_IFMT, S_IFREG } from '../inode/inode-format';
import type { Timespec } from '../inode/inode-format';

const log = createDebug('rmapfs:fuse');

const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const EIO = 5;
const ENODATA = 61;

export interface FuseOpsOptions {
  /** Owner of what is created (fuse-native does not pass the caller's uid/gid). */
  uid: number;
  gid: number;
  readOnly: boolean;
  /** Every change is made durable before it is answered (-o sync). */
  sync: boolean;
}

type Callback = (code: number, ...result: unknown[]) => void;

function toFuseStat(st: Stat): Record<string, number> {
  const ms = (t: Timespec): number => t.sec * 1000 + Math.floor(t.nsec / 1e6);
  return {
    mode: st.mode, uid: st.uid, gid: st.gid, size: st.size, dev: 0, nlink: st.nlink, rdev: st.rdev,
    blksize: st.blksize, blocks: st.blocks, atime: ms(st.atime), mtime: ms(st.mtime), ctime: ms(st.ctime),
  };
}

function msToTimespec(ms: number): Timespec {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.round((ms - sec * 1000) * 1e6) };
}

export class FuseOps {
  /** Operations that failed with something other than an RmapfsError (bugs, I/O trouble). */
  internalErrors = 0;
  /** Open handles: handle -> inode number. */
  private readonly handles = new Map<number, number>();
  private nextHandle = 1;

  private openHandle(ino: number): number {
    while (this.handles.has(this.nextHandle) || this.nextHandle === 0) this.nextHandle = (this.nextHandle + 1) >>> 0;
    const fh = this.nextHandle;
    this.nextHandle = (this.nextHandle + 1) >>> 0;
    this.handles.set(fh, ino);
    return fh;
  }

  private inoOf(fh: number): number {
    const ino = this.handles.get(fh);
    if (ino === undefined) throw new RmapfsError('EBADF', `no open handle ${fh}`);
    return ino;
  }

  get openHandles(): number {
    return this.handles.size;
  }

  constructor(private readonly fsx: Rmapfs, private readonly opts: FuseOpsOptions) {}

  /** Path components; ENAMETOOLONG for a component over 255 bytes. */
  private components(path: string): string[] {
    const parts = path.split('/').filter((p) => p.length > 0);
    for (const p of parts) {
      if (Buffer.byteLength(p) > 255) throw new RmapfsError('ENAMETOOLONG', `name of ${Buffer.byteLength(p)} bytes`);
    }
    return parts;
  }

  resolve(path: string): number {
    let ino = this.fsx.rootIno;
    for (const part of this.components(path)) ino = this.fsx.lookup(ino, part);
    return ino;
  }

  private parent(path: string): { dir: number; name: string } {
    const parts = this.components(path);
    const name = parts.pop();
    if (name === undefined) throw new RmapfsError('EEXIST', 'the root exists');
    let dir = this.fsx.rootIno;
    for (const part of parts) dir = this.fsx.lookup(dir, part);
    return { dir, name };
  }

  /** Runs one operation and answers the kernel. */
  private answer(what: string, cb: Callback, fn: () => unknown[] | number | void, changes = false): void {
    let code = 0;
    let result: unknown[] = [];
    try {
      if (changes && this.opts.readOnly) throw new RmapfsError('EROFS', 'read-only mount');
      const r = fn();
      if (typeof r === 'number') code = r;
      else if (Array.isArray(r)) result = r;
      if (changes && this.opts.sync) this.fsx.fsync();
    } catch (e) {
      if (e instanceof RmapfsError) {
        code = -e.errno;
        log('%s: %s', what, e.message);
      } else {
        this.internalErrors++;
        code = -EIO;
        log('%s: internal error: %O', what, e);
      }
    }
    cb(code, ...result);
  }

  /** An attribute's value, or a negative errno (ENODATA when there is none). */
  xattrGet(path: string, name: string): Buffer | number {
    try {
      return this.fsx.findxattr(this.resolve(path), name) ?? -ENODATA;
    } catch (e) {
      if (e instanceof RmapfsError) return -e.errno;
      this.internalErrors++;
      log('getxattr: internal error: %O', e);
      return -EIO;
    }
  }

  /** Attribute names, or a negative errno. */
  xattrList(path: string): string[] | number {
    try {
      return this.fsx.listxattr(this.resolve(path));
    } catch (e) {
      if (e instanceof RmapfsError) return -e.errno;
      this.internalErrors++;
      log('listxattr: internal error: %O', e);
      return -EIO;
    }
  }

  /** The handlers, in fuse-native's shape. */
  handlers(): Record<string, (...args: never[]) => void> {
    const f = this.fsx;
    const o = this.opts;
    const h = {
      init: (cb: Callback) => cb(0),
      statfs: (_path: string, cb: Callback) => this.answer('statfs', cb, () => {
        const s = f.statfs();
        return [{ bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: Math.min(s.files, 0xffffffff), ffree: Math.min(s.ffree, 0xffffffff), favail: Math.min(s.ffree, 0xffffffff),
          fsid: 0, flag: 0, namemax: s.namemax }];
      }),
      getattr: (path: string, cb: Callback) => this.answer('getattr', cb, () => [toFuseStat(f.stat(this.resolve(path)))]),
      fgetattr: (_path: string, fd: number, cb: Callback) => this.answer('fgetattr', cb, () => [toFuseStat(f.stat(this.inoOf(fd)))]),
      access: (path: string, _mode: number, cb: Callback) => this.answer('access', cb, () => { this.resolve(path); }),
      readdir: (path: string, cb: Callback) => this.answer('readdir', cb, () => [f.readdir(this.resolve(path)).map((e) => e.name)]),
      opendir: (path: string, _flags: number, cb: Callback) => this.answer('opendir', cb, () => [this.openHandle(this.resolve(path))]),
      releasedir: (_path: string, fd: number, cb: Callback) => { this.handles.delete(fd); cb(0); },
      open: (path: string, _flags: number, cb: Callback) => this.answer('open', cb, () => [this.openHandle(this.resolve(path))]),
      release: (_path: string, fd: number, cb: Callback) => { this.handles.delete(fd); cb(0); },
      flush: (_path: string, _fd: number, cb: Callback) => cb(0),
      create: (path: string, mode: number, cb: Callback) => this.answer('create', cb, () => {
        const { dir, name } = this.parent(path);
        const type = mode & S_IFMT || S_IFREG;
        return [this.openHandle(f.create(dir, name, (mode & ~S_IFMT) | type, o.uid, o.gid).ino)];
      }, true),
      mknod: (path: string, mode: number, dev: number, cb: Callback) => this.answer('mknod', cb, () => {
        const { dir, name } = this.parent(path);
        f.create(dir, name, mode, o.uid, o.gid, dev);
      }, true),
      read: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback) =>
        this.answer('read', cb, () => {
          const data = f.read(this.inoOf(fd), pos, len);
          data.copy(buf);
          return data.length;
        }),
      write: (_path: string, fd: number, buf: Buffer, len: number, pos: number, cb: Callback) =>
        this.answer('write', cb, () => f.write(this.inoOf(fd), pos, buf.subarray(0, len)), true),
      truncate: (path: string, size: number, cb: Callback) => this.answer('truncate', cb, () => { f.truncate(this.resolve(path), size); }, true),
      ftruncate: (_path: string, fd: number, size: number, cb: Callback) => this.answer('ftruncate', cb, () => {
        f.truncate(this.inoOf(fd), size);
      }, true),
      fsync: (_path: string, _datasync: number, _fd: number, cb: Callback) => this.answer('fsync', cb, () => { f.fsync(); }),
      fsyncdir: (_path: string, _datasync: number, _fd: number, cb: Callback) => this.answer('fsyncdir', cb, () => { f.fsync(); }),
      mkdir: (path: string, mode: number, cb: Callback) => this.answer('mkdir', cb, () => {
        const { dir, name } = this.parent(path);
        f.mkdir(dir, name, mode, o.uid, o.gid);
      }, true),
      rmdir: (path: string, cb: Callback) => this.answer('rmdir', cb, () => {
        const { dir, name } = this.parent(path);
        f.rmdir(dir, name);
      }, true),
      unlink: (path: string, cb: Callback) => this.answer('unlink', cb, () => {
        const { dir, name } = this.parent(path);
        f.unlink(dir, name);
      }, true),
      rename: (src: string, dest: string, cb: Callback) => this.answer('rename', cb, () => {
        const s = this.parent(src);
        const d = this.parent(dest);
        f.rename(s.dir, s.name, d.dir, d.name);
      }, true),
      link: (src: string, dest: string, cb: Callback) => this.answer('link', cb, () => {
        const d = this.parent(dest);
        f.link(this.resolve(src), d.dir, d.name);
      }, true),
      symlink: (target: string, path: string, cb: Callback) => this.answer('symlink', cb, () => {
        const { dir, name } = this.parent(path);
        f.symlink(dir, name, target, o.uid, o.gid);
      }, true),
      readlink: (path: string, cb: Callback) => this.answer('readlink', cb, () => [f.readlink(this.resolve(path)).toString()]),
      chmod: (path: string, mode: number, cb: Callback) => this.answer('chmod', cb, () => { f.setattr(this.resolve(path), { mode }); }, true),
      chown: (path: string, uid: number, gid: number, cb: Callback) => this.answer('chown', cb, () => {
        f.setattr(this.resolve(path), { uid, gid });
      }, true),
      utimens: (path: string, atime: number, mtime: number, cb: Callback) => this.answer('utimens', cb, () => {
        f.setattr(this.resolve(path), { atime: msToTimespec(atime), mtime: msToTimespec(mtime) });
      }, true),
      setxattr: (path: string, name: string, value: Buffer, _position: number, flags: number, cb: Callback) =>
        this.answer('setxattr', cb, () => {
          const mode = flags & XATTR_CREATE ? 'create' : flags & XATTR_REPLACE ? 'replace' : 'any';
          f.setxattr(this.resolve(path), name, Buffer.from(value), mode);
        }, true),
      // The daemon's Fuse subclass answers getxattr/listxattr itself (it needs the buffer size);
      // these entries tell fuse-native the operations exist.
      getxattr: (path: string, name: string, _position: number, cb: Callback) => {
        const v = this.xattrGet(path, name);
        if (typeof v === 'number') cb(v);
        else cb(0, v);
      },
      listxattr: (path: string, cb: Callback) => {
        const v = this.xattrList(path);
        if (typeof v === 'number') cb(v);
        else cb(0, v);
      },
      removexattr: (path: string, name: string, cb: Callback) => this.answer('removexattr', cb, () => {
        f.removexattr(this.resolve(path), name);
      }, true),
    };
    return h as unknown as Record<string, (...args: never[]) => void>;
  }
}
