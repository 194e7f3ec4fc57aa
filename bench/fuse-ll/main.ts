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
 * Prints a table, the bars (from fuse2fs figures measured on this machine
 * by bench/io) and one JSON object as the last line.
 *
 * Usage: node dist/bench/fuse-ll/main.js [--runtime S] [--files N] [--only ll,native]   (as root)
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

type Variant = 'll' | 'll-nospin' | 'native';
const VARIANTS: readonly Variant[] = ['ll', 'll-nospin', 'native'];
const MOUNT_OPTIONS = ['default_permissions', 'max_write=131072', 'fsname=fuse-ll-bench', 'subtype=memfs'];

function isMounted(mnt: string): boolean {
  const want = ` ${path.resolve(mnt)} `;
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(want);
}

/** Serves until unmounted or SIGTERM/SIGINT; prints "ready" once mounted. */
function serve(variant: Variant, mnt: string, firstIno: number, allowOther: boolean): void {
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

interface Server { stop(): Promise<void> }

/** Starts `--serve variant mnt` in a child and waits for "ready". */
function startServer(variant: Variant, mnt: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [__filename, '--serve', variant, mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    let ready = false;
    const exited = new Promise<void>((res) => child.on('exit', () => res()));
    child.on('exit', (code) => { if (!ready) reject(new Error(`server ${variant} exited (${code}) before mounting`)); });
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (!ready && out.includes('ready\n')) {
        ready = true;
        resolve({
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

const META_SCRIPT = `
import json, os, sys, time
d, n = sys.argv[1], int(sys.argv[2])
os.mkdir(d)
names = [os.path.join(d, 'f%d' % i) for i in range(n)]
def rate(t0): return round(n / (time.perf_counter() - t0))
t0 = time.perf_counter()
for p in names: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
create = rate(t0)
time.sleep(1.2)  # past the 1 s entry/attr timeouts: every stat reaches the filesystem
t0 = time.perf_counter()
for p in names:
    if not os.path.isfile(p): raise SystemExit(p + ' is not a file')
stat = rate(t0)
time.sleep(1.2)
t0 = time.perf_counter()
for p in names: os.unlink(p)
unlink = rate(t0)
os.rmdir(d)
print(json.dumps({'create': create, 'stat': stat, 'unlink': unlink}))
`;

interface Figures { rand_write_iops: number; create_ps: number; stat_ps: number; unlink_ps: number }

async function measure(variant: Variant, mnt: string, runtime: number, files: number): Promise<Figures> {
  const server = await startServer(variant, mnt);
  try {
    const fio = await must('fio', ['--name=w', '--ioengine=psync', '--iodepth=1', '--bs=4k', '--rw=randwrite', '--size=64M',
      `--runtime=${runtime}`, '--time_based', `--filename=${path.join(mnt, 'f')}`, '--output-format=json']);
    const json = JSON.parse(fio.stdout.slice(fio.stdout.indexOf('{'))) as { jobs: Array<{ write: { iops: number } }> };
    const iops = json.jobs[0]?.write.iops;
    if (typeof iops !== 'number') throw new Error('fio JSON has no jobs[0].write.iops');
    fs.unlinkSync(path.join(mnt, 'f'));
    const meta = await must('python3', ['-c', META_SCRIPT, path.join(mnt, 'meta'), String(files)]);
    const m = JSON.parse(meta.stdout.trim().split('\n').pop() ?? '{}') as { create: number; stat: number; unlink: number };
    return { rand_write_iops: Math.round(iops), create_ps: m.create, stat_ps: m.stat, unlink_ps: m.unlink };
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
  for (const t of ['fio', 'python3', 'fusermount']) if (!onPath(t)) throw new Error(`${t} is needed`);
}

async function bench(argv: string[]): Promise<void> {
  const opt = (name: string, dflt: string): string => {
    const i = argv.indexOf(name);
    return i >= 0 && argv[i + 1] !== undefined ? (argv[i + 1] as string) : dflt;
  };
  const runtime = Number(opt('--runtime', '10'));
  const files = Number(opt('--files', '10000'));
  const only = opt('--only', VARIANTS.join(',')).split(',') as Variant[];
  ensureTools();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-fuse-ll-'));
  const results: Partial<Record<Variant, Figures>> = {};
  try {
    for (const v of only) {
      if (!VARIANTS.includes(v)) throw new Error(`unknown variant ${v}`);
      const mnt = path.join(dir, v);
      fs.mkdirSync(mnt);
      process.stderr.write(`${v}: fio ${runtime} s, then ${files} files...\n`);
      results[v] = await measure(v, mnt, runtime, files);
    }
  } finally {
    for (const v of only) spawnSync('fusermount', ['-uz', path.join(dir, v)]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const cols: Array<[keyof Figures, string]> = [
    ['rand_write_iops', 'rand-write IOPS'], ['create_ps', 'creates/s'], ['stat_ps', 'stats/s'], ['unlink_ps', 'unlinks/s'],
  ];
  const pad = (s: string, n: number): string => s.padStart(n);
  const lines = [`${'variant'.padEnd(8)}${cols.map(([, h]) => pad(h, 17)).join('')}`];
  for (const v of only) {
    const r = results[v];
    if (r !== undefined) lines.push(`${v.padEnd(8)}${cols.map(([k]) => pad(String(r[k]), 17)).join('')}`);
  }
  const ll = results.ll;
  const nat = results.native;
  if (ll !== undefined && nat !== undefined) {
    lines.push(`${'ll/nat'.padEnd(8)}${cols.map(([k]) => pad(`${(ll[k] / nat[k]).toFixed(2)}x`, 17)).join('')}`);
  }
  process.stdout.write(`${lines.join('\n')}\n`);
  const bars: Record<string, { bar: number; pass: boolean }> = {};
  for (const [k, bar] of BARS) {
    const best = Math.max(...only.filter((v) => v !== 'native').map((v) => results[v]?.[k] ?? 0));
    bars[k] = { bar, pass: best >= bar };
    process.stdout.write(`${best >= bar ? 'PASS' : 'MISS'} ${k}: ${best} (binding) vs bar ${bar}\n`);
  }
  process.stdout.write(`${JSON.stringify({ bench: 'fuse-ll', runtime_s: runtime, files, results, bars })}\n`);
}

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv[0] === '--serve') {
    const variant = argv[1] as Variant;
    const mnt = argv[2];
    if (!VARIANTS.includes(variant) || mnt === undefined) {
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
