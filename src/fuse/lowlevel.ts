/**
 * The typed face of rmapfs_fuse (native/fuse_ll.cc): libfuse 3's
 * *low-level* session API, by inode number, for Node.
 *
 * Why not fuse-native: it drives libfuse 2's high-level (path-based) API,
 * which resolves a path for every request, passes file handles and st_ino as
 * 32 bits, hides the caller's uid/gid, has no fallocate, and makes its FUSE
 * thread wait on a semaphore for every answer from JS. Here the event loop
 * itself reads /dev/fuse (no other thread), JS answers whenever it likes
 * through a reply object, and several queued requests are handled per
 * event-loop turn.
 *
 * Rules for handlers:
 *  - Answer every request exactly once, now or later (a second answer
 *    throws). A request never answered leaves its caller blocked until the
 *    filesystem is unmounted.
 *  - A handler that throws (or whose promise rejects) before answering is
 *    answered EIO, and `onError` hears about it.
 *  - Never touch the mount from this process with a synchronous call: the
 *    JS thread would wait for itself. Test and benchmark from a child.
 *  - Operations without a handler get libfuse's default answer: ENOSYS for
 *    most (which also makes the kernel stop sending flush, fsync, access,
 *    xattr requests, ...), success for open/opendir/release/releasedir.
 *
 * Numbers: inode numbers and file handles are 64-bit in FUSE and travel as
 * JS numbers here, so they must stay below 2^53 (rmapfs's do). Names and
 * symlink targets are decoded as UTF-8.
 */
import { RmapfsError, errnoOf } from '../errors';
import * as path from 'path';
import { execFile } from 'child_process';

/** Operation numbers shared with native/fuse_ll.cc (RMAPFS_OPS), checked at load. */
export enum Op {
  EXIT = 0,
  LOOKUP = 1,
  FORGET = 2,
  GETATTR = 3,
  SETATTR = 4,
  READLINK = 5,
  MKNOD = 6,
  MKDIR = 7,
  UNLINK = 8,
  RMDIR = 9,
  SYMLINK = 10,
  RENAME = 11,
  LINK = 12,
  OPEN = 13,
  READ = 14,
  WRITE = 15,
  FLUSH = 16,
  RELEASE = 17,
  FSYNC = 18,
  OPENDIR = 19,
  READDIR = 20,
  RELEASEDIR = 21,
  FSYNCDIR = 22,
  STATFS = 23,
  SETXATTR = 24,
  GETXATTR = 25,
  LISTXATTR = 26,
  REMOVEXATTR = 27,
  ACCESS = 28,
  CREATE = 29,
  FALLOCATE = 30,
  LSEEK = 31,
  READDIRPLUS = 32,
  IOCTL = 33,
  COPY_FILE_RANGE = 34,
}

/** Slots of the "in" scratch (request numbers); native RMAPFS_IN_SLOTS, checked at load. */
export enum In {
  INO = 0, INO2 = 1, FH = 2, OFFSET = 3, SIZE = 4, MODE = 5, FLAGS = 6, UID = 7, GID = 8, PID = 9, UMASK = 10,
  RDEV = 11, TO_SET = 12, A_MODE = 13, A_UID = 14, A_GID = 15, A_SIZE = 16, A_ATIME = 17, A_ATIME_NS = 18,
  A_MTIME = 19, A_MTIME_NS = 20, HAS_FH = 21, NLOOKUP = 22, FH2 = 23, OFFSET2 = 24, IOCTL_CMD = 25, A_CTIME = 26, A_CTIME_NS = 27,
  KERNEL_FLAGS = 28,
}

/** Slots of the "out" scratch (reply numbers); native RMAPFS_OUT_SLOTS / RMAPFS_STATFS_SLOTS, checked at load. */
export enum Out {
  INO = 0, GENERATION = 1, ATTR_TIMEOUT = 2, ENTRY_TIMEOUT = 3, MODE = 4, NLINK = 5, UID = 6, GID = 7, RDEV = 8,
  SIZE = 9, BLOCKS = 10, BLKSIZE = 11, ATIME = 12, ATIME_NS = 13, MTIME = 14, MTIME_NS = 15, CTIME = 16, CTIME_NS = 17,
}
export enum OutStatfs {
  BSIZE = 0, FRSIZE = 1, BLOCKS = 2, BFREE = 3, BAVAIL = 4, FILES = 5, FFREE = 6, FAVAIL = 7, FSID = 8, FLAG = 9,
  NAMEMAX = 10,
}

/** FUSE_SET_ATTR_* (fuse_lowlevel.h). */
const SET_MODE = 1 << 0;
const SET_UID = 1 << 1;
const SET_GID = 1 << 2;
const SET_SIZE = 1 << 3;
const SET_ATIME = 1 << 4;
const SET_MTIME = 1 << 5;
const SET_ATIME_NOW = 1 << 7;
const SET_MTIME_NOW = 1 << 8;
const SET_CTIME = 1 << 10;

/**
 * The kernel's own request flags (linux/fuse.h) that the binding passes on while killpriv_v2 is
 * granted (In.KERNEL_FLAGS): WRITE's write_flags, SETATTR's valid.
 */
const FUSE_WRITE_CACHE = 1 << 0;
const FUSE_WRITE_KILL_SUIDGID = 1 << 2;
const FATTR_KILL_SUIDGID = 1 << 11;

const EIO = errnoOf('EIO');
const ENOENT = errnoOf('ENOENT');
const EPERM = errnoOf('EPERM');
const ERANGE = errnoOf('ERANGE');

/** renameat2 flags (linux/fs.h): the rename handler answers EINVAL for those it does not support. */
export const RENAME_NOREPLACE = 1 << 0;
export const RENAME_EXCHANGE = 1 << 1;
export const RENAME_WHITEOUT = 1 << 2;

/** lseek whence values (linux/fs.h) that reach the lseek handler. */
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** Bits for open/create replies (native OPEN_*). */
export const OpenFlags = { directIo: 1, keepCache: 2, nonseekable: 4 } as const;

// ---------------------------------------------------------------------------
// The addon

declare const sessionBrand: unique symbol;
/** The native session (an External); only the addon looks inside. */
type SessionHandle = { readonly [sessionBrand]: true };

type Dispatch = (op: number, id: number, name: string | undefined, name2: string | undefined,
  data: Buffer | undefined) => void;

/**
 * Every reply takes the request id first and returns fuse_reply_*'s result
 * (0, or -ENOENT when the kernel interrupted the request meanwhile: nothing
 * to do then). Entry, attribute and statfs numbers are read from
 * `outScratch`, filled just before the call, to spare one N-API property
 * read per field.
 */
interface FuseAddon {
  readonly inScratch: Float64Array;
  readonly outScratch: Float64Array;
  /** The numbers shared with this file, by name (see checkSharedTables). */
  readonly tables: SharedTables;
  /** opMask: bit `op` set (a sum of powers of two, exact up to 2^52) for each handled op. */
  mount(mountpoint: string, options: string, dispatch: Dispatch, opMask: number, spinUs: number): SessionHandle;
  /** Lazy umount2(2); 0 or the errno. */
  unmount(session: SessionHandle): number;
  pending(session: SessionHandle): boolean;
  /** INIT granted POSIX ACLs (asked for with the posix_acl option). */
  posixAcl(session: SessionHandle): boolean;
  /** INIT's reply carried FUSE_HANDLE_KILLPRIV_V2 (asked for with the killpriv_v2 option). */
  killprivV2(session: SessionHandle): boolean;
  /** The kernel writes the inode's dirty pages back and drops its cache (on a worker thread); done(0 or errno). */
  writeBack(session: SessionHandle, ino: number, done: (errno: number) => void): void;
  invalidateAttributes(session: SessionHandle, ino: number): number;
  /** Calls back on every change of this namespace's mount table; returns stop(). */
  watchMounts(onChange: () => void): () => void;
  replyErr(id: number, errno: number): number;
  replyNone(id: number): number;
  replyEntry(id: number): number;
  replyCreate(id: number, fh: number, openFlags: number): number;
  replyAttr(id: number): number;
  replyReadlink(id: number, target: string): number;
  replyOpen(id: number, fh: number, openFlags: number): number;
  replyWrite(id: number, count: number): number;
  replyBuf(id: number, buf: Uint8Array, offset?: number, length?: number): number;
  replyLseek(id: number, offset: number): number;
  /** The ioctl's result and the bytes for the caller's out area (cut to the request's out size). */
  replyIoctl(id: number, result: number, out?: Uint8Array): number;
  replyStatfs(id: number): number;
  replyXattr(id: number, size: number): number;
  /** Returns how many entries fitted in the request's size. */
  replyReaddir(id: number, entries: readonly DirEntry[], start: number): number;
  /**
   * The same with attributes: entry i's in attrs[i * outScratch.length ..], laid out as the out
   * scratch (INO 0: none). Returns how many were sent, -1 when the reply did not reach the kernel.
   */
  replyReaddirplus(id: number, entries: readonly DirEntry[], start: number, attrs: Float64Array): number;
}

/** Name -> number, for each enum shared with the addon. */
export interface SharedTables {
  ops: Readonly<Record<string, number>>;
  in: Readonly<Record<string, number>>;
  out: Readonly<Record<string, number>>;
  statfs: Readonly<Record<string, number>>;
}

/** A TypeScript numeric enum's names and numbers (without the reverse mapping). */
function enumTable(e: Record<string, string | number>): Record<string, number> {
  const table: Record<string, number> = {};
  for (const [name, n] of Object.entries(e)) if (typeof n === 'number') table[name] = n;
  return table;
}

/** This file's side of the shared numbers. */
export const LOCAL_TABLES: SharedTables = {
  ops: enumTable(Op), in: enumTable(In), out: enumTable(Out), statfs: enumTable(OutStatfs),
};

/**
 * Throws one line naming every difference between the addon's numbers and
 * ours: a stale build/ (or an edit on one side only) would otherwise answer
 * one operation with another's handler, or read a reply from the wrong slot.
 */
export function checkSharedTables(addonTables: SharedTables, local: SharedTables = LOCAL_TABLES): void {
  const diffs: string[] = [];
  for (const group of ['ops', 'in', 'out', 'statfs'] as const) {
    const theirs = addonTables[group] ?? {};
    const ours = local[group];
    for (const name of new Set([...Object.keys(ours), ...Object.keys(theirs)])) {
      const a = theirs[name];
      const b = ours[name];
      if (a !== b) diffs.push(`${group}.${name} is ${a ?? 'missing'} in the addon, ${b ?? 'missing'} here`);
    }
  }
  if (diffs.length > 0) {
    throw new Error(`rmapfs_fuse: build/Release/rmapfs_fuse.node and src/fuse/lowlevel.ts disagree (${diffs.join('; ')}): rebuild with make`);
  }
}

let addonCache: FuseAddon | null = null;

/** Loaded (and checked) on first use, so importing this module does not need the addon built. */
function addon(): FuseAddon {
  if (addonCache === null) {
    // dist/src/fuse/lowlevel.js -> <root>/build/Release/rmapfs_fuse.node
    const root = path.resolve(__dirname, '..', '..', '..');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const loaded = require(path.join(root, 'build', 'Release', 'rmapfs_fuse.node')) as FuseAddon;
    checkSharedTables(loaded.tables);
    addonCache = loaded;
  }
  return addonCache;
}

/** The addon's own tables (loading it): tests compare them with LOCAL_TABLES. */
export function addonSharedTables(): SharedTables {
  return addon().tables;
}

/** libfuse 3's setuid helper: mounts and unmounts for users who are not root. */
export const FUSERMOUNT = 'fusermount3';

// ---------------------------------------------------------------------------
// Requests

/** The process that made the request (fuse_req_ctx). */
/**
 * Calls `onChange` (on the event loop) whenever a mount, unmount or remount
 * changes this process's mount table (POLLPRI on /proc/self/mountinfo).
 * Returns a function that stops watching.
 */
export function watchMountTable(onChange: () => void): () => void {
  return addon().watchMounts(onChange);
}

export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

/** Structurally the same as rmapfs's Timespec. */
export interface Time {
  sec: number;
  nsec: number;
}

export interface Attr {
  /** Defaults to the entry's (or the request's) inode number. */
  ino?: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  rdev?: number;
  /** 512-byte units. */
  blocks?: number;
  blksize?: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
}

export interface Entry {
  ino: number;
  generation?: number;
  attr: Attr;
  /** Seconds; the LowLevelFuse's defaults when left out. */
  attrTimeout?: number;
  entryTimeout?: number;
}

export interface DirEntry {
  name: string;
  ino: number;
  /** Only the type bits (S_IFMT) matter. */
  mode: number;
  /** The readdir offset of the entry *after* this one. */
  off: number;
}

/**
 * A readdirplus entry: `entry` (null for none: "." and "..", or an inode that could not be read)
 * is what a lookup of the name would answer, and like a lookup it counts as a kernel reference
 * when sent.
 */
export interface DirEntryPlus extends DirEntry {
  entry: Entry | null;
}

export interface Statfs {
  bsize: number;
  frsize?: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail?: number;
  fsid?: number;
  flag?: number;
  namemax: number;
}

interface Req {
  caller: Caller;
}
export interface InoRequest extends Req { ino: number }
export interface NameRequest extends Req { parent: number; name: string }
export interface FhRequest extends InoRequest { fh: number }
export interface ForgetRequest { ino: number; nlookup: number }
export interface GetattrRequest extends InoRequest { fh: number | null }
/** Only what the kernel asked to change is present; 'now' is the server's clock. */
export interface SetattrRequest extends InoRequest {
  fh: number | null;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Time | 'now';
  mtime?: Time | 'now';
  /** Sent by the writeback cache with the mtime it kept (the kernel owns a cached file's times). */
  ctime?: Time;
  /**
   * A truncate by a caller without CAP_FSETID (FATTR_KILL_SUIDGID): suid/sgid must go. Only
   * while killpriv_v2 is granted (LowLevelFuse.killprivV2); false otherwise.
   */
  killSuidgid: boolean;
}
export interface MknodRequest extends NameRequest { mode: number; rdev: number }
export interface MkdirRequest extends NameRequest { mode: number }
export interface SymlinkRequest extends NameRequest { target: string }
/** flags: renameat2's RENAME_* bits (0 for a plain rename). */
export interface RenameRequest extends NameRequest { newParent: number; newName: string; flags: number }
export interface LinkRequest extends InoRequest { newParent: number; newName: string }
export interface OpenRequest extends InoRequest { flags: number }
export interface ReadRequest extends FhRequest { offset: number; size: number }
/** `data` is this request's own copy: keep it if you like. */
export interface WriteRequest extends FhRequest {
  offset: number;
  data: Buffer;
  /**
   * killSuidgid: the writer lacks CAP_FSETID (FUSE_WRITE_KILL_SUIDGID), suid/sgid must go; only
   * while killpriv_v2 is granted (LowLevelFuse.killprivV2), false otherwise. fromCache: the
   * kernel's writeback of cached pages (FUSE_WRITE_CACHE), not a write(2) -- which was checked
   * back then, and waits for no answer now (always known).
   */
  killSuidgid: boolean;
  fromCache: boolean;
}
export interface ReleaseRequest extends FhRequest { flags: number }
export interface FsyncRequest extends FhRequest { datasync: boolean }
export interface ReaddirRequest extends FhRequest { offset: number; size: number }
export interface SetxattrRequest extends InoRequest { name: string; value: Buffer; flags: number }
/** size 0 asks for the value's length only. */
export interface GetxattrRequest extends InoRequest { name: string; size: number }
export interface ListxattrRequest extends InoRequest { size: number }
export interface RemovexattrRequest extends InoRequest { name: string }
export interface AccessRequest extends InoRequest { mask: number }
export interface CreateRequest extends NameRequest { mode: number; flags: number }
export interface FallocateRequest extends FhRequest { mode: number; offset: number; length: number }
/** whence: SEEK_DATA or SEEK_HOLE (the kernel answers the others itself). */
export interface LseekRequest extends FhRequest { offset: number; whence: number }
/**
 * A restricted ioctl (its sizes encoded in cmd): `input` is what the caller
 * passed in (empty for a read-only command), `outSize` how many bytes may go
 * back; flags: FUSE_IOCTL_* (COMPAT, DIR, ...).
 */
export interface IoctlRequest extends FhRequest { cmd: number; flags: number; input: Buffer; outSize: number }
/** copy_file_range(2): `length` bytes from (ino, fh, offset) to (inoOut, fhOut, offsetOut). */
export interface CopyFileRangeRequest extends FhRequest {
  offset: number;
  inoOut: number;
  fhOut: number;
  offsetOut: number;
  length: number;
  flags: number;
}

// ---------------------------------------------------------------------------
// Replies: one object per request; each handler sees only the answers its
// operation allows.

export interface ErrorReply {
  /** A positive errno. */
  error(errno: number): void;
  readonly answered: boolean;
}
export interface StatusReply extends ErrorReply { ok(): void }
export interface EntryReply extends ErrorReply {
  entry(e: Entry): void;
  /** "No such name", cached by the kernel for `timeout` seconds. */
  negative(timeout?: number): void;
}
export interface AttrReply extends ErrorReply { attr(a: Attr, timeout?: number): void }
export interface ReadlinkReply extends ErrorReply { readlink(target: string): void }
export interface OpenReply extends ErrorReply { open(fh: number, flags?: number): void }
export interface CreateReply extends ErrorReply { create(e: Entry, fh: number, flags?: number): void }
export interface DataReply extends ErrorReply { data(buf: Uint8Array, offset?: number, length?: number): void }
export interface WriteReply extends ErrorReply { written(count: number): void }
export interface ReaddirReply extends ErrorReply {
  /** Sends entries[start..] that fit the request's size; returns how many did. */
  entries(list: readonly DirEntry[], start?: number): number;
}
export interface ReaddirplusReply extends ErrorReply {
  /**
   * Sends entries[start..] that fit the request's size, with their attributes; returns how many
   * did (0 when the reply did not reach the kernel). Each one sent with an entry, "." and ".."
   * aside, is a lookup the kernel will forget.
   */
  entriesPlus(list: readonly DirEntryPlus[], start?: number): number;
}
export interface StatfsReply extends ErrorReply { statfs(s: Statfs): void }
export interface XattrReply extends ErrorReply {
  /** The size-0 probe, ERANGE and the copy are handled here. */
  value(v: Uint8Array): void;
}
export interface ListxattrReply extends ErrorReply { names(list: readonly string[]): void }
/** The file position lseek(2) returns. */
export interface LseekReply extends ErrorReply { position(offset: number): void }
/** An ioctl's return value (>= 0) and its out data (omitted: none). */
export interface IoctlReply extends ErrorReply { ioctl(result: number, out?: Uint8Array): void }

type Handler<R, P> = (req: R, reply: P) => void | Promise<void>;

export interface LowLevelHandlers {
  lookup?: Handler<NameRequest, EntryReply>;
  /** No answer: the kernel dropped `nlookup` references. */
  forget?: (req: ForgetRequest) => void;
  getattr?: Handler<GetattrRequest, AttrReply>;
  setattr?: Handler<SetattrRequest, AttrReply>;
  readlink?: Handler<InoRequest, ReadlinkReply>;
  mknod?: Handler<MknodRequest, EntryReply>;
  mkdir?: Handler<MkdirRequest, EntryReply>;
  unlink?: Handler<NameRequest, StatusReply>;
  rmdir?: Handler<NameRequest, StatusReply>;
  symlink?: Handler<SymlinkRequest, EntryReply>;
  rename?: Handler<RenameRequest, StatusReply>;
  link?: Handler<LinkRequest, EntryReply>;
  open?: Handler<OpenRequest, OpenReply>;
  read?: Handler<ReadRequest, DataReply>;
  write?: Handler<WriteRequest, WriteReply>;
  flush?: Handler<FhRequest, StatusReply>;
  release?: Handler<ReleaseRequest, StatusReply>;
  fsync?: Handler<FsyncRequest, StatusReply>;
  opendir?: Handler<OpenRequest, OpenReply>;
  readdir?: Handler<ReaddirRequest, ReaddirReply>;
  releasedir?: Handler<ReleaseRequest, StatusReply>;
  fsyncdir?: Handler<FsyncRequest, StatusReply>;
  statfs?: Handler<InoRequest, StatfsReply>;
  setxattr?: Handler<SetxattrRequest, StatusReply>;
  getxattr?: Handler<GetxattrRequest, XattrReply>;
  listxattr?: Handler<ListxattrRequest, ListxattrReply>;
  removexattr?: Handler<RemovexattrRequest, StatusReply>;
  access?: Handler<AccessRequest, StatusReply>;
  create?: Handler<CreateRequest, CreateReply>;
  fallocate?: Handler<FallocateRequest, StatusReply>;
  lseek?: Handler<LseekRequest, LseekReply>;
  /** With it the kernel asks for entries and attributes together (adaptive readdirplus). */
  readdirplus?: Handler<ReaddirRequest, ReaddirplusReply>;
  ioctl?: Handler<IoctlRequest, IoctlReply>;
  /** Answered with the bytes copied (`written`). */
  copyFileRange?: Handler<CopyFileRangeRequest, WriteReply>;
}

const HANDLER_OPS: ReadonlyArray<[keyof LowLevelHandlers, Op]> = [
  ['lookup', Op.LOOKUP], ['forget', Op.FORGET], ['getattr', Op.GETATTR], ['setattr', Op.SETATTR],
  ['readlink', Op.READLINK], ['mknod', Op.MKNOD], ['mkdir', Op.MKDIR], ['unlink', Op.UNLINK], ['rmdir', Op.RMDIR],
  ['symlink', Op.SYMLINK], ['rename', Op.RENAME], ['link', Op.LINK], ['open', Op.OPEN], ['read', Op.READ],
  ['write', Op.WRITE], ['flush', Op.FLUSH], ['release', Op.RELEASE], ['fsync', Op.FSYNC], ['opendir', Op.OPENDIR],
  ['readdir', Op.READDIR], ['releasedir', Op.RELEASEDIR], ['fsyncdir', Op.FSYNCDIR], ['statfs', Op.STATFS],
  ['setxattr', Op.SETXATTR], ['getxattr', Op.GETXATTR], ['listxattr', Op.LISTXATTR],
  ['removexattr', Op.REMOVEXATTR], ['access', Op.ACCESS], ['create', Op.CREATE], ['fallocate', Op.FALLOCATE],
  ['lseek', Op.LSEEK], ['readdirplus', Op.READDIRPLUS], ['ioctl', Op.IOCTL], ['copyFileRange', Op.COPY_FILE_RANGE],
];

export interface LowLevelOptions {
  /** Default seconds the kernel may cache attributes (entry and attr replies). */
  attrTimeout?: number;
  /** Default seconds the kernel may cache a name -> inode mapping. */
  entryTimeout?: number;
  /** Default seconds the kernel may remember that a name does not exist (0: not at all). */
  negativeTimeout?: number;
  /**
   * The event loop polls /dev/fuse and each readable event reads and
   * dispatches up to 64 requests on the JS thread. After the last queued
   * request it keeps reading /dev/fuse for this many microseconds before
   * sleeping in epoll. A synchronous caller
   * (one write after another) sends its next request within microseconds,
   * while waking an idle thread costs tens of them on a small VM: measured
   * here, 20-30 us of spinning takes 4 KiB random writes from ~10k to ~26k
   * IOPS and creates from ~7k to ~15k/s. It costs at most this much CPU per
   * burst of requests (none while idle). 0 disables it. Default 30.
   */
  spinUs?: number;
  /** A handler threw or rejected (the request was answered EIO if it had not been). */
  onError?: (op: Op, err: unknown) => void;
}

/** Attributes into the out scratch's layout, at `base` in `o` (readdirplus packs one row per entry). */
function writeAttr(o: Float64Array, a: Attr, ino: number, base = 0): void {
  o[base + Out.INO] = a.ino ?? ino;
  o[base + Out.MODE] = a.mode;
  o[base + Out.NLINK] = a.nlink;
  o[base + Out.UID] = a.uid;
  o[base + Out.GID] = a.gid;
  o[base + Out.RDEV] = a.rdev ?? 0;
  o[base + Out.SIZE] = a.size;
  o[base + Out.BLOCKS] = a.blocks ?? Math.ceil(a.size / 512);
  o[base + Out.BLKSIZE] = a.blksize ?? 4096;
  o[base + Out.ATIME] = a.atime.sec;
  o[base + Out.ATIME_NS] = a.atime.nsec;
  o[base + Out.MTIME] = a.mtime.sec;
  o[base + Out.MTIME_NS] = a.mtime.nsec;
  o[base + Out.CTIME] = a.ctime.sec;
  o[base + Out.CTIME_NS] = a.ctime.nsec;
}

/**
 * One request's answers. A single class implements every reply interface
 * (one small object per request, methods on the prototype); the handler
 * types narrow it to what the operation allows.
 */
class Reply implements StatusReply, EntryReply, AttrReply, ReadlinkReply, OpenReply, CreateReply, DataReply,
  WriteReply, ReaddirReply, ReaddirplusReply, StatfsReply, XattrReply, ListxattrReply, LseekReply, IoctlReply {
  answered = false;

  constructor(private readonly a: FuseAddon, private readonly fuse: LowLevelFuse, readonly id: number,
    /** The inode the request is about (st_ino default for attr). */
    private readonly ino: number,
    /** Size limit of getxattr/listxattr. */
    private readonly size: number) {}

  private take(): void {
    if (this.answered) throw new Error(`FUSE request ${this.id} answered twice`);
    this.answered = true;
  }

  error(errno: number): void {
    this.take();
    this.a.replyErr(this.id, errno > 0 ? errno : EIO);
  }

  ok(): void {
    this.take();
    this.a.replyErr(this.id, 0);
  }

  private writeEntry(e: Entry, o: Float64Array = this.a.outScratch, base = 0): void {
    writeAttr(o, e.attr, e.ino, base);
    o[base + Out.INO] = e.ino;
    o[base + Out.GENERATION] = e.generation ?? 0;
    o[base + Out.ATTR_TIMEOUT] = e.attrTimeout ?? this.fuse.attrTimeout;
    o[base + Out.ENTRY_TIMEOUT] = e.entryTimeout ?? this.fuse.entryTimeout;
  }

  entry(e: Entry): void {
    this.take();
    this.writeEntry(e);
    this.a.replyEntry(this.id);
  }

  negative(timeout = this.fuse.negativeTimeout): void {
    this.take();
    const o = this.a.outScratch;
    o.fill(0);
    o[Out.ENTRY_TIMEOUT] = timeout;
    this.a.replyEntry(this.id);
  }

  attr(at: Attr, timeout = this.fuse.attrTimeout): void {
    this.take();
    const o = this.a.outScratch;
    writeAttr(o, at, this.ino);
    o[Out.ATTR_TIMEOUT] = timeout;
    this.a.replyAttr(this.id);
  }

  readlink(target: string): void {
    this.take();
    this.a.replyReadlink(this.id, target);
  }

  open(fh: number, flags = 0): void {
    this.take();
    this.a.replyOpen(this.id, fh, flags);
  }

  create(e: Entry, fh: number, flags = 0): void {
    this.take();
    this.writeEntry(e);
    this.a.replyCreate(this.id, fh, flags);
  }

  data(buf: Uint8Array, offset?: number, length?: number): void {
    this.take();
    this.a.replyBuf(this.id, buf, offset ?? 0, length ?? buf.length - (offset ?? 0));
  }

  written(count: number): void {
    this.take();
    this.a.replyWrite(this.id, count);
  }

  position(offset: number): void {
    this.take();
    this.a.replyLseek(this.id, offset);
  }

  ioctl(result: number, out?: Uint8Array): void {
    this.take();
    this.a.replyIoctl(this.id, result, out);
  }

  entries(list: readonly DirEntry[], start = 0): number {
    this.take();
    return this.a.replyReaddir(this.id, list, start);
  }

  entriesPlus(list: readonly DirEntryPlus[], start = 0): number {
    this.take();
    const stride = this.a.outScratch.length;
    const attrs = new Float64Array(list.length * stride); // zeroes: INO 0, no entry
    for (let i = start; i < list.length; i++) {
      const e = list[i]!.entry;
      if (e !== null) this.writeEntry(e, attrs, i * stride);
    }
    return Math.max(0, this.a.replyReaddirplus(this.id, list, start, attrs));
  }

  statfs(s: Statfs): void {
    this.take();
    const o = this.a.outScratch;
    o[OutStatfs.BSIZE] = s.bsize;
    o[OutStatfs.FRSIZE] = s.frsize ?? s.bsize;
    o[OutStatfs.BLOCKS] = s.blocks;
    o[OutStatfs.BFREE] = s.bfree;
    o[OutStatfs.BAVAIL] = s.bavail;
    o[OutStatfs.FILES] = s.files;
    o[OutStatfs.FFREE] = s.ffree;
    o[OutStatfs.FAVAIL] = s.favail ?? s.ffree;
    o[OutStatfs.FSID] = s.fsid ?? 0;
    o[OutStatfs.FLAG] = s.flag ?? 0;
    o[OutStatfs.NAMEMAX] = s.namemax;
    this.a.replyStatfs(this.id);
  }

  value(v: Uint8Array): void {
    this.take();
    if (this.size === 0) this.a.replyXattr(this.id, v.length);
    else if (v.length > this.size) this.a.replyErr(this.id, ERANGE);
    else this.a.replyBuf(this.id, v, 0, v.length);
  }

  names(list: readonly string[]): void {
    const packed = Buffer.concat(list.map((n) => Buffer.from(`${n}\0`)));
    this.value(packed);
  }
}

function isPromise(v: unknown): v is Promise<void> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/**
 * A low-level FUSE mount. `mount` is synchronous (mount(2) and a uv_poll);
 * `done` settles when the kernel has dropped the connection and the session
 * is gone -- after `unmount()`, `fusermount -u`, `umount` or an abort.
 */
export class LowLevelFuse {
  readonly attrTimeout: number;
  readonly entryTimeout: number;
  readonly negativeTimeout: number;
  readonly done: Promise<void>;
  /** Requests dispatched so far (all operations). */
  dispatched = 0;
  /** Requests dispatched so far, by operation (index: Op). */
  private readonly byOp: number[] = [];
  private session: SessionHandle | null = null;
  private mnt = '';
  private handlers: LowLevelHandlers = {};
  private resolveDone: () => void = () => undefined;
  private rejectDone: (e: Error) => void = () => undefined;
  private exited = false;

  constructor(private readonly opts: LowLevelOptions = {}) {
    this.attrTimeout = opts.attrTimeout ?? 1;
    this.entryTimeout = opts.entryTimeout ?? 1;
    this.negativeTimeout = opts.negativeTimeout ?? 1;
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    // Nobody need await `done` to learn of a failed loop; keep it from
    // becoming an unhandled rejection.
    this.done.catch(() => undefined);
  }

  get mountpoint(): string {
    return this.mnt;
  }

  /**
   * Mounts `mnt` and starts serving. `options` are -o options for
   * fuse_session_new (allow_other, default_permissions, fsname=, subtype=,
   * max_read=, the kernel's flags ro, nosuid, nodev, noexec, sync, dirsync,
   * noatime..., debug) plus max_write= (the largest write request, up to
   * libfuse 3's 1 MiB; libfuse's own default is that 1 MiB), which the
   * binding applies at INIT, posix_acl (ask the kernel for POSIX ACLs at
   * INIT: see `posixAcl`) and killpriv_v2 (see `killprivV2`). big_writes and nonempty (libfuse 2 options; 3
   * always does both) are accepted and ignored. Anything else, e.g. the
   * high-level attr_timeout=, is refused: timeouts are LowLevelOptions here,
   * and st_ino is always the real inode number. Every request, INIT
   * included, is served by the event loop: the mount answers once control
   * returns to it.
   */
  mount(mnt: string, options: readonly string[], handlers: LowLevelHandlers): void {
    if (this.session !== null || this.exited) throw new Error('a LowLevelFuse mounts once');
    // A double, not 32 bits: there are more than 32 operations (the addon takes up to 53).
    let mask = 0;
    for (const [key, op] of HANDLER_OPS) if (handlers[key] !== undefined) mask += 2 ** op;
    this.handlers = handlers;
    this.mnt = path.resolve(mnt);
    this.session = addon().mount(this.mnt, options.join(','), this.dispatch, mask, this.opts.spinUs ?? 30);
  }

  /**
   * Lazy unmount (as `fusermount -uz`): the mount disappears from the
   * namespace at once; serving continues until its last user lets go, then
   * `done` resolves. Never blocks the JS thread.
   */
  unmount(): Promise<void> {
    if (this.session === null || this.exited) return this.done;
    const rc = addon().unmount(this.session);
    if (rc === EPERM) {
      // Not root: fusermount3's setuid helper may unmount what we mounted.
      execFile(FUSERMOUNT, ['-uz', this.mnt], (err) => {
        if (err !== null && !this.exited) this.rejectDone(new Error(`${FUSERMOUNT} -uz ${this.mnt}: ${err.message}`));
      });
    }
    return this.done;
  }

  /** How many requests of each operation came so far ("lookup 12, getattr 3"; none: ""). */
  requestCounts(): string {
    return this.byOp.flatMap((n, op) => (n > 0 ? [`${Op[op]?.toLowerCase() ?? op} ${n}`] : [])).join(', ');
  }

  /**
   * Whether the kernel enforces POSIX ACLs on this connection: the
   * posix_acl option asked for them and INIT granted FUSE_CAP_POSIX_ACL
   * (which turns default_permissions on) with FUSE_CAP_DONT_MASK (creates
   * come with the umask unapplied: the handlers apply it, or a default
   * ACL). False until INIT, which comes before any other request.
   */
  get posixAcl(): boolean {
    if (this.session === null) return false;
    return addon().posixAcl(this.session);
  }

  /**
   * Whether the kernel leaves killing privileges to us: the killpriv_v2 option asked for
   * FUSE_HANDLE_KILLPRIV_V2 and INIT's reply carried it (the binding adds it: libfuse 3.14 does
   * not know it). The kernel then sets SB_NOSEC, so a write no longer costs a GETXATTR of
   * security.capability, and no longer clears suid/sgid on write, truncate and chown itself: the
   * handlers must (WriteRequest/SetattrRequest.killSuidgid, and chown). False until INIT.
   */
  get killprivV2(): boolean {
    if (this.session === null) return false;
    return addon().killprivV2(this.session);
  }

  /**
   * Whether a request waits on /dev/fuse, not yet read. Background work on
   * the JS thread asks it to step aside.
   */
  requestWaiting(): boolean {
    if (this.session === null || this.exited) return false;
    return addon().pending(this.session);
  }

  /**
   * Has the kernel write back the dirty pages it holds of a node (the
   * writeback cache) and drop its page cache of it; resolves once the data
   * has reached our write handler. The JS thread serves those writes
   * meanwhile: a handler awaiting this must not hold up the loop.
   */
  writeBack(node: number): Promise<void> {
    const session = this.session;
    if (session === null || this.exited) return Promise.reject(new RmapfsError('ENOTCONN', 'not mounted'));
    return new Promise((resolve, reject) => {
      addon().writeBack(session, node, (errno) => {
        // ENOENT: the kernel no longer has the inode cached, so it has no dirty pages of it either.
        if (errno === 0 || errno === ENOENT) resolve();
        else reject(new RmapfsError('EIO', `write back of node ${node} failed: errno ${errno}`));
      });
    });
  }

  /**
   * Has the kernel forget the attributes it caches of a node, so that the
   * next write(2) to it asks GETATTR first. False when that failed (no longer
   * mounted); true also when the kernel had nothing cached of the node.
   */
  invalidateAttributes(node: number): boolean {
    const session = this.session;
    if (session === null || this.exited) return false;
    const errno = addon().invalidateAttributes(session, node);
    // ENOENT: the kernel no longer has the inode cached: nothing to forget.
    return errno === 0 || errno === ENOENT;
  }

  /** Called by the addon for each request (on the JS thread, several per turn). */
  private readonly dispatch = (op: number, id: number, name: string | undefined, name2: string | undefined,
    data: Buffer | undefined): void => {
    if (op === Op.EXIT) {
      this.exited = true;
      this.session = null;
      if (name !== undefined) this.rejectDone(new Error(`${this.mnt}: ${name}`));
      else this.resolveDone();
      return;
    }
    this.dispatched++;
    this.byOp[op] = (this.byOp[op] ?? 0) + 1;
    const a = addonCache as FuseAddon;
    const i = a.inScratch;
    const ino = i[In.INO];
    const h = this.handlers;
    if (op === Op.FORGET) {
      try {
        h.forget?.({ ino, nlookup: i[In.NLOOKUP] });
      } catch (e) {
        this.opts.onError?.(op, e);
      }
      return;
    }
    const caller: Caller = { uid: i[In.UID], gid: i[In.GID], pid: i[In.PID],
      umask: i[In.UMASK] };
    const size = i[In.SIZE];
    const reply = new Reply(a, this, id, ino, size);
    const fh = i[In.FH];
    const offset = i[In.OFFSET];
    const flags = i[In.FLAGS];
    const mode = i[In.MODE];
    const str = (s: string | undefined): string => s ?? '';
    let r: void | Promise<void> = undefined;
    try {
      switch (op as Op) {
        case Op.LOOKUP: r = h.lookup?.({ caller, parent: ino, name: str(name) }, reply); break;
        case Op.GETATTR:
          r = h.getattr?.({ caller, ino, fh: i[In.HAS_FH] ? fh : null }, reply);
          break;
        case Op.SETATTR: r = h.setattr?.(this.setattrRequest(i, caller, ino), reply); break;
        case Op.READLINK: r = h.readlink?.({ caller, ino }, reply); break;
        case Op.MKNOD: r = h.mknod?.({ caller, parent: ino, name: str(name), mode, rdev: i[In.RDEV] }, reply); break;
        case Op.MKDIR: r = h.mkdir?.({ caller, parent: ino, name: str(name), mode }, reply); break;
        case Op.UNLINK: r = h.unlink?.({ caller, parent: ino, name: str(name) }, reply); break;
        case Op.RMDIR: r = h.rmdir?.({ caller, parent: ino, name: str(name) }, reply); break;
        case Op.SYMLINK: r = h.symlink?.({ caller, parent: ino, name: str(name), target: str(name2) }, reply); break;
        case Op.RENAME:
          r = h.rename?.({ caller, parent: ino, name: str(name), newParent: i[In.INO2], newName: str(name2), flags },
            reply);
          break;
        case Op.LINK:
          r = h.link?.({ caller, ino, newParent: i[In.INO2], newName: str(name) }, reply);
          break;
        case Op.OPEN: r = h.open?.({ caller, ino, flags }, reply); break;
        case Op.READ: r = h.read?.({ caller, ino, fh, offset, size }, reply); break;
        case Op.WRITE: {
          const writeFlags = i[In.KERNEL_FLAGS];
          r = h.write?.({ caller, ino, fh, offset, data: data ?? Buffer.alloc(0),
            killSuidgid: (writeFlags & FUSE_WRITE_KILL_SUIDGID) !== 0, fromCache: (writeFlags & FUSE_WRITE_CACHE) !== 0 }, reply);
          break;
        }
        case Op.FLUSH: r = h.flush?.({ caller, ino, fh }, reply); break;
        case Op.RELEASE: r = h.release?.({ caller, ino, fh, flags }, reply); break;
        case Op.FSYNC: r = h.fsync?.({ caller, ino, fh, datasync: flags !== 0 }, reply); break;
        case Op.OPENDIR: r = h.opendir?.({ caller, ino, flags }, reply); break;
        case Op.READDIR: r = h.readdir?.({ caller, ino, fh, offset, size }, reply); break;
        case Op.RELEASEDIR: r = h.releasedir?.({ caller, ino, fh, flags }, reply); break;
        case Op.FSYNCDIR: r = h.fsyncdir?.({ caller, ino, fh, datasync: flags !== 0 }, reply); break;
        case Op.STATFS: r = h.statfs?.({ caller, ino }, reply); break;
        case Op.SETXATTR:
          r = h.setxattr?.({ caller, ino, name: str(name), value: data ?? Buffer.alloc(0), flags }, reply);
          break;
        case Op.GETXATTR: r = h.getxattr?.({ caller, ino, name: str(name), size }, reply); break;
        case Op.LISTXATTR: r = h.listxattr?.({ caller, ino, size }, reply); break;
        case Op.REMOVEXATTR: r = h.removexattr?.({ caller, ino, name: str(name) }, reply); break;
        case Op.ACCESS: r = h.access?.({ caller, ino, mask: flags }, reply); break;
        case Op.CREATE: r = h.create?.({ caller, parent: ino, name: str(name), mode, flags }, reply); break;
        case Op.FALLOCATE: r = h.fallocate?.({ caller, ino, fh, mode, offset, length: size }, reply); break;
        case Op.LSEEK: r = h.lseek?.({ caller, ino, fh, offset, whence: flags }, reply); break;
        case Op.READDIRPLUS: r = h.readdirplus?.({ caller, ino, fh, offset, size }, reply); break;
        case Op.IOCTL:
          r = h.ioctl?.({ caller, ino, fh, cmd: i[In.IOCTL_CMD], flags, input: data ?? Buffer.alloc(0), outSize: size }, reply);
          break;
        case Op.COPY_FILE_RANGE:
          r = h.copyFileRange?.({ caller, ino, fh, offset, inoOut: i[In.INO2], fhOut: i[In.FH2], offsetOut: i[In.OFFSET2],
            length: size, flags }, reply);
          break;
        default:
          reply.error(38); // ENOSYS: cannot happen, the mask only names handled ops
      }
    } catch (e) {
      this.failed(op, reply, e);
      return;
    }
    if (isPromise(r)) r.catch((e: unknown) => this.failed(op, reply, e));
  };

  private failed(op: Op, reply: Reply, e: unknown): void {
    if (!reply.answered) {
      try {
        reply.error(EIO);
      } catch {
        // The session ended meanwhile: nothing left to answer.
      }
    }
    if (this.opts.onError !== undefined) this.opts.onError(op, e);
    else process.emitWarning(`rmapfs_fuse: ${Op[op]} handler failed: ${e instanceof Error ? e.stack : String(e)}`);
  }

  private setattrRequest(i: Float64Array, caller: Caller, ino: number): SetattrRequest {
    const toSet = i[In.TO_SET];
    const req: SetattrRequest = { caller, ino, fh: i[In.HAS_FH] ? (i[In.FH]) : null,
      killSuidgid: (i[In.KERNEL_FLAGS] & FATTR_KILL_SUIDGID) !== 0 };
    if (toSet & SET_MODE) req.mode = i[In.A_MODE];
    if (toSet & SET_UID) req.uid = i[In.A_UID];
    if (toSet & SET_GID) req.gid = i[In.A_GID];
    if (toSet & SET_SIZE) req.size = i[In.A_SIZE];
    if (toSet & SET_ATIME_NOW) req.atime = 'now';
    else if (toSet & SET_ATIME) req.atime = { sec: i[In.A_ATIME], nsec: i[In.A_ATIME_NS] };
    if (toSet & SET_MTIME_NOW) req.mtime = 'now';
    else if (toSet & SET_MTIME) req.mtime = { sec: i[In.A_MTIME], nsec: i[In.A_MTIME_NS] };
    if (toSet & SET_CTIME) req.ctime = { sec: i[In.A_CTIME], nsec: i[In.A_CTIME_NS] };
    return req;
  }
}
