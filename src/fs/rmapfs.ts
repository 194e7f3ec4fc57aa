/**
 * The filesystem's operations, by inode number, each one transaction: what
 * the FUSE daemon (and the tests' model workloads) call. Errors are
 * RmapfsErrors carrying the errno a POSIX caller expects.
 */
import createDebug from 'debug';
import { constants as fsConstants } from 'fs';
import { RmapfsError, isCorruption } from '../errors';
import { Filesystem } from './filesystem';
import type { OpenOptions } from './filesystem';
import { InodeStore, kernelNow } from '../inode/inode';
import type { Inode } from '../inode/inode';
import {
  ATTR_NONE, FORK_EXTENTS, FORK_LOCAL, DATA_FORK_SIZE, S_IFDIR, S_IFLNK, S_ISGID, S_ISUID, S_IFMT, S_IFREG, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK,
  IFLAG_APPEND, IFLAG_IMMUTABLE, IFLAG_NOATIME, IFLAGS_DEFINED, IFLAGS_INHERITED,
} from '../inode/inode-format';
import type { Timespec } from '../inode/inode-format';
import { Directory, DT_DIR, DOTDOT, checkName, dtypeOfMode } from '../dir/dir';
import { freeAllData, readFile, truncateFile, writeFile } from '../file/file';
import { BlockMap } from '../file/bmap';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocateFile, fallocateOp } from '../file/fallocate';
import { COPY_CHUNK, COPY_DATA_PER_CALL, copyRangeLength, sourceRunAt } from '../file/copy-range';
import { seekHoleData } from '../file/seek';
import type { SeekKind } from '../file/seek';
import type { FileContext } from '../file/file';
import { BLOCK_SIZE, SUPERBLOCK_FIELDS } from '../format/superblock';
import { NAME_MAX } from '../dir/dir';
import { findField, writeField } from '../format/fields';
import { AttrFork } from '../attr/attr';
import {
  ACL_ACCESS_NAME, ACL_DEFAULT_NAME, POSIX_ACL_NAMES, aclChmod, aclCreate, aclModeOf, aclProblem, decodeAcl, encodeAcl,
} from '../attr/posix-acl';
import type { AclEntry } from '../attr/posix-acl';
import { INODES_PER_CHUNK, decodeInobt, isInodeFree } from '../alloc/inode-btree';

const log = createDebug('rmapfs:ops');

export const SYMLINK_MAX = 4095;

export interface Stat {
  ino: number;
  /** Tells this file from an earlier one that had its inode number (FUSE entry replies, NFS handles). */
  generation: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  /** 512-byte units, as stat(2) counts them. */
  blocks: number;
  blksize: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  crtime: Timespec;
}

export interface SetAttr {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec;
  mtime?: Timespec;
  /**
   * The times given are "now" (utimes(NULL), touch), not chosen values: the
   * one attribute change an append-only file allows (the kernel's notify_change).
   */
  timesAreNow?: boolean;
  /** The change time to set (FUSE's writeback cache sends the kernel's); absent: now. */
  ctime?: Timespec;
  /** Privileges the change takes away (a truncate, a chown): see PrivDrop. */
  dropPrivs?: PrivDrop;
}

/**
 * What a change takes from a file (never a directory) when the daemon kills privileges itself
 * (FUSE_HANDLE_KILLPRIV_V2; DEVELOPERS.md, FUSE), by the rules the kernel applies for FUSE
 * otherwise: `suidgid` drops S_ISUID, and S_ISGID when group-exec is set (fuse_setattr's rule:
 * a setgid file without group-exec keeps it); `capability` drops security.capability
 * (cap_inode_killpriv).
 */
export interface PrivDrop {
  suidgid: boolean;
  capability: boolean;
}

const S_IXGRP = 0o010;
const CAPABILITY_ATTR = Buffer.from('security.capability');

/** The mode after dropping suid/sgid (PrivDrop.suidgid). */
function modeWithoutPrivs(mode: number): number {
  const withoutSuid = mode & ~S_ISUID;
  return (mode & S_IXGRP) !== 0 ? withoutSuid & ~S_ISGID : withoutSuid;
}

/** Who asks for a flag change: uid 0 has CAP_FOWNER and CAP_LINUX_IMMUTABLE. */
export interface FlagsCaller {
  uid: number;
}

/**
 * The rules the inode flags carry (ioctl_iflags(2); the kernel's VFS cannot
 * enforce them for FUSE, which does not know them). EPERM when `inode` has
 * one of `flags`, naming what it refused.
 */
function refuseFlagged(inode: Inode, flags: number, what: string): void {
  const set = inode.flags & flags;
  if (set === 0) return;
  throw new RmapfsError('EPERM', `inode ${inode.ino} is ${(set & IFLAG_IMMUTABLE) !== 0 ? 'immutable' : 'append-only'}: ${what}`);
}

/** Immutable or append-only: neither may be renamed, unlinked, linked to or have its attributes set. */
const IFLAGS_PINNED = IFLAG_IMMUTABLE | IFLAG_APPEND;

/** A directory gets no new entry while immutable. */
function refuseNewEntry(dir: Inode): void {
  refuseFlagged(dir, IFLAG_IMMUTABLE, 'no new entries');
}

/** A directory loses no entry while immutable or append-only. */
function refuseRemovedEntry(dir: Inode): void {
  refuseFlagged(dir, IFLAGS_PINNED, 'no entry removed');
}

const O_WRITE_ACCESS = fsConstants.O_WRONLY | fsConstants.O_RDWR;

/**
 * When reading updates atime (the mount's atime options, with the Linux
 * meanings): 'relatime' (the default) only when atime is not after mtime
 * or ctime, or is a day old; 'strictatime' on every read; 'noatime' never.
 * nodiratime: never for directories. The kernel leaves atime to a FUSE
 * filesystem (its FUSE inodes are S_NOATIME), so these rules are ours.
 */
export interface AtimePolicy {
  mode: 'relatime' | 'strictatime' | 'noatime';
  nodiratime: boolean;
}

export const DEFAULT_ATIME_POLICY: AtimePolicy = { mode: 'relatime', nodiratime: false };

const RELATIME_MAX_AGE_SEC = 24 * 60 * 60;

function compareTime(a: Timespec, b: Timespec): number {
  return a.sec !== b.sec ? a.sec - b.sec : a.nsec - b.nsec;
}

export interface DirEntry {
  name: string;
  ino: number;
  ftype: number;
}

export interface StatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  namemax: number;
}

type Name = string | Buffer;

/** Who sets an ACL, as far as the setgid rule asks (posix_acl_update_mode's in_group_or_capable). */
export interface AclCaller {
  /** In group gid (its fsgid or a supplementary group), or privileged (CAP_FSETID). */
  inGroupOrPrivileged(gid: number): boolean;
}

export interface RenameOptions {
  /** Fail with EEXIST rather than replace an existing target (renameat2's RENAME_NOREPLACE). */
  noReplace?: boolean;
}

function nameBytes(name: Name): Buffer {
  return typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
}

/** The mode bits a umask can take away. */
const S_IRWXUGO = 0o777;

export class Rmapfs {
  readonly fs: Filesystem;
  readonly inodes: InodeStore;
  private readonly ctx: FileContext;
  private root: number | undefined;
  private inUse: (ino: number) => boolean = () => false;
  private aclsOn: () => boolean = () => true;
  private readonly orphans = new Set<number>();

  private constructor(fs: Filesystem) {
    this.fs = fs;
    this.inodes = new InodeStore(fs.cache, fs.geo, fs.alloc);
    this.ctx = { device: fs.device, alloc: fs.alloc, geo: fs.geo, noteDataWritten: () => fs.noteDataWritten() };
  }

  static open(path: string, options: OpenOptions = {}): Rmapfs {
    const fs = Filesystem.open(path, options);
    const r = new Rmapfs(fs);
    const rootIno = fs.superblock().rootIno;
    let rootProblem: RmapfsError | null = null;
    try {
      if (rootIno === 0) rootProblem = new RmapfsError('EFSCORRUPTED', `${path} has no root directory`);
      else if (!r.inodes.get(rootIno).isDir) rootProblem = new RmapfsError('EFSCORRUPTED', `${path}: the root inode ${rootIno} is not a directory in use`);
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      // A damaged root inode: only an unmounted repair can fix it (nothing is reachable without it).
      rootProblem = new RmapfsError(e.code === 'EFSBADCRC' ? 'EFSBADCRC' : 'EFSCORRUPTED',
        `${path}: the root inode ${rootIno} is damaged (${e.message}): run rmapfs repair ${path}`);
    }
    if (rootProblem !== null) {
      fs.abandon(); // write nothing to a filesystem we cannot make sense of
      throw rootProblem;
    }
    // A filesystem that was not unmounted cleanly may hold files that were unlinked while open.
    if (!fs.readOnly && fs.wasUnclean) r.freeCrashOrphans();
    return r;
  }

  /** mkfs's last step: the root directory (mode 0755, owned by root). */
  static makeRoot(fs: Filesystem, uid = 0, gid = 0): number {
    const r = new Rmapfs(fs);
    const ino = fs.run(() => {
      const root = r.inodes.allocate(S_IFDIR | 0o755, uid, gid, null);
      Directory.init(root, root.ino, fs.alloc, fs.geo);
      root.nlink = 2;
      const sb = fs.cache.read(0, null);
      writeField(sb.data, 0, findField(SUPERBLOCK_FIELDS, 'rootIno', 'superblock'), root.ino);
      fs.cache.markDirty(sb);
      return root.ino;
    });
    return ino;
  }

  /** The root directory's inode number (read once: it never changes after mkfs). */
  get rootIno(): number {
    this.root ??= this.fs.superblock().rootIno;
    return this.root;
  }

  close(): void {
    // Orphans still here could not be freed (their space is in a damaged AG): the superblock stays
    // "dirty" so the next read-write mount looks for them again, as after a crash.
    if (this.orphans.size > 0) log('%d orphaned inodes left for the next mount', this.orphans.size);
    this.fs.close({ keepDirty: this.orphans.size > 0 });
  }

  // ---- helpers -------------------------------------------------------------------

  private inode(ino: number): Inode {
    try {
      return this.inodes.get(ino);
    } catch (e) {
      if (e instanceof RmapfsError && e.code === 'EFSCORRUPTED' && !this.fs.geo.isValidIno(ino)) {
        throw new RmapfsError('ENOENT', `no inode ${ino}`);
      }
      throw e;
    }
  }

  private dir(ino: number): Directory {
    const inode = this.inode(ino);
    if (!inode.isDir) throw new RmapfsError('ENOTDIR', `inode ${ino} is not a directory`);
    return new Directory(inode, this.fs.alloc, this.fs.geo);
  }

  private statOf(inode: Inode): Stat {
    return {
      ino: inode.ino, generation: inode.generation, mode: inode.mode, nlink: inode.nlink, uid: inode.uid, gid: inode.gid, rdev: inode.rdev,
      size: inode.size, blocks: inode.nblocks * (BLOCK_SIZE / 512), blksize: BLOCK_SIZE,
      atime: inode.getTime('atime'), mtime: inode.getTime('mtime'), ctime: inode.getTime('ctime'), crtime: inode.getTime('crtime'),
    };
  }

  /** Drops one link; frees the inode and its space when none are left. */
  /**
   * Drops one link; frees the inode and its space when none are left -- unless
   * something still uses it (an open file, a kernel reference): then it
   * lives on with no links, an orphan, until `releaseOrphan`. A crash leaves
   * orphans on disk; the next read-write open frees them.
   */
  private dropLink(inode: Inode): void {
    const left = inode.isDir ? 0 : inode.nlink - 1;
    inode.nlink = left;
    inode.touch('ctime');
    if (left > 0) return;
    if (this.inUse(inode.ino)) {
      this.orphans.add(inode.ino);
      return;
    }
    this.destroyInode(inode);
  }

  private destroyInode(inode: Inode): void {
    if (inode.isDir) new Directory(inode, this.fs.alloc, this.fs.geo).destroy();
    else if (inode.format !== FORK_LOCAL) freeAllData(this.ctx, inode);
    new AttrFork(inode, this.ctx).clear();
    this.inodes.release(inode);
  }

  /** Tells the filesystem which inodes are in use outside it (open, or referenced by the kernel). */
  setInUse(inUse: (ino: number) => boolean): void {
    this.inUse = inUse;
  }

  /**
   * Whether POSIX ACLs apply (on unless told: a mount with -o noacl, or a
   * kernel that does not enforce them). Off, stored ACLs are left alone as a
   * filesystem mounted noacl leaves them: no inheritance on create, chmod
   * changes the mode only.
   */
  setPosixAcls(on: () => boolean): void {
    this.aclsOn = on;
  }

  /** The last use of an inode ended: if it has no links left, it goes now. True: it was freed. */
  releaseOrphan(ino: number): boolean {
    if (!this.orphans.has(ino)) return false;
    const freed = this.fs.run(() => {
      const inode = this.inodes.get(ino);
      if (inode.nlink !== 0) return false;
      this.destroyInode(inode);
      return true;
    });
    this.orphans.delete(ino);
    return freed;
  }

  /**
   * An inode unlinked while in use, kept (with no links) until its last user
   * lets go: the link-count repair leaves it alone, nameless as it is.
   */
  isOrphan(ino: number): boolean {
    return this.orphans.has(ino);
  }

  /** Inodes with no links still kept for their users. */
  get orphanCount(): number {
    return this.orphans.size;
  }

  /**
   * Frees inodes left with no links by a crash (they were open when it came).
   * Walks every AG's inode btree: run at a read-write open after recovery.
   */
  private freeCrashOrphans(): number {
    const found: number[] = [];
    for (const ag of this.fs.alloc.ags) {
      ag.ino.forEach((b, off) => {
        const r = decodeInobt(b, off);
        for (let i = 0; i < INODES_PER_CHUNK; i++) {
          if (isInodeFree(r, i)) continue;
          const ino = this.fs.geo.ino(ag.agno, r.startino + i);
          if (ino !== this.rootIno && this.inodes.handle(ino).nlink === 0) found.push(ino);
        }
      });
    }
    let freed = 0;
    for (const ino of found) {
      try {
        this.fs.run(() => this.destroyInode(this.inodes.get(ino)));
        freed++;
      } catch (e) {
        // Its space is in an AG whose metadata is damaged: it stays an orphan (harmless) rather than fail the mount.
        if (!isCorruption(e)) throw e;
        log('orphaned inode %d left for later: %s', ino, e.message);
      }
    }
    if (found.length > 0) log('freed %d of %d orphaned inodes left by a crash', freed, found.length);
    return freed;
  }

  // ---- reading the namespace -------------------------------------------------------

  stat(ino: number): Stat {
    return this.statOf(this.inode(ino));
  }

  /**
   * An inode named by a file handle (name_to_handle_at(2), NFS): the number
   * comes from outside, so the inode btree must say it is in use before the
   * inode is read. A freed inode (its file deleted) is ESTALE, as on ext4
   * and XFS; so is a number that never was an inode. An unlinked inode
   * still open (an orphan) is in use and answers. The caller compares the
   * generation: a reused number has a new one.
   */
  statByHandle(ino: number): Stat {
    if (!this.inodes.inUse(ino)) throw new RmapfsError('ESTALE', `inode ${ino} is not in use`);
    return this.stat(ino);
  }

  lookup(dirIno: number, name: Name): number {
    const bytes = nameBytes(name);
    if (bytes.length > NAME_MAX) throw new RmapfsError('ENAMETOOLONG', `name of ${bytes.length} bytes`);
    const dir = this.dir(dirIno);
    if (bytes.length === 1 && bytes[0] === 0x2e) return dirIno;
    const d = dir.lookup(bytes);
    if (d === null) throw new RmapfsError('ENOENT', `'${bytes.toString()}' does not exist`);
    return d.ino;
  }

  /**
   * Up to `max` entries from a cookie on (0 at the start; "." and ".." come
   * first, at cookies 0 and 1), each with the cookie to continue after it.
   */
  readdirFrom(dirIno: number, cookie: number, max: number): (DirEntry & { next: number })[] {
    const dir = this.dir(dirIno);
    const out: (DirEntry & { next: number })[] = [];
    if (cookie <= 0 && out.length < max) out.push({ name: '.', ino: dirIno, ftype: DT_DIR, next: 1 });
    if (cookie <= 1 && out.length < max) out.push({ name: '..', ino: dir.parent, ftype: DT_DIR, next: 2 });
    if (out.length >= max) return out;
    dir.forEachFrom(Math.max(cookie, 2), (d, next) => {
      out.push({ name: d.name.toString(), ino: d.ino, ftype: d.ftype, next });
      return out.length < max;
    });
    return out;
  }

  readdir(dirIno: number): DirEntry[] {
    const dir = this.dir(dirIno);
    const out: DirEntry[] = [{ name: '.', ino: dirIno, ftype: DT_DIR }, { name: '..', ino: dir.parent, ftype: DT_DIR }];
    dir.forEach((d) => { out.push({ name: d.name.toString(), ino: d.ino, ftype: d.ftype }); });
    return out;
  }

  readlink(ino: number): Buffer {
    const inode = this.inode(ino);
    if (inode.type !== S_IFLNK) throw new RmapfsError('EINVAL', `inode ${ino} is not a symlink`);
    if (inode.format === FORK_LOCAL) {
      const { buf, offset } = inode.dataFork();
      return Buffer.from(buf.data.subarray(offset, offset + inode.nextents));
    }
    return readFile(this.ctx, inode, 0, inode.size);
  }

  read(ino: number, pos: number, len: number): Buffer {
    const inode = this.inode(ino);
    if (inode.isDir) throw new RmapfsError('EISDIR', `inode ${ino} is a directory`);
    if (inode.type !== S_IFREG) throw new RmapfsError('EINVAL', `inode ${ino} is not a regular file`);
    return readFile(this.ctx, inode, pos, len);
  }

  /**
   * lseek(2)'s SEEK_DATA / SEEK_HOLE on a regular file, from its block map
   * (src/file/seek.ts: unwritten extents are holes, as XFS says). Other
   * types: EINVAL -- the kernel answers those itself (generic_file_llseek
   * for a FUSE directory) and never asks.
   */
  seek(ino: number, offset: number, kind: SeekKind): number {
    const inode = this.inode(ino);
    if (inode.type !== S_IFREG) throw new RmapfsError('EINVAL', `inode ${ino} is not a regular file`);
    return seekHoleData(new BlockMap(inode, this.fs.alloc, this.fs.geo), inode.size, offset, kind);
  }

  /**
   * The file was read (or the directory listed, the symlink followed):
   * updates its atime as the policy says (Linux's atime_needs_update and
   * relatime_need_update). Never on a read-only or shut-down filesystem.
   * An update is one small transaction: the inode's block changes in the
   * cache and goes out with the next log force, never a force of its own;
   * under relatime a file read over and over pays it about once a day.
   */
  noteAccess(ino: number, policy: AtimePolicy): void {
    if (policy.mode === 'noatime' || this.fs.readOnlyNow || this.fs.shutdownWhy !== null) return;
    const inode = this.inode(ino);
    if (policy.nodiratime && inode.isDir) return;
    if ((inode.flags & IFLAG_NOATIME) !== 0) return; // chattr +A
    const atime = inode.getTime('atime');
    const t = kernelNow(); // compared with mtimes the writeback cache's kernel stamped
    if (compareTime(atime, t) === 0) return;
    if (policy.mode === 'relatime' && compareTime(inode.getTime('mtime'), atime) < 0
      && compareTime(inode.getTime('ctime'), atime) < 0 && t.sec - atime.sec < RELATIME_MAX_AGE_SEC) return;
    log('inode %d: atime updated (%s)', ino, policy.mode);
    this.fs.run(() => inode.setTime('atime', t));
  }

  statfs(): StatFs {
    const alloc = this.fs.alloc;
    let files = 0;
    let ffree = 0;
    for (const ag of alloc.ags) {
      files += ag.inodeCount;
      ffree += ag.freeInodes;
    }
    // The reserve pool is not free to users (as on XFS): df shows a filesystem full when only it is left.
    const bfree = alloc.availableBlocks();
    // Inodes come in chunks of 64 taken from free space: count what free space could still hold.
    const possible = Math.floor(bfree / 8) * 64;
    return {
      bsize: BLOCK_SIZE, blocks: this.fs.geo.totalBlocks, bfree, bavail: bfree,
      files: files + possible, ffree: ffree + possible, namemax: NAME_MAX,
    };
  }

  // ---- changing the namespace --------------------------------------------------------

  /**
   * Creates a regular file, FIFO, socket or device node. umask: what the
   * caller's umask takes from the mode unless the directory has a default
   * ACL (0 when the kernel already applied it).
   */
  create(dirIno: number, name: Name, mode: number, uid: number, gid: number, rdev = 0, umask = 0): Stat {
    const type = mode & S_IFMT || S_IFREG;
    if (![S_IFREG, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK].includes(type)) {
      throw new RmapfsError('EINVAL', `cannot create a node of type ${type.toString(8)}`);
    }
    return this.fs.run(() => {
      const inode = this.newEntry(dirIno, name, (mode & ~S_IFMT) | type, uid, gid, umask);
      inode.rdev = rdev;
      return this.statOf(inode);
    });
  }

  /** A new directory; umask as for create. */
  mkdir(dirIno: number, name: Name, mode: number, uid: number, gid: number, umask = 0): Stat {
    return this.fs.run(() => {
      const parent = this.inode(dirIno);
      const inode = this.newEntry(dirIno, name, (mode & 0o7777) | S_IFDIR, uid, gid, umask);
      Directory.init(inode, dirIno, this.fs.alloc, this.fs.geo);
      inode.nlink = 2;
      parent.nlink = parent.nlink + 1;
      return this.statOf(inode);
    });
  }

  symlink(dirIno: number, name: Name, target: Name, uid: number, gid: number): Stat {
    const t = nameBytes(target);
    if (t.length === 0) throw new RmapfsError('ENOENT', 'empty symlink target');
    if (t.length > SYMLINK_MAX) throw new RmapfsError('ENAMETOOLONG', `symlink target of ${t.length} bytes`);
    return this.fs.run(() => {
      const inode = this.newEntry(dirIno, name, S_IFLNK | 0o777, uid, gid, 0);
      if (t.length <= DATA_FORK_SIZE) {
        inode.format = FORK_LOCAL;
        const { buf, offset } = inode.dataFork();
        t.copy(buf.data, offset);
        this.fs.cache.markDirty(buf);
        inode.nextents = t.length;
        inode.size = t.length;
      } else {
        inode.format = FORK_EXTENTS;
        writeFile(this.ctx, inode, 0, t);
      }
      return this.statOf(inode);
    });
  }

  /**
   * Allocates an inode with one link and enters it in the directory. In a
   * setgid directory the new inode takes the directory's group, and a new
   * directory its setgid bit too (Linux's inode_init_owner). Stripping
   * S_ISGID from a non-directory created by a caller outside that group is
   * done by the kernel before the request comes (mode_strip_sgid, which
   * knows the caller's supplementary groups; we would not).
   *
   * POSIX ACLs (posix_acl_create): when the directory has a default ACL, the
   * new inode's permissions are those both the mode asked for and that ACL
   * allow (the umask does not apply), it gets the result as its access ACL
   * unless the mode says it all, and a new directory inherits the default
   * ACL itself; without one, the umask takes its bits. Symlinks neither.
   */
  private newEntry(dirIno: number, name: Name, mode: number, uid: number, gid: number, umask: number): Inode {
    const bytes = nameBytes(name);
    checkName(bytes);
    const dir = this.dir(dirIno);
    if (dir.inode.nlink === 0) throw new RmapfsError('ENOENT', 'the directory has been removed');
    if (dir.lookup(bytes) !== null) throw new RmapfsError('EEXIST', `'${bytes.toString()}' exists`);
    refuseNewEntry(dir.inode);
    const parentMode = dir.inode.mode;
    let ownerGid = gid;
    let newMode = mode;
    if (parentMode & S_ISGID) {
      ownerGid = dir.inode.gid;
      if ((mode & S_IFMT) === S_IFDIR) newMode |= S_ISGID;
    }
    const isSymlink = (mode & S_IFMT) === S_IFLNK;
    const defaults = isSymlink || !this.aclsOn() ? [] : this.storedAcl(dir.inode, ACL_DEFAULT_NAME);
    const inherited = defaults.length > 0 ? aclCreate(defaults, newMode) : null;
    if (inherited !== null) newMode = inherited.mode;
    else if (!isSymlink) newMode &= ~(umask & S_IRWXUGO);
    const inode = this.inodes.allocate(newMode, uid, ownerGid, dirIno);
    inode.flags = dir.inode.flags & IFLAGS_INHERITED;
    inode.nlink = 1;
    if (inherited !== null) {
      const attrs = new AttrFork(inode, this.ctx);
      if (!inherited.equivalent) attrs.set(Buffer.from(ACL_ACCESS_NAME), encodeAcl(inherited.entries));
      if (inode.isDir) attrs.set(Buffer.from(ACL_DEFAULT_NAME), encodeAcl(defaults));
    }
    dir.add(bytes, inode.ino, dtypeOfMode(newMode));
    dir.inode.touch('mtime', 'ctime');
    return inode;
  }

  link(ino: number, dirIno: number, name: Name): Stat {
    return this.fs.run(() => {
      const inode = this.inode(ino);
      if (inode.isDir) throw new RmapfsError('EPERM', 'hard links to directories are not allowed');
      if (inode.nlink >= 0xffffffff) throw new RmapfsError('EMLINK', 'too many links');
      refuseFlagged(inode, IFLAGS_PINNED, 'no new links');
      const bytes = nameBytes(name);
      checkName(bytes);
      const dir = this.dir(dirIno);
      refuseNewEntry(dir.inode);
      dir.add(bytes, ino, dtypeOfMode(inode.mode));
      inode.nlink = inode.nlink + 1;
      inode.touch('ctime');
      dir.inode.touch('mtime', 'ctime');
      return this.statOf(inode);
    });
  }

  unlink(dirIno: number, name: Name): void {
    this.fs.run(() => {
      const bytes = nameBytes(name);
      const dir = this.dir(dirIno);
      const d = dir.lookup(bytes);
      if (d === null || bytes.equals(DOTDOT)) throw new RmapfsError('ENOENT', `'${bytes.toString()}' does not exist`);
      const inode = this.inode(d.ino);
      refuseRemovedEntry(dir.inode);
      refuseFlagged(inode, IFLAGS_PINNED, 'not unlinked');
      if (inode.isDir) throw new RmapfsError('EISDIR', `'${bytes.toString()}' is a directory`);
      dir.remove(bytes);
      dir.inode.touch('mtime', 'ctime');
      this.dropLink(inode);
    });
  }

  rmdir(dirIno: number, name: Name): void {
    this.fs.run(() => {
      const bytes = nameBytes(name);
      if (bytes.length === 1 && bytes[0] === 0x2e) throw new RmapfsError('EINVAL', 'cannot remove "."');
      if (bytes.equals(DOTDOT)) throw new RmapfsError('ENOTEMPTY', 'cannot remove ".."');
      const dir = this.dir(dirIno);
      const d = dir.lookup(bytes);
      if (d === null) throw new RmapfsError('ENOENT', `'${bytes.toString()}' does not exist`);
      const victim = this.dir(d.ino);
      refuseRemovedEntry(dir.inode);
      refuseFlagged(victim.inode, IFLAGS_PINNED, 'not removed');
      if (!victim.isEmpty()) throw new RmapfsError('ENOTEMPTY', `'${bytes.toString()}' is not empty`);
      dir.remove(bytes);
      dir.inode.nlink = dir.inode.nlink - 1;
      dir.inode.touch('mtime', 'ctime');
      this.dropLink(victim.inode);
    });
  }

  /**
   * rename(2), one transaction. noReplace (renameat2's RENAME_NOREPLACE):
   * EEXIST when the target name exists -- even a link to the same file, as
   * the VFS answers -- and otherwise the same rename.
   */
  rename(srcDirIno: number, srcName: Name, dstDirIno: number, dstName: Name, options: RenameOptions = {}): void {
    this.fs.run(() => {
      const sName = nameBytes(srcName);
      const dName = nameBytes(dstName);
      checkName(dName);
      const srcDir = this.dir(srcDirIno);
      const dstDir = srcDirIno === dstDirIno ? srcDir : this.dir(dstDirIno);
      const s = srcDir.lookup(sName);
      if (s === null || sName.equals(DOTDOT)) throw new RmapfsError('ENOENT', `'${sName.toString()}' does not exist`);
      const moving = this.inode(s.ino);
      const d = dstDir.lookup(dName);
      if (d !== null && options.noReplace) throw new RmapfsError('EEXIST', `'${dName.toString()}' exists`);
      if (d !== null && d.ino === s.ino) return; // same file: nothing to do
      refuseRemovedEntry(srcDir.inode);
      refuseFlagged(moving, IFLAGS_PINNED, 'not renamed');
      refuseNewEntry(dstDir.inode);
      if (moving.isDir && srcDirIno !== dstDirIno) this.refuseMoveBelowItself(s.ino, dstDirIno);
      if (d !== null) {
        const victim = this.inode(d.ino);
        refuseRemovedEntry(dstDir.inode);
        refuseFlagged(victim, IFLAGS_PINNED, 'not replaced');
        if (moving.isDir && !victim.isDir) throw new RmapfsError('ENOTDIR', `'${dName.toString()}' is not a directory`);
        if (!moving.isDir && victim.isDir) throw new RmapfsError('EISDIR', `'${dName.toString()}' is a directory`);
        if (victim.isDir) {
          if (!new Directory(victim, this.fs.alloc, this.fs.geo).isEmpty()) {
            throw new RmapfsError('ENOTEMPTY', `'${dName.toString()}' is not empty`);
          }
          dstDir.inode.nlink = dstDir.inode.nlink - 1;
        }
        dstDir.replace(dName, s.ino, s.ftype);
        this.dropLink(victim);
      } else {
        dstDir.add(dName, s.ino, s.ftype);
      }
      srcDir.remove(sName);
      if (moving.isDir && srcDirIno !== dstDirIno) this.moveDirectory(moving, srcDir.inode, dstDir.inode);
      moving.touch('ctime');
      srcDir.inode.touch('mtime', 'ctime');
      if (dstDir !== srcDir) dstDir.inode.touch('mtime', 'ctime');
      log('rename %s -> %s', sName.toString(), dName.toString());
    });
  }

  /**
   * renameat2's RENAME_EXCHANGE, one transaction: the two names, which must
   * both exist (ENOENT), swap the inodes they point at -- of any types, a
   * directory with a file too. A directory that changes parent gets its
   * '..' pointed at the new one and moves one link from the old parent to
   * the new (so two directories swapped across parents leave both counts
   * as they were). Both inodes and both directories get a new ctime, the
   * directories a new mtime (as xfs_cross_rename). Neither may end up below
   * itself (EINVAL, as the VFS answers for an exchange either way round).
   */
  exchange(aDirIno: number, aName: Name, bDirIno: number, bName: Name): void {
    this.fs.run(() => {
      const aBytes = nameBytes(aName);
      const bBytes = nameBytes(bName);
      const aDir = this.dir(aDirIno);
      const bDir = aDirIno === bDirIno ? aDir : this.dir(bDirIno);
      const a = aDir.lookup(aBytes);
      if (a === null || aBytes.equals(DOTDOT)) throw new RmapfsError('ENOENT', `'${aBytes.toString()}' does not exist`);
      const b = bDir.lookup(bBytes);
      if (b === null || bBytes.equals(DOTDOT)) throw new RmapfsError('ENOENT', `'${bBytes.toString()}' does not exist`);
      if (a.ino === b.ino) return; // two links to one file: nothing changes
      const aInode = this.inode(a.ino);
      const bInode = this.inode(b.ino);
      for (const dirInode of [aDir.inode, bDir.inode]) {
        refuseRemovedEntry(dirInode);
        refuseNewEntry(dirInode);
      }
      refuseFlagged(aInode, IFLAGS_PINNED, 'not renamed');
      refuseFlagged(bInode, IFLAGS_PINNED, 'not renamed');
      const crossing = aDirIno !== bDirIno;
      if (crossing && aInode.isDir) this.refuseMoveBelowItself(a.ino, bDirIno);
      if (crossing && bInode.isDir) this.refuseMoveBelowItself(b.ino, aDirIno);
      aDir.replace(aBytes, b.ino, b.ftype);
      bDir.replace(bBytes, a.ino, a.ftype);
      if (crossing && aInode.isDir) this.moveDirectory(aInode, aDir.inode, bDir.inode);
      if (crossing && bInode.isDir) this.moveDirectory(bInode, bDir.inode, aDir.inode);
      aInode.touch('ctime');
      bInode.touch('ctime');
      aDir.inode.touch('mtime', 'ctime');
      if (crossing) bDir.inode.touch('mtime', 'ctime');
      log('exchange %s <-> %s', aBytes.toString(), bBytes.toString());
    });
  }

  /** EINVAL when directory dirIno is newParent or one of its ancestors: it may not move below itself. */
  private refuseMoveBelowItself(dirIno: number, newParent: number): void {
    for (let at = newParent; ; ) {
      if (at === dirIno) throw new RmapfsError('EINVAL', 'cannot move a directory into itself');
      if (at === this.rootIno) return;
      const up = new Directory(this.inode(at), this.fs.alloc, this.fs.geo).parent;
      if (up === at) return;
      at = up;
    }
  }

  /** A directory now named in `to` instead of `from`: its '..' follows, and so does the link '..' counts. */
  private moveDirectory(moved: Inode, from: Inode, to: Inode): void {
    new Directory(moved, this.fs.alloc, this.fs.geo).replace(DOTDOT, to.ino, DT_DIR);
    from.nlink = from.nlink - 1;
    to.nlink = to.nlink + 1;
  }

  // ---- file data and attributes -------------------------------------------------------

  /**
   * Writes data at pos. Out of space, it writes what fits in blocks the file
   * already has, from pos up to its first hole (a short write, as POSIX
   * allows), or fails with ENOSPC having changed nothing.
   */
  write(ino: number, pos: number, data: Buffer): number {
    const once = (part: Buffer): number => this.fs.run(() => {
      const inode = this.inode(ino);
      if (inode.isDir) throw new RmapfsError('EISDIR', `inode ${ino} is a directory`);
      if (inode.type !== S_IFREG) throw new RmapfsError('EINVAL', `inode ${ino} is not a regular file`);
      refuseFlagged(inode, IFLAG_IMMUTABLE, 'not written');
      return writeFile(this.ctx, inode, pos, part);
    });
    try {
      return once(data);
    } catch (e) {
      if (!(e instanceof RmapfsError) || e.code !== 'ENOSPC') throw e;
      const mapped = mappedPrefix(new BlockMap(this.inode(ino), this.fs.alloc, this.fs.geo), pos, data.length);
      if (mapped === 0) throw e;
      return once(data.subarray(0, mapped));
    }
  }

  setattr(ino: number, attr: SetAttr): Stat {
    return this.fs.run(() => {
      const inode = this.inode(ino);
      refuseFlagged(inode, IFLAG_IMMUTABLE, 'attributes not changed');
      const chosenTimes = (attr.atime !== undefined || attr.mtime !== undefined) && attr.timesAreNow !== true;
      if (attr.size !== undefined || attr.mode !== undefined || attr.uid !== undefined || attr.gid !== undefined || chosenTimes) {
        refuseFlagged(inode, IFLAG_APPEND, 'only its times may be set to now');
      }
      if (attr.size !== undefined) {
        if (inode.isDir) throw new RmapfsError('EISDIR', `inode ${ino} is a directory`);
        if (inode.type !== S_IFREG) throw new RmapfsError('EINVAL', `inode ${ino} is not a regular file`);
        if (attr.size < 0) throw new RmapfsError('EINVAL', `negative size ${attr.size}`);
        truncateFile(this.ctx, inode, attr.size);
      }
      if (attr.dropPrivs !== undefined) this.killPrivs(inode, attr.dropPrivs);
      if (attr.mode !== undefined) {
        inode.mode = (inode.mode & S_IFMT) | (attr.mode & 0o7777);
        // posix_acl_chmod: the access ACL follows the new mode (the mode is its owner, mask, other).
        const acl = inode.type === S_IFLNK || !this.aclsOn() ? [] : this.storedAcl(inode, ACL_ACCESS_NAME);
        if (acl.length > 0) new AttrFork(inode, this.ctx).set(Buffer.from(ACL_ACCESS_NAME), encodeAcl(aclChmod(acl, inode.mode)));
      }
      if (attr.uid !== undefined && attr.uid !== 0xffffffff) inode.uid = attr.uid;
      if (attr.gid !== undefined && attr.gid !== 0xffffffff) inode.gid = attr.gid;
      if (attr.atime !== undefined) inode.setTime('atime', attr.atime);
      if (attr.mtime !== undefined) inode.setTime('mtime', attr.mtime);
      if (attr.ctime !== undefined) inode.setTime('ctime', attr.ctime);
      else inode.touch('ctime');
      return this.statOf(inode);
    });
  }

  /**
   * Drops privileges before a change (a write, fallocate, copy_file_range into the file) as the
   * kernel's file_remove_privs does before it: see PrivDrop. Nothing to drop costs no
   * transaction, and no attribute lookup when the inode has no attributes (every write asks).
   */
  dropPrivs(ino: number, drop: PrivDrop): void {
    if (!this.hasPrivsToDrop(this.inode(ino), drop)) return;
    this.fs.run(() => this.killPrivs(this.inode(ino), drop));
  }

  private hasPrivsToDrop(inode: Inode, drop: PrivDrop): boolean {
    if (inode.isDir) return false;
    if (drop.suidgid && modeWithoutPrivs(inode.mode) !== inode.mode) return true;
    return drop.capability && inode.attrFormat !== ATTR_NONE && new AttrFork(inode, this.ctx).get(CAPABILITY_ATTR) !== null;
  }

  /**
   * Inside a transaction. Refused (EPERM) on an immutable or append-only file when there is
   * something to drop, as the kernel's mode change or removexattr for it would be.
   */
  private killPrivs(inode: Inode, drop: PrivDrop): void {
    if (!this.hasPrivsToDrop(inode, drop)) return;
    refuseFlagged(inode, IFLAGS_PINNED, 'privileges not dropped');
    if (drop.suidgid) inode.mode = modeWithoutPrivs(inode.mode);
    if (drop.capability) this.dropAttr(new AttrFork(inode, this.ctx), CAPABILITY_ATTR);
    inode.touch('ctime');
  }

  /**
   * fallocate(2) (src/file/fallocate.ts): allocate (mode 0, KEEP_SIZE) as
   * unwritten extents, punch a hole (PUNCH_HOLE | KEEP_SIZE), zero a range
   * (ZERO_RANGE, optionally KEEP_SIZE). One transaction: ENOSPC changes nothing.
   */
  fallocate(ino: number, mode: number, offset: number, length: number): void {
    fallocateOp(mode, offset, length); // the argument errors first, as the system call gives them
    this.fs.run(() => {
      const inode = this.inode(ino);
      if (inode.isDir) throw new RmapfsError('EISDIR', `inode ${ino} is a directory`);
      if (inode.type !== S_IFREG) throw new RmapfsError('ENODEV', `inode ${ino} is not a regular file`);
      // vfs_fallocate's rules: only plain preallocation on an append-only file, nothing on an immutable one.
      if ((mode & ~FALLOC_FL_KEEP_SIZE) !== 0) refuseFlagged(inode, IFLAG_APPEND, 'only preallocation');
      refuseFlagged(inode, IFLAG_IMMUTABLE, 'no fallocate');
      fallocateFile(this.ctx, inode, mode, offset, length);
    });
  }

  /** fallocate mode 0: the range's holes get unwritten extents, and the file grows to cover it. */
  preallocate(ino: number, offset: number, length: number): void {
    this.fallocate(ino, 0, offset, length);
  }

  truncate(ino: number, size: number): Stat {
    return this.setattr(ino, { size });
  }

  // ---- extended attributes ---------------------------------------------------------

  /**
   * Sets an attribute. The POSIX ACL names go through setAcl (their values
   * are checked, and an access ACL changes the mode).
   */
  setxattr(ino: number, name: Name, value: Buffer, mode: 'any' | 'create' | 'replace' = 'any', caller?: AclCaller): void {
    const bytes = nameBytes(name);
    const key = bytes.toString('latin1');
    if (POSIX_ACL_NAMES.has(key)) return this.setAcl(ino, key, value, caller);
    this.fs.run(() => {
      const inode = this.inode(ino);
      refuseFlagged(inode, IFLAGS_PINNED, 'no extended attribute set');
      new AttrFork(inode, this.ctx).set(bytes, value, mode);
    });
  }

  /**
   * Sets (or, given an empty ACL, removes) an access or default ACL as ext4
   * and XFS do in their set_acl: EINVAL for a malformed value (the kernel
   * checks first, but in-process callers do not); a default ACL only on a
   * directory (EACCES elsewhere, as set_posix_acl). An access ACL sets the
   * mode's permission bits (the group bits from its mask) and is stored only
   * when the mode cannot say it all (posix_acl_update_mode); either way the
   * ctime changes; a caller outside the file's group (and not privileged)
   * loses its S_ISGID bit, as posix_acl_update_mode says (the kernel tells a
   * FUSE daemon so only with FUSE_SETXATTR_EXT, which libfuse 3.14 neither
   * asks for nor passes on: the caller says). XATTR_CREATE/REPLACE do not
   * apply to ACLs (the kernel never passes them on).
   */
  private setAcl(ino: number, name: string, value: Buffer, caller: AclCaller | undefined): void {
    const entries = decodeAcl(value);
    const key = Buffer.from(name);
    this.fs.run(() => {
      const inode = this.inode(ino);
      refuseFlagged(inode, IFLAGS_PINNED, 'no ACL set');
      const attrs = new AttrFork(inode, this.ctx);
      if (name === ACL_DEFAULT_NAME) {
        if (!inode.isDir) {
          if (entries.length === 0) return;
          throw new RmapfsError('EACCES', `inode ${ino}: only directories have default ACLs`);
        }
        if (entries.length === 0) this.dropAttr(attrs, key);
        else attrs.set(key, encodeAcl(entries));
      } else if (entries.length === 0) {
        this.dropAttr(attrs, key);
      } else {
        const { mode, equivalent } = aclModeOf(entries, inode.mode);
        if (equivalent) this.dropAttr(attrs, key);
        else attrs.set(key, encodeAcl(entries));
        inode.mode = caller !== undefined && !caller.inGroupOrPrivileged(inode.gid) ? mode & ~S_ISGID : mode;
      }
      inode.touch('ctime');
    });
  }

  /** Removes an attribute if it is there. */
  private dropAttr(attrs: AttrFork, name: Buffer): void {
    if (attrs.inode.attrFormat !== ATTR_NONE && attrs.get(name) !== null) attrs.remove(name);
  }

  /**
   * The inode's ACL of that name, [] when it has none. A stored value that
   * does not parse is damage (check reports it and the attribute repair drops it).
   */
  private storedAcl(inode: Inode, name: string): AclEntry[] {
    if (inode.attrFormat === ATTR_NONE) return [];
    const value = new AttrFork(inode, this.ctx).get(Buffer.from(name));
    if (value === null) return [];
    const problem = aclProblem(value);
    if (problem !== null) throw new RmapfsError('EFSCORRUPTED', `inode ${inode.ino}: ${name} is malformed (${problem})`);
    return decodeAcl(value);
  }

  getxattr(ino: number, name: Name): Buffer {
    const value = this.findxattr(ino, name);
    if (value === null) throw new RmapfsError('ENODATA', `no attribute '${nameBytes(name).toString()}'`);
    return value;
  }

  /** The value, or null when there is none (the kernel asks for absent ones on every write). */
  findxattr(ino: number, name: Name): Buffer | null {
    const bytes = nameBytes(name);
    const inode = this.inode(ino);
    if (inode.attrFormat === ATTR_NONE) return null;
    return new AttrFork(inode, this.ctx).get(bytes);
  }

  listxattr(ino: number): string[] {
    return new AttrFork(this.inode(ino), this.ctx).list().map((e) => e.name.toString());
  }

  /**
   * Removes an attribute (ENODATA when there is none). Removing an ACL
   * leaves the mode as it is, and one that is not there is no error (as
   * ext4 and XFS answer the kernel's set_acl(NULL)).
   */
  removexattr(ino: number, name: Name): void {
    const bytes = nameBytes(name);
    const isAcl = POSIX_ACL_NAMES.has(bytes.toString('latin1'));
    this.fs.run(() => {
      const inode = this.inode(ino);
      refuseFlagged(inode, IFLAGS_PINNED, 'no extended attribute removed');
      const attrs = new AttrFork(inode, this.ctx);
      if (!isAcl) return attrs.remove(bytes);
      this.dropAttr(attrs, bytes);
      inode.touch('ctime');
    });
  }

  // ---- inode flags (chattr / lsattr) -------------------------------------------------

  /** The inode's flags (IFLAG_* bits). */
  getFlags(ino: number): number {
    return this.inode(ino).flags & IFLAGS_DEFINED;
  }

  /** Extents in a regular file's block map (FS_IOC_FSGETXATTR's nextents); 0 for other types. */
  dataExtentCount(ino: number): number {
    const inode = this.inode(ino);
    return inode.type === S_IFREG && inode.format !== FORK_LOCAL ? new BlockMap(inode, this.fs.alloc, this.fs.geo).count : 0;
  }

  /**
   * Sets the inode's flags (IFLAG_* bits) by the kernel's rules
   * (vfs_fileattr_set, fileattr_set_prepare, ext4_ioctl_check_immutable):
   * EOPNOTSUPP for a bit rmapfs does not define; EPERM unless the caller owns
   * the file or is root, EPERM for a change of immutable or append-only by
   * anyone but root, and EPERM for any other change while the file is and
   * stays immutable. ctime is updated, as ext4 and XFS do.
   */
  setFlags(ino: number, flags: number, caller: FlagsCaller): Stat {
    if ((flags & ~IFLAGS_DEFINED) !== 0) throw new RmapfsError('EOPNOTSUPP', `inode flags 0x${(flags >>> 0).toString(16)}: unknown bits`);
    return this.fs.run(() => {
      const inode = this.inode(ino);
      const privileged = caller.uid === 0;
      if (!privileged && caller.uid !== inode.uid) throw new RmapfsError('EPERM', `inode ${ino}: only its owner or root changes its flags`);
      const old = inode.flags & IFLAGS_DEFINED;
      if (((old ^ flags) & IFLAGS_PINNED) !== 0 && !privileged) {
        throw new RmapfsError('EPERM', `inode ${ino}: only root sets or clears immutable and append-only`);
      }
      if ((old & flags & IFLAG_IMMUTABLE) !== 0 && ((old ^ flags) & ~IFLAG_IMMUTABLE) !== 0) {
        throw new RmapfsError('EPERM', `inode ${ino} is immutable: clear that first`);
      }
      inode.flags = (inode.flags & ~IFLAGS_DEFINED) | flags; // an undefined bit (damage) is the repair's to clear
      inode.touch('ctime');
      return this.statOf(inode);
    });
  }

  /**
   * open(2)'s rules for the flags (may_open, inode_permission): an immutable
   * file is not opened for writing or truncation, an append-only one only
   * with O_APPEND and never with O_TRUNC (EPERM). Throws ENOENT (and the
   * like) for an inode that cannot be read, as stat does.
   */
  checkOpen(ino: number, openFlags: number): void {
    const inode = this.inode(ino);
    const writing = (openFlags & O_WRITE_ACCESS) !== 0;
    const truncating = (openFlags & fsConstants.O_TRUNC) !== 0;
    if (writing || truncating) refuseFlagged(inode, IFLAG_IMMUTABLE, 'not opened for writing');
    if (truncating || (writing && (openFlags & fsConstants.O_APPEND) === 0)) refuseFlagged(inode, IFLAG_APPEND, 'opened for writing only with O_APPEND');
  }

  // ---- copy_file_range ---------------------------------------------------------------

  /**
   * copy_file_range(2) between two regular files of this filesystem (or
   * within one, ranges apart): the source's data is read and written again,
   * a transaction per COPY_CHUNK; a hole of the source (or unwritten space)
   * stays a hole -- punched where the destination held data, skipped past
   * its end, the size set at the end. Returns the bytes copied: 0 at or past
   * the source's end, fewer than asked past COPY_DATA_PER_CALL bytes of data
   * or when space runs out part way (ENOSPC only if nothing was copied).
   * The destination's mtime and ctime change as a write's would.
   */
  copyFileRange(inoIn: number, offIn: number, inoOut: number, offOut: number, length: number, flags = 0): number {
    const regular = (ino: number): Inode => {
      const inode = this.inode(ino);
      if (inode.isDir) throw new RmapfsError('EISDIR', `inode ${ino} is a directory`);
      if (inode.type !== S_IFREG) throw new RmapfsError('EINVAL', `inode ${ino} is not a regular file`);
      return inode;
    };
    const src = regular(inoIn);
    const dst = regular(inoOut);
    refuseFlagged(dst, IFLAG_IMMUTABLE, 'not written');
    // An append-only file is written only through O_APPEND descriptors, which copy_file_range refuses (EBADF).
    if ((dst.flags & IFLAG_APPEND) !== 0) throw new RmapfsError('EBADF', `inode ${inoOut} is append-only: copy_file_range cannot write it`);
    const count = copyRangeLength(inoIn === inoOut, src.size, offIn, offOut, length, flags);
    let done = 0;
    let dataCopied = 0;
    try {
      while (done < count && dataCopied < COPY_DATA_PER_CALL) {
        const at = offIn + done;
        const run = sourceRunAt(new BlockMap(this.inode(inoIn), this.fs.alloc, this.fs.geo), this.inode(inoIn).size, at, offIn + count);
        if (run.kind === 'hole') {
          const from = offOut + done;
          const to = from + (run.end - at);
          this.fs.run(() => {
            const out = this.inode(inoOut);
            const inside = Math.min(to, out.size);
            if (inside > from) fallocateFile(this.ctx, out, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, from, inside - from);
          });
          done = run.end - offIn;
          continue;
        }
        const n = Math.min(run.end - at, COPY_CHUNK, COPY_DATA_PER_CALL - dataCopied);
        this.fs.run(() => {
          const data = readFile(this.ctx, this.inode(inoIn), at, n);
          writeFile(this.ctx, this.inode(inoOut), offOut + done, data);
        });
        done += n;
        dataCopied += n;
      }
    } catch (e) {
      if (!(e instanceof RmapfsError) || e.code !== 'ENOSPC' || done === 0) throw e;
      log('copy_file_range: out of space after %d of %d bytes', done, count);
    }
    // A hole at the end of what was copied: the destination grows over it.
    if (done > 0 && this.inode(inoOut).size < offOut + done) this.fs.run(() => truncateFile(this.ctx, this.inode(inoOut), offOut + done));
    return done;
  }

  /** Makes everything done so far durable. */
  fsync(): void {
    this.fs.forceLog();
  }
}

/** Bytes from pos (at most len) that lie in blocks the file already maps, up to its first hole. */
function mappedPrefix(map: BlockMap, pos: number, len: number): number {
  let at = pos;
  const end = pos + len;
  while (at < end) {
    const { hit } = map.lookup(Math.floor(at / BLOCK_SIZE));
    if (hit === null || hit.unwritten) break;
    at = Math.min(end, (hit.fileoff + hit.blockcount) * BLOCK_SIZE);
  }
  return at - pos;
}
