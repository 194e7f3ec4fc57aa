/**
 * The FUSE handlers, on our low-level binding: requests come by inode number
 * (FUSE's root, node 1, is the filesystem's root inode; every other node id
 * is the rmapfs inode number itself), with the caller's uid/gid, and each is
 * answered in the same JS turn. File handles are inode numbers.
 *
 * The kernel may keep using an inode after its last name is gone (an open
 * file, a cached reference): lookups (until `forget`) and open handles are
 * counted, and an unlinked inode lives on as an orphan until both are zero.
 */
import createDebug from 'debug';
import { RmapfsError, errnoOf } from '../errors';
import * as fs from 'fs';
import type { AclCaller, AtimePolicy, PrivDrop, Rmapfs, Stat } from '../fs/rmapfs';
import { S_IFMT, S_IFREG } from '../inode/inode-format';
import type { Timespec } from '../inode/inode-format';
import { now } from '../inode/inode';
import { POSIX_ACL_NAMES } from '../attr/posix-acl';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, SEEK_DATA, SEEK_HOLE } from './lowlevel';
import { decodeFsFlags, decodeFsxattr, encodeFsFlags, encodeFsxattr, flagIoctlOf } from './inode-flags';
import type { Attr, Caller, DirEntryPlus, Entry, ErrorReply, LowLevelHandlers, SetattrRequest, Time } from './lowlevel';

const log = createDebug('rmapfs:fuse');

const ROOT_NODE = 1;
const EIO = errnoOf('EIO');
const ENODATA = errnoOf('ENODATA');
const ENOTTY = errnoOf('ENOTTY');
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
/** open(2)'s access mode bits; O_RDONLY is 0 (asm-generic/fcntl.h). */
const O_ACCMODE = 3;

export interface LowLevelOpsOptions {
  readOnly: boolean;
  /** Owner of what is created, instead of the caller (-o uid=,gid=); null: the caller. */
  uid: number | null;
  gid: number | null;
  /** Every change is durable before it is answered (-o sync). */
  sync: boolean;
  /** Every change to a directory is durable before it is answered (-o dirsync). */
  dirsync: boolean;
  /**
   * Asked before a change is refused on a read-only mount: a remount,rw done
   * with mount(2) alone may not have reached the daemon yet. True: still read-only.
   */
  stillReadOnly?: () => boolean;
  /** When reads update atime (-o relatime, strictatime, noatime, nodiratime). */
  atime: AtimePolicy;
  /**
   * Whether the kernel enforces POSIX ACLs on this connection
   * (FUSE_CAP_POSIX_ACL, granted at INIT with FUSE_CAP_DONT_MASK: creates
   * then come with the caller's umask unapplied, for Rmapfs to apply unless
   * a default ACL replaces it). False (-o noacl, or a kernel without it): the
   * ACL attributes are refused with EOPNOTSUPP, as on a filesystem mounted
   * noacl -- stored but not enforced, they would lie -- and hidden from
   * listxattr, so cp -a, mv and rsync fall back to the mode bits. Absent: false.
   */
  posixAcl?: () => boolean;
  /**
   * With the kernel's writeback cache: has the kernel write back the dirty pages of a node
   * (LowLevelFuse.writeBack). lseek's SEEK_DATA/SEEK_HOLE asks it first for a file open for
   * writing -- the kernel sends FUSE_LSEEK without writing back, and pages it still holds
   * would be a hole (or past EOF) in the block map.
   */
  writeBack?: (node: number) => Promise<void>;
  /**
   * With the writeback cache: has the kernel forget a node's cached attributes
   * (LowLevelFuse.invalidateAttributes), so that the next write(2) to it asks
   * GETATTR first -- the one request a write(2) waits for, which is how a failed
   * writeback's error reaches a writer.
   */
  invalidateAttributes?: (node: number) => void;
  /**
   * Whether the kernel leaves killing privileges to the daemon (FUSE_HANDLE_KILLPRIV_V2 granted
   * at INIT: LowLevelFuse.killprivV2). Then the handlers drop suid/sgid and security.capability
   * where the kernel would have (see `setattrDrop` and the write, fallocate and copy_file_range
   * handlers). Absent: false, the kernel does it.
   */
  killPrivs?: () => boolean;
}

/**
 * Writes by other means than write(2) that the kernel says nothing about (fallocate,
 * copy_file_range): it checks the caller's CAP_FSETID and sends a SETATTR without attributes
 * first (below), but that one cannot be told apart from root's chown(f, -1, -1); uid 0 is taken
 * to have CAP_FSETID, anyone else not.
 */
function dropByCaller(caller: Caller): PrivDrop {
  return { suidgid: caller.uid !== 0, capability: true };
}

/**
 * What a SETATTR takes away when the daemon kills privileges (the kernel's rules, FUSE's side
 * of them: fs/fuse/dir.c fuse_setattr, fuse_do_setattr; fs/open.c chown_common):
 *  - a truncate (size): suid/sgid when the kernel says the caller lacks CAP_FSETID
 *    (FATTR_KILL_SUIDGID), security.capability always;
 *  - a chown (uid or gid, no mode: the kernel no longer sends the mode it would have cleared):
 *    suid/sgid and security.capability, whoever the caller (chown_common kills them for every
 *    non-directory; Rmapfs leaves directories alone);
 *  - nothing at all (ctime at most: chown(f, -1, -1), or file_remove_privs before a write,
 *    fallocate or copy_file_range by a caller the kernel found without CAP_FSETID): as a chown,
 *    but suid/sgid only for a caller other than root -- root's write to a file with a capability
 *    sends it too (cap_inode_killpriv), and must keep suid.
 * Anything else (chmod, utimes, the writeback cache's times) drops nothing.
 */
function setattrDrop(req: SetattrRequest): PrivDrop | undefined {
  if (req.size !== undefined) return { suidgid: req.killSuidgid, capability: true };
  if (req.mode !== undefined || req.atime !== undefined || req.mtime !== undefined) return undefined;
  if (req.uid !== undefined || req.gid !== undefined) return { suidgid: true, capability: true };
  return dropByCaller(req.caller);
}

/**
 * What a request changes: the namespace (entries of a directory: what
 * dirsync makes synchronous, as on Linux) or anything else (data, attributes,
 * extended attributes: only sync does).
 */
type Change = 'namespace' | 'other';

/**
 * What renameat2's flags ask for, refused as rename(2) refuses them: EINVAL
 * for an unknown bit and for NOREPLACE with EXCHANGE. RENAME_WHITEOUT
 * (overlayfs leaving a whiteout device at the source) is EINVAL too: rmapfs
 * does not do it, and EINVAL is what a filesystem without it answers.
 */
function renameKind(flags: number): 'plain' | 'exchange' {
  if ((flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT)) !== 0) throw new RmapfsError('EINVAL', `unknown rename flags ${flags}`);
  if (flags & RENAME_WHITEOUT) throw new RmapfsError('EINVAL', 'RENAME_WHITEOUT is not supported');
  if ((flags & RENAME_NOREPLACE) && (flags & RENAME_EXCHANGE)) throw new RmapfsError('EINVAL', 'RENAME_NOREPLACE with RENAME_EXCHANGE');
  return flags & RENAME_EXCHANGE ? 'exchange' : 'plain';
}

/** EOPNOTSUPP for an ACL name when the connection does not enforce ACLs. */
function refuseAcl(name: string): void {
  if (POSIX_ACL_NAMES.has(name)) throw new RmapfsError('EOPNOTSUPP', `${name}: POSIX ACLs are off on this mount`);
}

/**
 * The caller of a setxattr as the ACL setgid rule sees it: root counts as
 * privileged (CAP_FSETID; a capability-less root is not told apart), anyone
 * else is in a group that is its fsgid or one of its supplementary groups --
 * read from /proc/PID/status only when asked (libfuse's fuse_req_getgroups
 * does the same), i.e. when the file's group is not the caller's own.
 */
function aclCaller(caller: Caller): AclCaller {
  return {
    inGroupOrPrivileged: (gid) => caller.uid === 0 || caller.gid === gid || supplementaryGroups(caller.pid).includes(gid),
  };
}

function supplementaryGroups(pid: number): number[] {
  try {
    const line = fs.readFileSync(`/proc/${pid}/status`, 'latin1').split('\n').find((l) => l.startsWith('Groups:'));
    return line === undefined ? [] : line.slice('Groups:'.length).trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return []; // the caller is gone: no group to grant
  }
}

/** A time setattr sets to a value the caller chose (utimes with times), not to "now" (touch). */
function chosenTime(t: Time | 'now' | undefined): boolean {
  return t !== undefined && t !== 'now';
}

/**
 * An mtime the kernel read off its own clock: with the writeback cache it
 * owns a regular file's mtime and sends "now" (touch, utimensat(NULL)) as the
 * time itself, never FATTR_MTIME_NOW (fs/fuse iattr_to_fattr, trust_local_cmtime).
 * Within a second of ours it is taken for "now".
 */
function stampedNow(t: Time | 'now' | undefined): boolean {
  return t !== undefined && t !== 'now' && Math.abs(t.sec + t.nsec / 1e9 - Date.now() / 1000) < 1;
}

function toTime(t: Timespec): Time {
  return { sec: t.sec, nsec: t.nsec };
}

export class LowLevelOps {
  internalErrors = 0;
  private readonly lookups = new Map<number, number>();
  private readonly opens = new Map<number, number>();
  /** Open handles that may write, per inode: the kernel may hold dirty pages of these (writeback cache). */
  private readonly writers = new Map<number, number>();
  /**
   * Per node: the errno of a writeback WRITE that failed (ENOSPC, EIO), not yet
   * told to a writer. The kernel keeps it for fsync and close; write(2) never
   * sees it unless we answer the GETATTR it asks first with it (writeback cache).
   */
  private readonly writebackErrors = new Map<number, number>();
  private readonly root: number;

  constructor(private fsx: Rmapfs, private readonly opts: LowLevelOpsOptions) {
    this.root = fsx.rootIno;
    this.tellInUse();
  }

  private tellInUse(): void {
    this.fsx.setInUse((ino) => (this.lookups.get(ino) ?? 0) > 0 || (this.opens.get(ino) ?? 0) > 0);
    this.fsx.setPosixAcls(() => this.aclsOn());
  }

  /**
   * Serves from another Rmapfs of the same filesystem from now on (remount,rw
   * of a read-only mount opens it again read-write). The kernel's references
   * (lookups, open handles) carry over: node ids and handles are inode numbers.
   */
  replaceFilesystem(fsx: Rmapfs): void {
    this.fsx = fsx;
    this.tellInUse();
  }

  /** A remount changed what may change on a live mount: read-only, sync, dirsync, the atime policy. */
  update(changes: Partial<Pick<LowLevelOpsOptions, 'readOnly' | 'sync' | 'dirsync' | 'atime'>>): void {
    Object.assign(this.opts, changes);
  }

  /** The umask the daemon must apply to a create: the caller's when the kernel left it to us (POSIX ACLs on). */
  private umaskOf(caller: { umask: number }): number {
    return this.aclsOn() ? caller.umask : 0;
  }

  /** Refuses the ACL names unless the kernel enforces ACLs. */
  private checkAclName(name: string): void {
    if (!this.aclsOn()) refuseAcl(name);
  }

  /** The kernel leaves killing privileges to us (LowLevelOpsOptions.killPrivs). */
  private killsPrivs(): boolean {
    return this.opts.killPrivs?.() ?? false;
  }

  private aclsOn(): boolean {
    return this.opts.posixAcl?.() ?? false;
  }

  private ino(node: number): number {
    return node === ROOT_NODE ? this.root : node;
  }

  private node(ino: number): number {
    return ino === this.root ? ROOT_NODE : ino;
  }

  private attr(st: Stat): Attr {
    return {
      ino: this.node(st.ino), mode: st.mode, nlink: st.nlink, uid: st.uid, gid: st.gid, size: st.size, rdev: st.rdev,
      blocks: st.blocks, blksize: st.blksize, atime: toTime(st.atime), mtime: toTime(st.mtime), ctime: toTime(st.ctime),
    };
  }

  /** An entry reply counts as one more kernel reference to the inode. */
  private entry(st: Stat): Entry {
    this.countLookup(st.ino);
    return this.entryOf(st);
  }

  private entryOf(st: Stat): Entry {
    return { ino: this.node(st.ino), generation: st.generation, attr: this.attr(st) };
  }

  private countLookup(ino: number): void {
    this.lookups.set(ino, (this.lookups.get(ino) ?? 0) + 1);
  }

  /** A readdirplus entry's answer, or null when its inode cannot be read (the lookup that follows gets the error). */
  private readableEntry(ino: number): Entry | null {
    try {
      return this.entryOf(this.fsx.stat(ino));
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      log('readdirplus: inode %d: %s', ino, e.message);
      return null;
    }
  }

  /** Counts an open handle that may write (opened O_WRONLY or O_RDWR), or its release. */
  private countWriter(ino: number, flags: number, delta: number): void {
    if ((flags & O_ACCMODE) === 0) return;
    const n = (this.writers.get(ino) ?? 0) + delta;
    if (n > 0) this.writers.set(ino, n);
    else {
      this.writers.delete(ino);
      // No writer left to tell: the kernel told the last close (flush) itself.
      this.writebackErrors.delete(ino);
    }
  }

  /**
   * A writeback WRITE failed: the pages' data is lost, and the writer must
   * hear of it at its next write(2) (else `dd` to a full filesystem never
   * stops), so the node's cached attributes go and its next GETATTR with a
   * file handle gets the error once.
   */
  private writebackFailed(node: number, e: unknown): void {
    const errno = e instanceof RmapfsError ? e.errno : EIO;
    this.writebackErrors.set(node, errno);
    this.opts.invalidateAttributes?.(node);
  }

  /**
   * Counts kernel references; the last one gone frees an unlinked inode. On a
   * sync mount that free is durable before this returns (before the release
   * reply), as ext4 syncs the inode's eviction on a sync mount: the space an
   * application saw go away at its close must not come back after a crash.
   */
  private count(map: Map<number, number>, ino: number, delta: number): void {
    const n = (map.get(ino) ?? 0) + delta;
    if (n > 0) map.set(ino, n);
    else {
      map.delete(ino);
      if (!this.lookups.has(ino) && !this.opens.has(ino) && this.fsx.releaseOrphan(ino) && this.opts.sync) this.fsx.fsync();
    }
  }

  /**
   * The inode behind a node id from a file handle. The root's node id is 1, never its inode number:
   * a handle naming the root by inode number was not made by us (the kernel would refuse an answer
   * with another node id as EIO).
   */
  private statOfHandle(node: number): Stat {
    if (node !== ROOT_NODE && node === this.root) throw new RmapfsError('ESTALE', `node ${node}: the root is node ${ROOT_NODE}`);
    return this.fsx.statByHandle(this.ino(node));
  }

  /** Runs one request, answering an RmapfsError with its errno and anything else with EIO. */
  private run(what: string, reply: ErrorReply, fn: () => void): void {
    const health = this.fsx.fs.alloc.inodeHealth;
    // What an inode structure found damaged meanwhile was found doing (alloc/health.ts).
    health.request = what;
    try {
      fn();
    } catch (e) {
      this.fail(what, reply, e);
    } finally {
      health.request = null;
    }
  }

  /**
   * Runs one modifying request: `change` makes the change and returns the
   * answer, which goes out only after the change is durable when the mount
   * wants that (sync; dirsync for the namespace) -- a reply is a promise the
   * change survives a crash, so the log force comes first, and if it fails
   * the request fails with its error (EIO; the filesystem shuts down), never
   * a success followed by a logged error. An answer that counts a kernel
   * reference (an entry, an open handle) counts it only when it is sent.
   */
  private modify(what: string, reply: ErrorReply, kind: Change, change: () => () => void): void {
    const health = this.fsx.fs.alloc.inodeHealth;
    health.request = what;
    try {
      if (this.opts.readOnly && (this.opts.stillReadOnly?.() ?? true)) throw new RmapfsError('EROFS', 'read-only mount');
      const answer = change();
      if (this.opts.sync || (kind === 'namespace' && this.opts.dirsync)) this.fsx.fsync();
      answer();
    } catch (e) {
      this.fail(what, reply, e);
    } finally {
      health.request = null;
    }
  }

  private fail(what: string, reply: ErrorReply, e: unknown): void {
    if (reply.answered) {
      log('%s: failed after answering: %O', what, e);
      return;
    }
    if (e instanceof RmapfsError) {
      log('%s: %s', what, e.message);
      reply.error(e.errno);
    } else {
      this.internalErrors++;
      log('%s: internal error: %O', what, e);
      reply.error(EIO);
    }
  }

  handlers(): LowLevelHandlers {
    return {
      lookup: (req, reply) => this.run('lookup', reply, () => {
        // ".": the kernel resolving a file handle of an inode it no longer caches (fuse_get_dentry,
        // export support); the node may be of any type, or gone.
        if (req.name === '.') return reply.entry(this.entry(this.statOfHandle(req.parent)));
        let ino: number;
        try {
          ino = this.fsx.lookup(this.ino(req.parent), req.name);
        } catch (e) {
          if (e instanceof RmapfsError && e.code === 'ENOENT') return reply.negative();
          throw e;
        }
        reply.entry(this.entry(this.fsx.stat(ino)));
      }),
      forget: (req) => {
        try {
          this.count(this.lookups, this.ino(req.ino), -req.nlookup);
        } catch (e) {
          log('forget: %O', e);
        }
      },
      getattr: (req, reply) => this.run('getattr', reply, () => {
        // With a file handle: the kernel refreshing size and mode before a write(2) (or a read
        // or lseek at EOF) through an open file -- the writer a failed writeback must reach.
        const failed = req.fh !== null && this.writers.has(req.fh) ? this.writebackErrors.get(req.ino) : undefined;
        if (failed !== undefined) {
          this.writebackErrors.delete(req.ino);
          log('getattr: node %d: a writeback failed (errno %d): told to the writer', req.ino, failed);
          return reply.error(failed);
        }
        reply.attr(this.attr(this.fsx.stat(this.ino(req.ino))));
      }),
      setattr: (req, reply) => this.modify('setattr', reply, 'other', () => {
        const st = this.fsx.setattr(this.ino(req.ino), {
          mode: req.mode, uid: req.uid, gid: req.gid, size: req.size,
          atime: req.atime === 'now' ? now() : req.atime, mtime: req.mtime === 'now' ? now() : req.mtime,
          timesAreNow: !chosenTime(req.atime)
            && (!chosenTime(req.mtime) || (this.opts.writeBack !== undefined && stampedNow(req.mtime))),
          ctime: req.ctime,
          dropPrivs: this.killsPrivs() ? setattrDrop(req) : undefined,
        });
        return () => reply.attr(this.attr(st));
      }),
      // atime after the answer: the reader need not wait for it, and a failure to note it is only logged.
      readlink: (req, reply) => this.run('readlink', reply, () => {
        const ino = this.ino(req.ino);
        reply.readlink(this.fsx.readlink(ino).toString());
        this.fsx.noteAccess(ino, this.opts.atime);
      }),
      mknod: (req, reply) => this.modify('mknod', reply, 'namespace', () => {
        const st = this.fsx.create(this.ino(req.parent), req.name, req.mode, this.opts.uid ?? req.caller.uid, this.opts.gid ?? req.caller.gid, req.rdev,
          this.umaskOf(req.caller));
        return () => reply.entry(this.entry(st));
      }),
      mkdir: (req, reply) => this.modify('mkdir', reply, 'namespace', () => {
        const st = this.fsx.mkdir(this.ino(req.parent), req.name, req.mode, this.opts.uid ?? req.caller.uid, this.opts.gid ?? req.caller.gid,
          this.umaskOf(req.caller));
        return () => reply.entry(this.entry(st));
      }),
      unlink: (req, reply) => this.modify('unlink', reply, 'namespace', () => {
        this.fsx.unlink(this.ino(req.parent), req.name);
        return () => reply.ok();
      }),
      rmdir: (req, reply) => this.modify('rmdir', reply, 'namespace', () => {
        this.fsx.rmdir(this.ino(req.parent), req.name);
        return () => reply.ok();
      }),
      symlink: (req, reply) => this.modify('symlink', reply, 'namespace', () => {
        const st = this.fsx.symlink(this.ino(req.parent), req.name, req.target, this.opts.uid ?? req.caller.uid, this.opts.gid ?? req.caller.gid);
        return () => reply.entry(this.entry(st));
      }),
      rename: (req, reply) => this.modify('rename', reply, 'namespace', () => {
        const from = this.ino(req.parent);
        const to = this.ino(req.newParent);
        if (renameKind(req.flags) === 'exchange') this.fsx.exchange(from, req.name, to, req.newName);
        else this.fsx.rename(from, req.name, to, req.newName, { noReplace: (req.flags & RENAME_NOREPLACE) !== 0 });
        return () => reply.ok();
      }),
      link: (req, reply) => this.modify('link', reply, 'namespace', () => {
        const st = this.fsx.link(this.ino(req.ino), this.ino(req.newParent), req.newName);
        return () => reply.entry(this.entry(st));
      }),
      open: (req, reply) => this.run('open', reply, () => {
        const ino = this.ino(req.ino);
        this.fsx.checkOpen(ino, req.flags); // immutable / append-only: the kernel does not know them
        this.count(this.opens, ino, 1);
        this.countWriter(ino, req.flags, 1);
        reply.open(ino);
      }),
      read: (req, reply) => this.run('read', reply, () => {
        reply.data(this.fsx.read(req.fh, req.offset, req.size));
        this.fsx.noteAccess(req.fh, this.opts.atime);
      }),
      // Privileges go first, as file_remove_privs does before a write (a failed write leaves them
      // gone too); the writeback cache's late WRITEs drop nothing: the write(2) that dirtied
      // the pages did (and one that had suid/sgid to kill went through, not to the cache).
      write: (req, reply) => this.modify('write', reply, 'other', () => {
        if (this.killsPrivs() && !req.fromCache) this.fsx.dropPrivs(req.fh, { suidgid: req.killSuidgid, capability: true });
        let written: number;
        try {
          written = this.fsx.write(req.fh, req.offset, req.data);
          // A short count is success to write(2), which retries the rest; a writeback would lose it.
          if (req.fromCache && written < req.data.length) {
            throw new RmapfsError('ENOSPC', `writeback of ${req.data.length} bytes at ${req.offset}: ${written} fit`);
          }
        } catch (e) {
          if (req.fromCache) this.writebackFailed(req.ino, e);
          throw e;
        }
        return () => reply.written(written);
      }),
      // No flush handler: libfuse answers FLUSH with ENOSYS, and the kernel stops sending it (no_flush)
      // -- one round trip less per close(2). It still writes dirty pages back and reports their errors
      // at close (fuse_flush does both before it would ask us); we have nothing to do at close, and no
      // locks whose owner FLUSH would name (the kernel keeps POSIX locks itself).
      release: (req, reply) => this.run('release', reply, () => {
        this.countWriter(req.fh, req.flags, -1);
        this.count(this.opens, req.fh, -1);
        reply.ok();
      }),
      fsync: (_req, reply) => this.run('fsync', reply, () => { this.fsx.fsync(); reply.ok(); }),
      opendir: (req, reply) => this.run('opendir', reply, () => {
        const ino = this.ino(req.ino);
        this.fsx.stat(ino);
        this.count(this.opens, ino, 1);
        reply.open(ino);
      }),
      readdir: (req, reply) => this.run('readdir', reply, () => {
        // Each entry takes at least 32 bytes of the reply: ask for no more than could fit.
        const list = this.fsx.readdirFrom(req.fh, req.offset, Math.max(1, Math.ceil(req.size / 32)));
        reply.entries(list.map((e) => ({ name: e.name, ino: this.node(e.ino), mode: e.ftype << 12, off: e.next })));
        this.fsx.noteAccess(req.fh, this.opts.atime);
      }),
      // Entries with what a lookup of each would answer: `ls -l` needs no LOOKUP per name. Each entry sent
      // with attributes is a kernel reference, as a lookup is; "." and ".." go without (the kernel
      // ignores theirs and counts nothing), and so does an inode that cannot be read (the kernel's
      // LOOKUP then gets its error).
      readdirplus: (req, reply) => this.run('readdirplus', reply, () => {
        // Each entry takes at least 152 bytes of the reply (fuse_direntplus and a name): ask for no more than could fit.
        const list = this.fsx.readdirFrom(req.fh, req.offset, Math.max(1, Math.ceil(req.size / 152)));
        const plus: DirEntryPlus[] = list.map((e) => ({ name: e.name, ino: this.node(e.ino), mode: e.ftype << 12, off: e.next,
          entry: e.name === '.' || e.name === '..' ? null : this.readableEntry(e.ino) }));
        const sent = reply.entriesPlus(plus);
        for (const e of plus.slice(0, sent)) if (e.entry !== null) this.countLookup(this.ino(e.entry.ino));
        this.fsx.noteAccess(req.fh, this.opts.atime);
      }),
      releasedir: (req, reply) => this.run('releasedir', reply, () => {
        this.count(this.opens, req.fh, -1);
        reply.ok();
      }),
      fsyncdir: (_req, reply) => this.run('fsyncdir', reply, () => { this.fsx.fsync(); reply.ok(); }),
      statfs: (_req, reply) => this.run('statfs', reply, () => {
        const s = this.fsx.statfs();
        reply.statfs({ bsize: s.bsize, frsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail,
          files: s.files, ffree: s.ffree, favail: s.ffree, namemax: s.namemax });
      }),
      setxattr: (req, reply) => this.modify('setxattr', reply, 'other', () => {
        const mode = req.flags & XATTR_CREATE ? 'create' : req.flags & XATTR_REPLACE ? 'replace' : 'any';
        this.checkAclName(req.name);
        this.fsx.setxattr(this.ino(req.ino), req.name, Buffer.from(req.value), mode, aclCaller(req.caller));
        return () => reply.ok();
      }),
      getxattr: (req, reply) => this.run('getxattr', reply, () => {
        this.checkAclName(req.name);
        const v = this.fsx.findxattr(this.ino(req.ino), req.name);
        if (v === null) reply.error(ENODATA);
        else reply.value(v);
      }),
      listxattr: (req, reply) => this.run('listxattr', reply, () => {
        const names = this.fsx.listxattr(this.ino(req.ino));
        reply.names(this.aclsOn() ? names : names.filter((n) => !POSIX_ACL_NAMES.has(n)));
      }),
      removexattr: (req, reply) => this.modify('removexattr', reply, 'other', () => {
        this.checkAclName(req.name);
        this.fsx.removexattr(this.ino(req.ino), req.name);
        return () => reply.ok();
      }),
      access: (_req, reply) => reply.ok(),
      create: (req, reply) => this.modify('create', reply, 'namespace', () => {
        const type = req.mode & S_IFMT || S_IFREG;
        const st = this.fsx.create(this.ino(req.parent), req.name, (req.mode & ~S_IFMT) | type, this.opts.uid ?? req.caller.uid,
          this.opts.gid ?? req.caller.gid, 0, this.umaskOf(req.caller));
        return () => {
          const e = this.entry(st);
          this.count(this.opens, st.ino, 1);
          this.countWriter(st.ino, req.flags, 1);
          reply.create(e, st.ino);
        };
      }),
      fallocate: (req, reply) => this.modify('fallocate', reply, 'other', () => {
        // Every mode the kernel passes on (allocate, KEEP_SIZE, punch hole, zero range); the rest is EOPNOTSUPP.
        if (this.killsPrivs()) this.fsx.dropPrivs(req.fh, dropByCaller(req.caller));
        this.fsx.fallocate(req.fh, req.mode, req.offset, req.length);
        return () => reply.ok();
      }),
      // SEEK_DATA / SEEK_HOLE from the block map (ENXIO past EOF); without this handler the kernel
      // calls the whole file data, and `cp --sparse`, `fallocate -d`, tar read every byte.
      // The inode-flag ioctls (lsattr, chattr, xfs_io lsattr/chattr); any other ioctl is ENOTTY.
      ioctl: (req, reply) => {
        const what = flagIoctlOf(req.cmd);
        const ino = this.ino(req.ino);
        if (what === 'getflags') this.run('ioctl', reply, () => reply.ioctl(0, encodeFsFlags(this.fsx.getFlags(ino))));
        else if (what === 'fsgetxattr') this.run('ioctl', reply, () => reply.ioctl(0, encodeFsxattr(this.fsx.getFlags(ino), this.fsx.dataExtentCount(ino))));
        else if (what === 'setflags' || what === 'fssetxattr') {
          this.modify('ioctl', reply, 'other', () => {
            const flags = what === 'setflags' ? decodeFsFlags(req.input) : decodeFsxattr(req.input);
            this.fsx.setFlags(ino, flags, { uid: req.caller.uid });
            return () => reply.ioctl(0);
          });
        } else reply.error(ENOTTY);
      },
      copyFileRange: (req, reply) => this.modify('copy_file_range', reply, 'other', () => {
        const from = this.ino(req.ino);
        if (this.killsPrivs()) this.fsx.dropPrivs(this.ino(req.inoOut), dropByCaller(req.caller));
        const copied = this.fsx.copyFileRange(from, req.offset, this.ino(req.inoOut), req.offsetOut, req.length, req.flags);
        return () => {
          reply.written(copied);
          this.fsx.noteAccess(from, this.opts.atime);
        };
      }),
      // A file open for writing may have dirty pages in the kernel's writeback cache: they are
      // written back first (the answer waits; the loop serves their writes meanwhile).
      lseek: (req, reply) => {
        const answer = (): void => this.run('lseek', reply, () => {
          if (req.whence !== SEEK_DATA && req.whence !== SEEK_HOLE) throw new RmapfsError('EINVAL', `lseek whence ${req.whence}`);
          reply.position(this.fsx.seek(req.fh, req.offset, req.whence === SEEK_DATA ? 'data' : 'hole'));
        });
        if (this.opts.writeBack === undefined || !this.writers.has(req.fh)) return answer();
        return this.opts.writeBack(req.ino).then(answer, (e: unknown) => this.fail('lseek', reply, e));
      },
    };
  }
}
