/**
 * bench/fuse-ll: how fast can a JS filesystem be served through
 * rmapfs_fuse (libfuse 3 low-level, src/fuse/lowlevel.ts) compared with
 * fuse-native (libfuse 2.9 high-level, linked to libfuse2)? Both serve the same trivial
 * in-memory filesystem (a Map of inodes with data Buffers, no rmapfs), so
 * the figures are the binding's ceiling, not rmapfs's.
 *
 * Each variant is served by a child process (`--serve VARIANT MNT`, which
 * the tap test uses too) -- the process that serves a mount must never use
 * it -- and measured with:
 *   rand_write_iops  fio psync 4 KiB random writes on a 64 MiB file, 10 s
 *   create_ps        10,000 empty files created in one directory
 *   stat_ps          then stat each of them
 *   unlink_ps        then unlink each of them
 * (the three timed inside one python3 process, so start-up is not timed;
 * it sleeps 1.2 s before the stat and the unlink phase, past the 1 s
 * entry/attribute timeouts, so every operation reaches the filesystem
 * instead of the kernel's caches -- bench/io does not, so these figures
 * are if anything lower than bench/io's method would give).
 *
 * Variants: ll (the binding: /dev/fuse polled by the event loop, 30 us
 * spin), ll-nospin (the same without the spin), native (fuse-native). The
 * thread loop modes (ll-thread, ll-mt) went with the libfuse 3 port (only
 * this benchmark used them). Both bindings get the same operations (no flush, no
 * access: rmapfs needs neither), default_permissions, 128 KiB writes and
 * 1 s attribute/entry timeouts, as the rmapfs daemon mounts.
 *
 * --uring (issue 14: would FUSE over io_uring pay for this event-loop
 * daemon?) runs instead ll, rmapfs (its daemon on a fresh 4 GiB image) and
 * memfs-ring.c (compiled here with cc: the same trivial filesystem in C
 * straight off /dev/fuse, no libfuse) in four modes: c-classic (blocking
 * read/writev), c-classic-epoll (woken by epoll, as an event loop),
 * c-uring (one thread on the ring), c-uring-epoll (the ring woken through an
 * eventfd and epoll, as a libuv binding would be), --rounds 3 alternating,
 * medians, plus an untar of /usr/include/linux; memfs-ring counts the
 * requests of each workload, which gives microseconds per request. It sets
 * /sys/module/fuse/parameters/enable_uring to Y for the ring variants and
 * puts it back as it was; a kernel without the ring skips them and says why.
 *
 * Prints a table, the bars (from fuse2fs figures measured on this machine
 * by bench/io) and one JSON object as the last line.
 *
 * Usage: node dist/bench/fuse-ll/main.js [--runtime S] [--files N] [--only ll,native] [--rounds N] [--untar]
 *        node dist/bench/fuse-ll/main.js --uring [--runtime S] [--files N] [--rounds N]   (as root)
 *        node dist/bench/fuse-ll/main.js --serve ll|ll-nospin|native MNT [--first-ino N] [--allow-other]
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import Fuse from 'fuse-native';
import { Attr, DirEntry, LowLevelFuse, LowLevelHandlers, RENAME_NOREPLACE } from '../../src/fuse/lowlevel';

// ---------------------------------------------------------------------------
// The trivial filesystem

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const ENOENT = 2;
const EEXIST = 17;
const ENOTDIR = 20;
const EISDIR = 21;
const ENOTEMPTY = 39;
const ENODATA = 61;
const EINVAL = 22;
const EOPNOTSUPP = 95;

interface Time { sec: number; nsec: number }

interface Node {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  /** Capacity >= size; grows by doubling. */
  data: Buffer;
  atime: Time;
  mtime: Time;
  ctime: Time;
  children: Map<string, number> | null;
  target: string;
  xattrs: Map<string, Buffer>;
}

function now(): Time {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

const EMPTY = Buffer.alloc(0);

class FsError extends Error {
  constructor(readonly errno: number) {
    super(`errno ${errno}`);
  }
}

/** The in-memory filesystem both bindings serve. Root is inode 1. */
export class MemFs {
  readonly nodes = new Map<number, Node>();
  private nextIno: number;

  /** firstIno: where new inode numbers start (a big one checks that 64-bit numbers get through). */
  constructor(firstIno = 2) {
    this.nextIno = firstIno;
    this.nodes.set(1, this.make(1, S_IFDIR | 0o755, 0, 0));
    (this.nodes.get(1) as Node).nlink = 2;
  }

  private make(ino: number, mode: number, uid: number, gid: number): Node {
    const t = now();
    return {
      ino, mode, nlink: 1, uid, gid, rdev: 0, size: 0, data: EMPTY, atime: t, mtime: t, ctime: t,
      children: (mode & S_IFMT) === S_IFDIR ? new Map() : null, target: '', xattrs: new Map(),
    };
  }

  get(ino: number): Node {
    const n = this.nodes.get(ino);
    if (n === undefined) throw new FsError(ENOENT);
    return n;
  }

  dir(ino: number): Map<string, number> {
    const d = this.get(ino).children;
    if (d === null) throw new FsError(ENOTDIR);
    return d;
  }

  lookup(parent: number, name: string): Node {
    const ino = this.dir(parent).get(name);
    if (ino === undefined) throw new FsError(ENOENT);
    return this.get(ino);
  }

  create(parent: number, name: string, mode: number, uid: number, gid: number, rdev = 0): Node {
    const d = this.dir(parent);
    if (d.has(name)) throw new FsError(EEXIST);
    const n = this.make(this.nextIno++, mode, uid, gid);
    n.rdev = rdev;
    if (n.children !== null) {
      n.nlink = 2;
      this.get(parent).nlink++;
    }
    this.nodes.set(n.ino, n);
    d.set(name, n.ino);
    return n;
  }

  private drop(n: Node): void {
    n.nlink--;
    n.ctime = now();
    if (n.nlink <= 0 || n.children !== null) this.nodes.delete(n.ino);
  }

  unlink(parent: number, name: string): void {
    const n = this.lookup(parent, name);
    if (n.children !== null) throw new FsError(EISDIR);
    this.dir(parent).delete(name);
    this.drop(n);
  }

  rmdir(parent: number, name: string): void {
    const n = this.lookup(parent, name);
    if (n.children === null) throw new FsError(ENOTDIR);
    if (n.children.size > 0) throw new FsError(ENOTEMPTY);
    this.dir(parent).delete(name);
    this.get(parent).nlink--;
    this.drop(n);
  }

  rename(parent: number, name: string, newParent: number, newName: string): void {
    const n = this.lookup(parent, name);
    const dst = this.dir(newParent).get(newName);
    if (dst !== undefined) {
      const d = this.get(dst);
      if (d.children !== null) this.rmdir(newParent, newName);
      else this.unlink(newParent, newName);
    }
    this.dir(parent).delete(name);
    this.dir(newParent).set(newName, n.ino);
    if (n.children !== null && parent !== newParent) {
      this.get(parent).nlink--;
      this.get(newParent).nlink++;
    }
    n.ctime = now();
  }

  link(ino: number, newParent: number, newName: string): Node {
    const n = this.get(ino);
    const d = this.dir(newParent);
    if (d.has(newName)) throw new FsError(EEXIST);
    d.set(newName, ino);
    n.nlink++;
    n.ctime = now();
    return n;
  }

  truncate(n: Node, size: number): void {
    if (n.children !== null) throw new FsError(EISDIR);
    if (size > n.data.length) this.grow(n, size);
    else if (size < n.size) n.data.fill(0, size, n.size);
    n.size = size;
    n.mtime = n.ctime = now();
  }

  private grow(n: Node, size: number): void {
    const bigger = Buffer.alloc(Math.max(size, n.data.length * 2, 4096));
    n.data.copy(bigger, 0, 0, n.size);
    n.data = bigger;
  }

  write(n: Node, offset: number, data: Buffer): number {
    const end = offset + data.length;
    if (end > n.data.length) this.grow(n, end);
    data.copy(n.data, offset);
    if (end > n.size) n.size = end;
    n.mtime = n.ctime = now();
    return data.length;
  }

  read(n: Node, offset: number, size: number): Buffer {
    if (offset >= n.size) return EMPTY;
    return n.data.subarray(offset, Math.min(n.size, offset + size));
  }

  getxattr(n: Node, name: string): Buffer {
    const v = n.xattrs.get(name);
    if (v === undefined) throw new FsError(ENODATA);
    return v;
  }

  setxattr(n: Node, name: string, value: Buffer, flags: number): void {
    if (flags & 1 && n.xattrs.has(name)) throw new FsError(EEXIST); // XATTR_CREATE
    if (flags & 2 && !n.xattrs.has(name)) throw new FsError(ENODATA); // XATTR_REPLACE
    n.xattrs.set(name, Buffer.from(value));
    n.ctime = now();
  }

  removexattr(n: Node, name: string): void {
    if (!n.xattrs.delete(name)) throw new FsError(ENODATA);
    n.ctime = now();
  }

  static attr(n: Node): Attr {
    return {
      ino: n.ino, mode: n.mode, nlink: n.nlink, uid: n.uid, gid: n.gid, rdev: n.rdev, size: n.size,
      blocks: Math.ceil(n.size / 512), blksize: 4096, atime: n.atime, mtime: n.mtime, ctime: n.ctime,
    };
  }

  statfs(): { bsize: number; blocks: number; bfree: number; bavail: number; files: number; ffree: number; namemax: number } {
    return { bsize: 4096, blocks: 1 << 20, bfree: 1 << 19, bavail: 1 << 19, files: 1 << 20, ffree: (1 << 20) - this.nodes.size,
      namemax: 255 };
  }
}

function errnoOf(e: unknown): number {
  if (e instanceof FsError) return e.errno;
  throw e; // a bug: let the binding answer EIO and report it
}

// ---------------------------------------------------------------------------
// Served through rmapfs_fuse

export function lowLevelHandlers(f: MemFs): LowLevelHandlers {
  /** Runs fn; an FsError becomes its errno. */
  const guard = (reply: { error(errno: number): void }, fn: () => void): void => {
    try {
      fn();
    } catch (e) {
      reply.error(errnoOf(e));
    }
  };
  const entry = (n: Node) => ({ ino: n.ino, attr: MemFs.attr(n) });
  return {
    lookup: (q, r) => guard(r, () => r.entry(entry(f.lookup(q.parent, q.name)))),
    getattr: (q, r) => guard(r, () => r.attr(MemFs.attr(f.get(q.ino)))),
    setattr: (q, r) => guard(r, () => {
      const n = f.get(q.ino);
      if (q.size !== undefined) f.truncate(n, q.size);
      if (q.mode !== undefined) n.mode = (n.mode & S_IFMT) | (q.mode & ~S_IFMT);
      if (q.uid !== undefined) n.uid = q.uid;
      if (q.gid !== undefined) n.gid = q.gid;
      if (q.atime !== undefined) n.atime = q.atime === 'now' ? now() : q.atime;
      if (q.mtime !== undefined) n.mtime = q.mtime === 'now' ? now() : q.mtime;
      n.ctime = now();
      r.attr(MemFs.attr(n));
    }),
    readlink: (q, r) => guard(r, () => {
      const n = f.get(q.ino);
      if ((n.mode & S_IFMT) !== S_IFLNK) throw new FsError(EINVAL);
      r.readlink(n.target);
    }),
    mknod: (q, r) => guard(r, () => r.entry(entry(f.create(q.parent, q.name, q.mode, q.caller.uid, q.caller.gid, q.rdev)))),
    mkdir: (q, r) => guard(r, () => r.entry(entry(f.create(q.parent, q.name, S_IFDIR | (q.mode & 0o7777), q.caller.uid, q.caller.gid)))),
    unlink: (q, r) => guard(r, () => { f.unlink(q.parent, q.name); r.ok(); }),
    rmdir: (q, r) => guard(r, () => { f.rmdir(q.parent, q.name); r.ok(); }),
    symlink: (q, r) => guard(r, () => {
      const n = f.create(q.parent, q.name, S_IFLNK | 0o777, q.caller.uid, q.caller.gid);
      n.target = q.target;
      n.size = Buffer.byteLength(q.target);
      r.entry(entry(n));
    }),
    rename: (q, r) => guard(r, () => {
      // renameat2: RENAME_NOREPLACE only (the tap test checks the flags get through the binding).
      if ((q.flags & ~RENAME_NOREPLACE) !== 0) throw new FsError(EINVAL);
      if (q.flags === RENAME_NOREPLACE && f.dir(q.newParent).has(q.newName)) throw new FsError(EEXIST);
      f.rename(q.parent, q.name, q.newParent, q.newName);
      r.ok();
    }),
    link: (q, r) => guard(r, () => r.entry(entry(f.link(q.ino, q.newParent, q.newName)))),
    // 64-bit handles: the inode number itself will do.
    open: (q, r) => guard(r, () => r.open(f.get(q.ino).ino)),
    read: (q, r) => guard(r, () => r.data(f.read(f.get(q.ino), q.offset, q.size))),
    write: (q, r) => guard(r, () => r.written(f.write(f.get(q.ino), q.offset, q.data))),
    release: (_q, r) => r.ok(),
    fsync: (_q, r) => r.ok(),
    opendir: (q, r) => guard(r, () => { f.dir(q.ino); r.open(q.ino); }),
    readdir: (q, r) => guard(r, () => {
      // Offsets: 1 after ".", 2 after "..", k+3 after the k-th child.
      const list: DirEntry[] = [{ name: '.', ino: q.ino, mode: S_IFDIR, off: 1 }, { name: '..', ino: 1, mode: S_IFDIR, off: 2 }];
      let k = 3;
      for (const [name, ino] of f.dir(q.ino)) list.push({ name, ino, mode: f.get(ino).mode, off: k++ });
      r.entries(list, q.offset);
    }),
    releasedir: (_q, r) => r.ok(),
    fsyncdir: (_q, r) => r.ok(),
    statfs: (_q, r) => r.statfs(f.statfs()),
    setxattr: (q, r) => guard(r, () => { f.setxattr(f.get(q.ino), q.name, q.value, q.flags); r.ok(); }),
    getxattr: (q, r) => guard(r, () => r.value(f.getxattr(f.get(q.ino), q.name))),
    listxattr: (q, r) => guard(r, () => r.names([...f.get(q.ino).xattrs.keys()])),
    removexattr: (q, r) => guard(r, () => { f.removexattr(f.get(q.ino), q.name); r.ok(); }),
    create: (q, r) => guard(r, () => {
      const n = f.create(q.parent, q.name, S_IFREG | (q.mode & 0o7777), q.caller.uid, q.caller.gid);
      r.create(entry(n), n.ino);
    }),
    fallocate: (q, r) => guard(r, () => {
      if (q.mode !== 0) throw new FsError(EOPNOTSUPP);
      const n = f.get(q.ino);
      if (q.offset + q.length > n.size) f.truncate(n, q.offset + q.length);
      r.ok();
    }),
  };
}

// ---------------------------------------------------------------------------
// Served through fuse-native (path-based, callbacks take 0 or -errno)

type Cb = (code: number, ...rest: unknown[]) => void;

function nativeHandlers(f: MemFs): Record<string, (...args: never[]) => void> {
  const resolve = (p: string): Node => {
    let n = f.get(1);
    for (const part of p.split('/')) if (part !== '') n = f.lookup(n.ino, part);
    return n;
  };
  const parent = (p: string): { dir: number; name: string } => {
    const i = p.lastIndexOf('/');
    return { dir: resolve(p.slice(0, i)).ino, name: p.slice(i + 1) };
  };
  const ms = (t: Time): number => t.sec * 1000 + Math.floor(t.nsec / 1e6);
  const stat = (n: Node): Record<string, number> => ({
    mode: n.mode, uid: n.uid, gid: n.gid, size: n.size, dev: 0, nlink: n.nlink, ino: n.ino % 2 ** 32, rdev: n.rdev,
    blksize: 4096, blocks: Math.ceil(n.size / 512), atime: ms(n.atime), mtime: ms(n.mtime), ctime: ms(n.ctime),
  });
  const run = (cb: Cb, fn: () => unknown[] | number | void): void => {
    let code = 0;
    let rest: unknown[] = [];
    try {
      const r = fn();
      if (typeof r === 'number') code = r;
      else if (Array.isArray(r)) rest = r;
    } catch (e) {
      code = -errnoOf(e);
    }
    cb(code, ...rest);
  };
  const t = (msv: number): Time => ({ sec: Math.floor(msv / 1000), nsec: (msv % 1000) * 1e6 });
  const h = {
    init: (cb: Cb) => cb(0),
    statfs: (_p: string, cb: Cb) => run(cb, () => [{ ...f.statfs(), frsize: 4096, favail: 1 << 19, fsid: 0, flag: 0 }]),
    getattr: (p: string, cb: Cb) => run(cb, () => [stat(resolve(p))]),
    fgetattr: (_p: string, fd: number, cb: Cb) => run(cb, () => [stat(f.get(fd))]),
    readdir: (p: string, cb: Cb) => run(cb, () => [[...f.dir(resolve(p).ino).keys()]]),
    opendir: (p: string, _flags: number, cb: Cb) => run(cb, () => [resolve(p).ino]),
    releasedir: (_p: string, _fd: number, cb: Cb) => cb(0),
    open: (p: string, _flags: number, cb: Cb) => run(cb, () => [resolve(p).ino]),
    release: (_p: string, _fd: number, cb: Cb) => cb(0),
    create: (p: string, mode: number, cb: Cb) => run(cb, () => {
      const { dir, name } = parent(p);
      return [f.create(dir, name, S_IFREG | (mode & 0o7777), 0, 0).ino];
    }),
    mknod: (p: string, mode: number, dev: number, cb: Cb) => run(cb, () => {
      const { dir, name } = parent(p);
      f.create(dir, name, mode, 0, 0, dev);
    }),
    read: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run(cb, () => f.read(f.get(fd), pos, len).copy(buf)),
    write: (_p: string, fd: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run(cb, () => f.write(f.get(fd), pos, buf.subarray(0, len))),
    truncate: (p: string, size: number, cb: Cb) => run(cb, () => { f.truncate(resolve(p), size); }),
    ftruncate: (_p: string, fd: number, size: number, cb: Cb) => run(cb, () => { f.truncate(f.get(fd), size); }),
    fsync: (_p: string, _d: number, _fd: number, cb: Cb) => cb(0),
    mkdir: (p: string, mode: number, cb: Cb) => run(cb, () => {
      const { dir, name } = parent(p);
      f.create(dir, name, S_IFDIR | (mode & 0o7777), 0, 0);
    }),
    rmdir: (p: string, cb: Cb) => run(cb, () => { const { dir, name } = parent(p); f.rmdir(dir, name); }),
    unlink: (p: string, cb: Cb) => run(cb, () => { const { dir, name } = parent(p); f.unlink(dir, name); }),
    rename: (src: string, dst: string, cb: Cb) => run(cb, () => {
      const s = parent(src);
      const d = parent(dst);
      f.rename(s.dir, s.name, d.dir, d.name);
    }),
    link: (src: string, dst: string, cb: Cb) => run(cb, () => { const d = parent(dst); f.link(resolve(src).ino, d.dir, d.name); }),
    symlink: (target: string, p: string, cb: Cb) => run(cb, () => {
      const { dir, name } = parent(p);
      const n = f.create(dir, name, S_IFLNK | 0o777, 0, 0);
      n.target = target;
      n.size = Buffer.byteLength(target);
    }),
    readlink: (p: string, cb: Cb) => run(cb, () => [resolve(p).target]),
    chmod: (p: string, mode: number, cb: Cb) => run(cb, () => { const n = resolve(p); n.mode = (n.mode & S_IFMT) | (mode & ~S_IFMT); }),
    chown: (p: string, uid: number, gid: number, cb: Cb) => run(cb, () => { const n = resolve(p); n.uid = uid; n.gid = gid; }),
    utimens: (p: string, atime: number, mtime: number, cb: Cb) => run(cb, () => {
      const n = resolve(p);
      n.atime = t(atime);
      n.mtime = t(mtime);
    }),
    setxattr: (p: string, name: string, value: Buffer, _pos: number, flags: number, cb: Cb) =>
      run(cb, () => { f.setxattr(resolve(p), name, value, flags); }),
    getxattr: (p: string, name: string, _pos: number, cb: Cb) => run(cb, () => [f.getxattr(resolve(p), name)]),
    listxattr: (p: string, cb: Cb) => run(cb, () => [[...resolve(p).xattrs.keys()]]),
    removexattr: (p: string, name: string, cb: Cb) => run(cb, () => { f.removexattr(resolve(p), name); }),
  };
  return h as unknown as Record<string, (...args: never[]) => void>;
}

// ---------------------------------------------------------------------------
// Serving (the child process)

/** Served by this file's --serve: the trivial filesystem in JS. */
type JsVariant = 'll' | 'll-nospin' | 'native';
const JS_VARIANTS: readonly JsVariant[] = ['ll', 'll-nospin', 'native'];
/** Served by memfs-ring.c in its mode of the same name without the "c-". */
const C_VARIANTS = ['c-classic', 'c-classic-epoll', 'c-uring', 'c-uring-epoll'] as const;
type CVariant = typeof C_VARIANTS[number];
/** rmapfs itself: its daemon on a fresh image. */
type Variant = JsVariant | CVariant | 'rmapfs';
const VARIANTS: readonly Variant[] = [...JS_VARIANTS, ...C_VARIANTS, 'rmapfs'];
const isJs = (v: Variant): v is JsVariant => (JS_VARIANTS as readonly string[]).includes(v);
const isC = (v: Variant): v is CVariant => (C_VARIANTS as readonly string[]).includes(v);
const MOUNT_OPTIONS = ['default_permissions', 'max_write=131072', 'fsname=fuse-ll-bench', 'subtype=memfs'];

function isMounted(mnt: string): boolean {
  const want = ` ${path.resolve(mnt)} `;
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(want);
}

/** Serves until unmounted or SIGTERM/SIGINT; prints "ready" once mounted. */
function serve(variant: JsVariant, mnt: string, firstIno: number, allowOther: boolean): void {
  const f = new MemFs(firstIno);
  if (variant === 'native') {
    const fuse = new Fuse(mnt, nativeHandlers(f), {
      timeout: false, defaultPermissions: true, attrTimeout: 1, entryTimeout: 1, fsname: 'fuse-ll-bench', subtype: 'memfs',
    });
    // fuse-native takes extra -o options only through _fuseOptions.
    const base = fuse._fuseOptions.bind(fuse);
    fuse._fuseOptions = () => `${base()},big_writes,max_write=131072`;
    let stopping = false;
    const stop = (): void => {
      if (stopping) return;
      stopping = true;
      if (isMounted(mnt)) fuse.unmount(() => process.exit(0));
      else process.exit(0);
    };
    fuse.mount((err) => {
      if (err !== null) {
        process.stderr.write(`mount failed: ${err.message}\n`);
        process.exit(1);
      }
      process.stdout.write('ready\n');
      setInterval(() => { if (!isMounted(mnt)) stop(); }, 300);
    });
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return;
  }
  const fuse = new LowLevelFuse({ attrTimeout: 1, entryTimeout: 1, spinUs: variant === 'll-nospin' ? 0 : 30,
    onError: (op, e) => process.stderr.write(`op ${op} failed: ${e instanceof Error ? e.stack : String(e)}\n`) });
  const handlers = lowLevelHandlers(f);
  const counts = new Map<string, number>();
  if (process.env.FUSE_LL_COUNTS !== undefined) {
    // Debugging aid: how many requests of each kind the kernel sent.
    const h = handlers as Record<string, (q: never, r: never) => void>;
    for (const [k, fn] of Object.entries(h)) {
      h[k] = (q: never, r: never) => {
        counts.set(k, (counts.get(k) ?? 0) + 1);
        fn(q, r);
      };
    }
  }
  fuse.mount(mnt, allowOther ? [...MOUNT_OPTIONS, 'allow_other'] : MOUNT_OPTIONS, handlers);
  process.stdout.write('ready\n');
  fuse.done.then(() => {
    if (counts.size > 0) process.stderr.write(`requests: ${JSON.stringify(Object.fromEntries(counts))}\n`);
    process.exit(0);
  }, (e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
  const stop = (): void => { void fuse.unmount(); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

// ---------------------------------------------------------------------------
// Measuring (the parent)

interface RunResult { status: number | null; stdout: string; stderr: string }

function run(cmd: string, args: string[], timeoutMs = 10 * 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

async function must(cmd: string, args: string[]): Promise<RunResult> {
  const r = await run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr.trim() || r.stdout.trim()}`);
  return r;
}

const CHECKOUT = path.resolve(__dirname, '..', '..', '..');
const RMAPFS_BIN = path.join(CHECKOUT, 'bin', 'rmapfs');
const MEMFS_RING_SOURCE = path.join(CHECKOUT, 'bench', 'fuse-ll', 'memfs-ring.c');
/** The fuse module's switch for FUSE over io_uring (Linux 6.14+, CONFIG_FUSE_IO_URING). */
const ENABLE_URING = '/sys/module/fuse/parameters/enable_uring';

interface Server {
  stop(): Promise<void>;
  /** memfs-ring's --counts file (request counters), null for the other variants. */
  counts: string | null;
}

/** Starts a server and waits for "ready"; a memfs-ring that exits 3 (no ring) resolves to its message. */
function startChild(cmd: string, args: string[], mnt: string, counts: string | null): Promise<Server | string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let ready = false;
    const exited = new Promise<void>((res) => child.on('exit', () => res()));
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      if (ready) process.stderr.write(d);
    });
    child.on('exit', (code) => {
      if (ready) return;
      if (code === 3) resolve(err.trim());
      else reject(new Error(`server ${path.basename(cmd)} ${args[0] ?? ''} exited (${code}) before mounting: ${err.trim()}`));
    });
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!ready && out.includes('ready\n')) {
        ready = true;
        resolve({
          counts,
          stop: async () => {
            spawnSync('fusermount', ['-uz', mnt]);
            const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
            child.kill('SIGTERM');
            await exited;
            clearTimeout(t);
          },
        });
      }
    });
  });
}

async function startServer(variant: Variant, mnt: string, dir: string, memfsRing: string): Promise<Server | string> {
  if (isJs(variant)) return startChild(process.execPath, [__filename, '--serve', variant, mnt], mnt, null);
  if (isC(variant)) {
    const counts = path.join(dir, `${variant}.counts`);
    return startChild(memfsRing, [variant.slice(2), mnt, '--counts', counts], mnt, counts);
  }
  const image = path.join(dir, 'rmapfs.img');
  fs.rmSync(image, { force: true });
  await must(process.execPath, [RMAPFS_BIN, 'mkfs', '--size', '4G', image]);
  await must(process.execPath, [RMAPFS_BIN, 'mount', image, mnt]);
  return {
    counts: null,
    stop: async () => {
      const r = await run(process.execPath, [RMAPFS_BIN, 'umount', mnt]);
      if (r.status !== 0) spawnSync('fusermount', ['-uz', mnt]);
      fs.rmSync(image, { force: true });
    },
  };
}

/** Requests served so far by a memfs-ring ([0] of its counter page), and how many came through the ring ([64]). */
function readCounts(file: string): { total: number; viaRing: number } {
  const b = fs.readFileSync(file);
  return { total: Number(b.readBigUInt64LE(0)), viaRing: Number(b.readBigUInt64LE(64 * 8)) };
}

const META_SCRIPT = `
import json, os, struct, sys, time
d, n = sys.argv[1], int(sys.argv[2])
counts = sys.argv[3] if len(sys.argv) > 3 else None
def served():
    if counts is None: return 0
    with open(counts, 'rb') as f: return struct.unpack('<Q', f.read(8))[0]
os.mkdir(d)
names = [os.path.join(d, 'f%d' % i) for i in range(n)]
def rate(t0): return round(n / (time.perf_counter() - t0))
requests = {}
r0 = served(); t0 = time.perf_counter()
for p in names: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
create = rate(t0); requests['create'] = served() - r0
time.sleep(1.2)  # past the 1 s entry/attr timeouts: every stat reaches the filesystem
r0 = served(); t0 = time.perf_counter()
for p in names:
    if not os.path.isfile(p): raise SystemExit(p + ' is not a file')
stat = rate(t0); requests['stat'] = served() - r0
time.sleep(1.2)
r0 = served(); t0 = time.perf_counter()
for p in names: os.unlink(p)
unlink = rate(t0); requests['unlink'] = served() - r0
os.rmdir(d)
print(json.dumps({'create': create, 'stat': stat, 'unlink': unlink, 'requests': requests}))
`;

interface Figures { rand_write_iops: number; create_ps: number; stat_ps: number; unlink_ps: number; untar_s?: number }
type Workload = 'rand_write' | 'create' | 'stat' | 'unlink' | 'untar';
/** Requests a memfs-ring served in each workload, and the share of them that came through the ring. */
interface Requests {
  per: Partial<Record<Workload, number>>;
  /** Operations in each workload (writes fio made, files, one untar) */
  ops: Partial<Record<Workload, number>>;
  via_ring_share: number;
}
interface Measured { figures: Figures; requests: Requests | null }

async function measure(variant: Variant, mnt: string, dir: string, memfsRing: string, runtime: number, files: number,
  tar: string | null): Promise<Measured | string> {
  const server = await startServer(variant, mnt, dir, memfsRing);
  if (typeof server === 'string') return server;
  try {
    const served = (): { total: number; viaRing: number } => (server.counts !== null ? readCounts(server.counts) : { total: 0, viaRing: 0 });
    const start = served();
    const per: Partial<Record<Workload, number>> = {};
    const ops: Partial<Record<Workload, number>> = {};
    const fioArgs = ['--name=w', '--ioengine=psync', '--iodepth=1', '--bs=4k', '--rw=randwrite', '--size=64M',
      `--filename=${path.join(mnt, 'f')}`];
    // Laid out first, so that the timed run's requests can be counted alone.
    await must('fio', [...fioArgs, '--create_only=1']);
    let r0 = served().total;
    const fio = await must('fio', [...fioArgs, `--runtime=${runtime}`, '--time_based', '--output-format=json']);
    per.rand_write = served().total - r0;
    const json = JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: Array<{ write: { iops: number; total_ios: number } }> };
    const iops = json.jobs[0]?.write.iops;
    if (typeof iops !== 'number') throw new Error('fio JSON has no jobs[0].write.iops');
    ops.rand_write = json.jobs[0]?.write.total_ios ?? 0;
    fs.unlinkSync(path.join(mnt, 'f'));
    const metaArgs = ['-c', META_SCRIPT, path.join(mnt, 'meta'), String(files)];
    if (server.counts !== null) metaArgs.push(server.counts);
    const meta = await must('python3', metaArgs);
    const m = JSON.parse(meta.stdout.trim().split('\n').pop() ?? '{}') as {
      create: number; stat: number; unlink: number; requests: Record<'create' | 'stat' | 'unlink', number>;
    };
    per.create = m.requests.create;
    per.stat = m.requests.stat;
    per.unlink = m.requests.unlink;
    ops.create = ops.stat = ops.unlink = files;
    const figures: Figures = { rand_write_iops: Math.round(iops), create_ps: m.create, stat_ps: m.stat, unlink_ps: m.unlink };
    if (tar !== null) {
      fs.mkdirSync(path.join(mnt, 'untar'));
      r0 = served().total;
      const t0 = process.hrtime.bigint();
      await must('tar', ['-xf', tar, '-C', path.join(mnt, 'untar')]);
      figures.untar_s = Number(process.hrtime.bigint() - t0) / 1e9;
      per.untar = served().total - r0;
      ops.untar = 1;
    }
    const end = served();
    const requests = server.counts === null ? null
      : { per, ops, via_ring_share: end.total > start.total ? (end.viaRing - start.viaRing) / (end.total - start.total) : 0 };
    return { figures, requests };
  } finally {
    await server.stop();
  }
}

/** fuse2fs figures measured on this machine (bench/io) and the bars relative to them. */
const FUSE2FS = { rand_write_iops: 17_600, create_ps: 2_900, unlink_ps: 5_200 };
const BARS: Array<[keyof Figures, number]> = [
  ['rand_write_iops', FUSE2FS.rand_write_iops * 1.0],
  ['create_ps', FUSE2FS.create_ps * 2.0],
  ['unlink_ps', FUSE2FS.unlink_ps * 2.0],
];

function ensureTools(): void {
  const onPath = (t: string): boolean => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0;
  if (!onPath('fio')) {
    process.stderr.write('installing fio with apt-get\n');
    spawnSync('apt-get', ['install', '-y', '-qq', 'fio'], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  }
  for (const t of ['fio', 'python3', 'fusermount', 'tar', 'cc']) if (!onPath(t)) throw new Error(`${t} is needed`);
}

/**
 * Turns the fuse module's enable_uring on for the ring variants; returns
 * what puts it back as it was (null: the kernel has no such switch).
 */
function enableUring(): (() => void) | null {
  let before: string;
  try {
    before = fs.readFileSync(ENABLE_URING, 'utf8').trim();
  } catch {
    return null;
  }
  if (before !== 'Y') fs.writeFileSync(ENABLE_URING, 'Y');
  let restored = false;
  return () => {
    if (restored || before === 'Y') return;
    restored = true;
    try {
      fs.writeFileSync(ENABLE_URING, before);
    } catch (e) {
      process.stderr.write(`could not put ${ENABLE_URING} back to ${before}: ${e instanceof Error ? e.message : String(e)}\n`);
    }
  };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const WORKLOADS: Array<[Workload, keyof Figures, string]> = [
  ['rand_write', 'rand_write_iops', 'rand-write IOPS'], ['create', 'create_ps', 'creates/s'], ['stat', 'stat_ps', 'stats/s'],
  ['unlink', 'unlink_ps', 'unlinks/s'], ['untar', 'untar_s', 'untar s'],
];

/** Microseconds one operation of a workload took, from its figure. */
function usPerOp(w: Workload, f: Figures): number | null {
  if (w === 'untar') return f.untar_s === undefined ? null : f.untar_s * 1e6;
  const rate = f[WORKLOADS.find(([k]) => k === w)?.[1] as keyof Figures];
  return rate === undefined || rate === 0 ? null : 1e6 / rate;
}

async function bench(argv: string[]): Promise<void> {
  const opt = (name: string, dflt: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : dflt;
  };
  const uring = argv.includes('--uring');
  const runtime = Number(opt('--runtime', uring ? '5' : '10'));
  const files = Number(opt('--files', '10000'));
  const rounds = Number(opt('--rounds', uring ? '3' : '1'));
  const withUntar = uring || argv.includes('--untar');
  const defaultOnly = uring ? ['ll', ...C_VARIANTS, 'rmapfs'] : JS_VARIANTS;
  const only = opt('--only', defaultOnly.join(',')).split(',') as Variant[];
  for (const v of only) if (!VARIANTS.includes(v)) throw new Error(`unknown variant ${v} (${VARIANTS.join(', ')})`);
  ensureTools();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-fuse-ll-'));
  const ringVariants = only.filter((v) => v === 'c-uring' || v === 'c-uring-epoll');
  let restoreUring: (() => void) | null = null;
  const cleanup = (): void => {
    for (const v of only) spawnSync('fusermount', ['-uz', path.join(dir, v)]);
    restoreUring?.();
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const onSignal = (): void => {
    cleanup();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const runs: Partial<Record<Variant, Measured[]>> = {};
  const skipped: Partial<Record<Variant, string>> = {};
  try {
    let memfsRing = '';
    if (only.some(isC)) {
      memfsRing = path.join(dir, 'memfs-ring');
      await must('cc', ['-O2', '-Wall', '-Werror', '-o', memfsRing, MEMFS_RING_SOURCE]);
    }
    if (ringVariants.length > 0) {
      restoreUring = enableUring();
      if (restoreUring === null) for (const v of ringVariants) skipped[v] = `no ${ENABLE_URING}: this kernel has no FUSE over io_uring`;
    }
    let tar: string | null = null;
    if (withUntar) {
      const shm = fs.existsSync('/dev/shm') ? fs.mkdtempSync('/dev/shm/rmapfs-fuse-ll-') : dir;
      tar = path.join(shm, 'linux.tar');
      await must('tar', ['-cf', tar, '-C', '/usr/include', 'linux']);
    }
    try {
      for (let round = 1; round <= rounds; round++) {
        for (const v of only) {
          if (skipped[v] !== undefined) continue;
          const mnt = path.join(dir, v);
          fs.mkdirSync(mnt, { recursive: true });
          process.stderr.write(`round ${round}/${rounds} ${v}: fio ${runtime} s, ${files} files${tar !== null ? ', untar' : ''}...\n`);
          const r = await measure(v, mnt, dir, memfsRing, runtime, files, tar);
          if (typeof r === 'string') {
            skipped[v] = r;
            process.stderr.write(`${v}: skipped: ${r}\n`);
          } else {
            (runs[v] ??= []).push(r);
          }
        }
      }
    } finally {
      if (tar !== null) fs.rmSync(path.dirname(tar) === dir ? tar : path.dirname(tar), { recursive: true, force: true });
    }
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
    cleanup();
  }

  const results: Partial<Record<Variant, Figures>> = {};
  for (const v of only) {
    const rs = runs[v];
    if (rs === undefined) continue;
    const f: Figures = { rand_write_iops: 0, create_ps: 0, stat_ps: 0, unlink_ps: 0 };
    for (const [, k] of WORKLOADS) {
      const xs = rs.map((r) => r.figures[k]).filter((x): x is number => x !== undefined);
      if (xs.length > 0) f[k] = k === 'untar_s' ? Number(median(xs).toFixed(3)) : Math.round(median(xs));
    }
    results[v] = f;
  }
  const cols = WORKLOADS.filter(([w]) => w !== 'untar' || withUntar);
  const pad = (s: string, n: number): string => s.padStart(n);
  const w0 = 16;
  const lines = [`${rounds > 1 ? `medians of ${rounds} rounds\n` : ''}${'variant'.padEnd(w0)}${cols.map(([, , h]) => pad(h, 16)).join('')}`];
  for (const v of only) {
    const r = results[v];
    if (r !== undefined) lines.push(`${v.padEnd(w0)}${cols.map(([, k]) => pad(String(r[k] ?? '-'), 16)).join('')}`);
    else lines.push(`${v.padEnd(w0)}skipped: ${skipped[v] ?? '?'}`);
  }
  const ll = results.ll;
  const nat = results.native;
  if (ll !== undefined && nat !== undefined) {
    const ratio = (k: keyof Figures): string => {
      const a = ll[k];
      const b = nat[k];
      return a !== undefined && b !== undefined && b !== 0 ? `${(a / b).toFixed(2)}x` : '-';
    };
    lines.push(`${'ll/nat'.padEnd(w0)}${cols.map(([, k]) => pad(ratio(k), 16)).join('')}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);

  // Microseconds per request: requests per operation from memfs-ring's counters
  // (the kernel sends every variant the same requests for the same answers;
  // variants without counters take c-classic's, or the first C variant's).
  const requestsPerOp: Partial<Record<Variant, Partial<Record<Workload, number>>>> = {};
  for (const v of only) {
    const rs = runs[v];
    if (rs === undefined || rs[0]?.requests === null) continue;
    const per: Partial<Record<Workload, number>> = {};
    for (const [w] of WORKLOADS) {
      const xs = rs.map((r) => {
        const q = r.requests;
        const n = q?.per[w];
        const o = q?.ops[w];
        return n !== undefined && o !== undefined && o > 0 ? n / o : undefined;
      }).filter((x): x is number => x !== undefined);
      if (xs.length > 0) per[w] = median(xs);
    }
    requestsPerOp[v] = per;
  }
  const reference = requestsPerOp['c-classic'] ?? Object.values(requestsPerOp)[0];
  const usPerRequest: Partial<Record<Variant, Partial<Record<Workload, number>>>> = {};
  if (reference !== undefined) {
    const plines = ['', 'microseconds per request (requests/op counted by memfs-ring; the others use c-classic\'s counts)',
      `${'variant'.padEnd(w0)}${cols.map(([w]) => pad(w, 12)).join('')}`];
    plines.push(`${'requests/op'.padEnd(w0)}${cols.map(([w]) => pad(reference[w]?.toFixed(2) ?? '-', 12)).join('')}`);
    for (const v of only) {
      const f = results[v];
      if (f === undefined) continue;
      const per: Partial<Record<Workload, number>> = {};
      for (const [w] of cols) {
        const us = usPerOp(w, f);
        const n = requestsPerOp[v]?.[w] ?? reference[w];
        if (us !== null && n !== undefined && n > 0) per[w] = Number((us / n).toFixed(2));
      }
      usPerRequest[v] = per;
      plines.push(`${v.padEnd(w0)}${cols.map(([w]) => pad(per[w]?.toFixed(2) ?? '-', 12)).join('')}`);
    }
    const diff = (a: Variant, b: Variant): void => {
      const pa = usPerRequest[a];
      const pb = usPerRequest[b];
      if (pa === undefined || pb === undefined) return;
      plines.push(`${`${a.slice(2)}-${b.slice(2)}`.padEnd(w0)}${cols.map(([w]) => {
        const x = pa[w];
        const y = pb[w];
        return pad(x !== undefined && y !== undefined ? (x - y).toFixed(2) : '-', 12);
      }).join('')}`);
    };
    diff('c-uring', 'c-classic');
    diff('c-uring-epoll', 'c-classic-epoll');
    for (const v of ['c-uring', 'c-uring-epoll'] as const) {
      const shares = runs[v]?.map((r) => r.requests?.via_ring_share ?? 0);
      if (shares !== undefined) plines.push(`${v}: ${(100 * median(shares)).toFixed(1)}% of requests came through the ring (the rest: forgets, through /dev/fuse)`);
    }
    process.stdout.write(`${plines.join('\n')}\n`);
  }

  const bars: Record<string, { bar: number; pass: boolean }> = {};
  const binding = only.filter((v) => v === 'll' || v === 'll-nospin');
  if (binding.length > 0) {
    for (const [k, bar] of BARS) {
      const best = Math.max(...binding.map((v) => results[v]?.[k] ?? 0));
      bars[k] = { bar, pass: best >= bar };
      process.stdout.write(`${best >= bar ? 'PASS' : 'MISS'} ${k}: ${best} (binding) vs bar ${bar}\n`);
    }
  }
  process.stdout.write(`${JSON.stringify({ bench: 'fuse-ll', runtime_s: runtime, files, rounds, results, requests_per_op: requestsPerOp,
    us_per_request: usPerRequest, skipped, bars })}\n`);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--serve') {
    const variant = argv[1] as JsVariant;
    const mnt = argv[2];
    if (!JS_VARIANTS.includes(variant) || mnt === undefined) {
      process.stderr.write('usage: main.js --serve ll|ll-nospin|native MNT\n');
      process.exit(2);
    }
    const i = argv.indexOf('--first-ino');
    serve(variant, mnt, i >= 0 ? Number(argv[i + 1]) : 2, argv.includes('--allow-other'));
  } else {
    bench(argv).catch((e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
      process.exit(1);
    });
  }
}
