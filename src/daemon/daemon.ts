/**
 * The rmapfs daemon: opens (and locks) the device, replays its journal,
 * mounts it through our low-level FUSE binding, forces the log every `commit` seconds, and on
 * unmount (fusermount -u, umount, `rmapfs umount`), SIGTERM or SIGINT
 * checkpoints, marks the filesystem clean and exits. A daemon that dies
 * leaves a journal the next mount replays.
 */
import * as fs from 'fs';
import * as path from 'path';
import { execFile, execFileSync } from 'child_process';
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../fs/rmapfs';
import type { AtimePolicy } from '../fs/rmapfs';
import { LowLevelOps } from '../fuse/ll-ops';
import { FUSERMOUNT, LowLevelFuse } from '../fuse/lowlevel';
import { startCtlServer } from '../ctl/ctl';
import { daemonGoneMessage, findMount, isMounted, kernelDaemonFlags, mountpointDaemonGone, superblockReadOnly } from '../io/mountinfo';
import { watchMountTable } from '../fuse/lowlevel';
import { refusal, refusalFrom } from '../ctl/ctl';
import type { CtlReply, CtlServer } from '../ctl/ctl';
import { healthSummary, sickStructures } from '../ctl/health-report';
import { DaemonEvents } from './events';
import { AutoHeal } from './autoheal';
import { onlineRepair, onlineScrub, requestedStructures } from '../fsck/online';
import type { OnlineFsckHooks } from '../fsck/online';
import { isRepairable } from '../fsck/table';
import { FaultInjector } from '../io/fault-injector';
import { WriteLogRecorder } from '../io/write-log';

const log = createDebug('rmapfs:daemon');

export interface MountOptions {
  readOnly: boolean;
  allowOther: boolean;
  defaultPermissions: boolean;
  /** POSIX ACLs enforced by the kernel (-o acl, the default; -o noacl refuses the ACL attributes). */
  acl: boolean;
  /** Owner of everything created (null: the creating process, the default). */
  uid: number | null;
  gid: number | null;
  /** Every change is durable before its reply (-o sync). */
  sync: boolean;
  /** When reads update atime (relatime by default, as the kernel mounts). */
  atime: AtimePolicy;
  /** Every directory change is durable before its reply (-o dirsync). */
  dirsync: boolean;
  /**
   * The kernel's writeback cache (-o writeback_cache, the default; -o no_writeback_cache):
   * writes wait in the page cache and reach the daemon in batches (at close, fsync, memory
   * pressure or the kernel's dirty expiry). Never with -o sync (see writebackCacheWanted).
   * A WRITE refused at writeback (ENOSPC, EIO) reaches the writer's next write(2) through
   * the GETATTR the kernel asks first (LowLevelOps.writebackFailed), and fsync and close.
   */
  writebackCache: boolean;
  /**
   * The daemon kills suid/sgid and security.capability on write, truncate and chown instead of
   * the kernel (-o killpriv_v2, the default; -o no_killpriv_v2): FUSE_HANDLE_KILLPRIV_V2, which
   * spares every write(2) a GETXATTR of security.capability (DEVELOPERS.md, FUSE).
   */
  killprivV2: boolean;
  /** Seconds between log forces. */
  commit: number;
  /** Largest write request the kernel sends (up to 1 MiB: libfuse 3 sets max_pages to match). */
  maxWrite: number;
  /** Seconds the kernel may cache attributes, a name's inode, a name's absence (libfuse's names; fractions allowed). */
  attrTimeout: number;
  entryTimeout: number;
  negativeTimeout: number;
  /** Microseconds the FUSE loop keeps reading before it sleeps (see LowLevelOptions.spinUs). */
  spinUs: number;
  /** Tests: record every device write and flush into this file (see io/write-log.ts). */
  writeLog: string | null;
  /** Tests: device faults to inject from the start (see io/fault-injector.ts). */
  faults: string;
  /**
   * The mount flags the kernel owns (ro/rw, nosuid, nodev, noexec, sync, dirsync, the atime
   * choices), in the order given: they go to the kernel mount (see kernelMountFlags).
   */
  kernelFlags: string[];
  /** Change a live mount (its kernel flags, ro/rw) instead of mounting. */
  remount: boolean;
  /**
   * Repair online what a verifier finds sick during normal operation (-o autoheal; daemon/autoheal.ts).
   * Off by default for now: the regression tests that show damage found by a read (and status
   * reporting it) must first mount with -o noautoheal before the default can become on (issue 16).
   */
  autoheal: boolean;
}

export const DEFAULT_MOUNT_OPTIONS: MountOptions = {
  readOnly: false, allowOther: false, defaultPermissions: true, acl: true, uid: null, gid: null,
  sync: false, dirsync: false, writebackCache: true, killprivV2: true, atime: DEFAULT_ATIME_POLICY, commit: 5, maxWrite: 131072, attrTimeout: 1, entryTimeout: 1, negativeTimeout: 1, spinUs: 30,
  writeLog: null, faults: '', kernelFlags: [], remount: false, autoheal: false,
};

/**
 * The mount flags the kernel owns, in groups of which the last one given wins.
 * libfuse's mount(2) knows most; relatime, strictatime, diratime and
 * nodiratime it does not (see kernelMountFlags).
 */
const KERNEL_FLAG_GROUPS: readonly (readonly string[])[] = [
  ['ro', 'rw'], ['suid', 'nosuid'], ['dev', 'nodev'], ['exec', 'noexec'], ['sync', 'async'], ['dirsync'],
  ['atime', 'noatime', 'relatime', 'strictatime'], ['diratime', 'nodiratime'],
];
const KERNEL_FLAGS = new Set(KERNEL_FLAG_GROUPS.flat());
/** What libfuse 3's fuse_session_mount turns into MS_* flags itself (lib/mount.c, mount_flags: as 2.9's). */
const LIBFUSE_FLAGS = new Set(['ro', 'rw', 'suid', 'nosuid', 'dev', 'nodev', 'exec', 'noexec', 'sync', 'async',
  'atime', 'noatime', 'dirsync']);

/**
 * The kernel flags asked for, one per group (the last given), split into what
 * libfuse's mount(2) sets and what a bind remount right after it must set:
 * strictatime and nodiratime (relatime, atime and diratime are the kernel's
 * defaults). Unnamed groups keep libfuse's defaults: nosuid, nodev, exec.
 */
export function kernelMountFlags(flags: readonly string[]): { chosen: string[]; libfuse: string[]; afterMount: string[] } {
  const chosen: string[] = [];
  for (const group of KERNEL_FLAG_GROUPS) {
    const last = [...flags].reverse().find((f) => group.includes(f));
    if (last !== undefined) chosen.push(last);
  }
  return {
    chosen,
    libfuse: chosen.filter((f) => LIBFUSE_FLAGS.has(f)),
    afterMount: chosen.filter((f) => f === 'strictatime' || f === 'nodiratime'),
  };
}

/** Parses "-o" option text ("ro,allow_other,commit=10,..."); unknown options are an error. */
export function parseMountOptions(text: string, base: MountOptions = DEFAULT_MOUNT_OPTIONS): MountOptions {
  const o = { ...base };
  const num = (k: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < min) throw new RmapfsError('EINVAL', `mount option ${k} needs a whole number >= ${min}`);
    return n;
  };
  // Seconds as libfuse's high-level options take them: a decimal number >= 0 (0.5, 2, 30).
  const seconds = (k: string, v: string | undefined): number => {
    if (v === undefined || !/^(\d+(\.\d*)?|\.\d+)$/.test(v) || !Number.isFinite(Number(v))) {
      throw new RmapfsError('EINVAL', `mount option ${k} needs a number of seconds >= 0 (e.g. 1 or 0.5)`);
    }
    return Number(v);
  };
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [k, v] = item.split('=', 2) as [string, string | undefined];
    if (KERNEL_FLAGS.has(k) && v === undefined) o.kernelFlags = [...o.kernelFlags, k];
    switch (k) {
      case 'ro': o.readOnly = true; break;
      case 'rw': o.readOnly = false; break;
      case 'allow_other': o.allowOther = true; break;
      case 'default_permissions': o.defaultPermissions = true; break;
      case 'no_default_permissions': o.defaultPermissions = false; break;
      case 'acl': o.acl = true; break;
      case 'noacl': o.acl = false; break;
      case 'uid': o.uid = num(k, v, 0); break;
      case 'gid': o.gid = num(k, v, 0); break;
      case 'sync': o.sync = true; break;
      case 'async': o.sync = false; break;
      // atime: the last of relatime/strictatime/noatime wins; 'atime' undoes noatime. lazytime
      // is accepted and changes nothing: an atime update is already only a change in the cache
      // that goes out with the next log force (every commit= seconds, or fsync, or unmount).
      case 'relatime': o.atime = { ...o.atime, mode: 'relatime' }; break;
      case 'strictatime': o.atime = { ...o.atime, mode: 'strictatime' }; break;
      case 'noatime': o.atime = { ...o.atime, mode: 'noatime' }; break;
      case 'atime': if (o.atime.mode === 'noatime') o.atime = { ...o.atime, mode: 'relatime' }; break;
      case 'nodiratime': o.atime = { ...o.atime, nodiratime: true }; break;
      case 'diratime': o.atime = { ...o.atime, nodiratime: false }; break;
      case 'lazytime': case 'nolazytime': break;
      case 'dirsync': o.dirsync = true; break;
      case 'writeback_cache': o.writebackCache = true; break;
      case 'no_writeback_cache': o.writebackCache = false; break;
      case 'killpriv_v2': o.killprivV2 = true; break;
      case 'no_killpriv_v2': o.killprivV2 = false; break;
      case 'commit': o.commit = num(k, v, 1); break;
      case 'max_write': o.maxWrite = Math.min(num(k, v, 4096), 1 << 20); break;
      case 'big_writes': break; // libfuse 2's; always on
      // libfuse 2 refused a non-empty mountpoint without it; libfuse 3 always mounts over one.
      case 'nonempty': break;
      case 'attr_timeout': o.attrTimeout = seconds(k, v); break;
      case 'entry_timeout': o.entryTimeout = seconds(k, v); break;
      case 'negative_timeout': o.negativeTimeout = seconds(k, v); break;
      case 'spin_us': o.spinUs = Math.min(num(k, v, 0), 1000); break;
      case 'writelog':
        if (v === undefined || v === '') throw new RmapfsError('EINVAL', 'mount option writelog needs a file name');
        o.writeLog = path.resolve(v);
        break;
      case 'faults':
        new FaultInjector(v ?? ''); // throws on a bad rule, before anything is mounted
        o.faults = v ?? '';
        break;
      case 'remount': o.remount = true; break;
      case 'autoheal': o.autoheal = true; break;
      case 'noautoheal': o.autoheal = false; break;
      // Kernel flags (collected above for the kernel mount) and what mount(8) and fstab hand every helper.
      case 'dirsync': case 'dev': case 'suid': case 'nodev': case 'nosuid': case 'exec': case 'noexec': case 'auto': case 'noauto':
      case 'user': case 'nouser': case 'defaults': case '_netdev': case 'nofail':
        break;
      default:
        if (k.startsWith('x-')) break; // fstab options meant for other programs (x-systemd.*)
        throw new RmapfsError('EINVAL', `unknown mount option '${k}'`);
    }
  }
  return o;
}


/**
 * Options a remount cannot change, with their names: they shaped the FUSE
 * connection or the device at mount time (as ext4 refuses to change some of
 * its options on a remount).
 */
const MOUNT_TIME_OPTIONS: readonly (readonly [keyof MountOptions, string])[] = [
  ['allowOther', 'allow_other'], ['defaultPermissions', 'default_permissions'], ['acl', 'acl'], ['uid', 'uid'], ['gid', 'gid'],
  ['maxWrite', 'max_write'], ['attrTimeout', 'attr_timeout'], ['entryTimeout', 'entry_timeout'],
  ['negativeTimeout', 'negative_timeout'], ['spinUs', 'spin_us'],
  ['writeLog', 'writelog'], ['faults', 'faults'], ['writebackCache', 'writeback_cache'],
];

/**
 * The options of a live mount after a remount with `text` (its ro/rw aside):
 * what is not named stays as it is; naming a different value of an option
 * that cannot change live refuses the whole remount.
 */
export function remountOptions(live: MountOptions, text: string): MountOptions {
  const next = parseMountOptions(text, { ...live, kernelFlags: [], remount: false });
  const fixed = MOUNT_TIME_OPTIONS.filter(([k]) => next[k] !== live[k]).map(([, name]) => name);
  if (fixed.length > 0) {
    throw new RmapfsError('EINVAL', `${fixed.join(', ')} cannot change on a remount: unmount and mount again`);
  }
  return { ...next, readOnly: live.readOnly, kernelFlags: live.kernelFlags, remount: false };
}

/**
 * Whether the FUSE connection asks for the writeback cache: not on a sync mount, whose
 * every write must be durable before write(2) returns -- with the cache a write returns
 * once it is in the page cache. (A later remount,sync cannot take the cache back, it was
 * agreed at INIT; the kernel then fsyncs after every write itself: generic_write_sync on
 * an IS_SYNC inode.)
 */
export function writebackCacheWanted(o: MountOptions): boolean {
  return o.writebackCache && !o.sync;
}

/** A finished repair in a few words, for its event. */
function repairSummary(reply: CtlReply): string {
  const count = (k: string): number => (Array.isArray(reply[k]) ? (reply[k] as unknown[]).length : 0);
  const rebuilt = count('ags') + count('freeSpace') + count('inodeBtree') + count('headers');
  const left = (reply.scrub as { problemCount?: number } | undefined)?.problemCount ?? 0;
  return `${rebuilt} AG or filesystem structures rebuilt, ${count('files')} file structures repaired, ${count('unrepairable')} refused;`
    + ` ${left} problems left`;
}

/** The options a remount can change, as `rmapfs status` shows them. */
export function describeLiveOptions(o: MountOptions): string {
  return [o.sync ? 'sync' : 'async', ...(o.dirsync ? ['dirsync'] : []), o.atime.mode,
    ...(o.atime.nodiratime ? ['nodiratime'] : []), `commit=${o.commit}`, ...(o.autoheal ? ['autoheal'] : [])].join(',');
}

export interface RunningDaemon {
  /** Resolves once the mount is usable; rejects when mounting failed. */
  ready: Promise<void>;
  /** Resolves when the daemon has unmounted and closed the filesystem. */
  done: Promise<void>;
  stop(): void;
}

/** Mounts and serves until unmounted (or stopped). */
export function startDaemon(device: string, mountpoint: string, opts: MountOptions): RunningDaemon {
  const mnt = path.resolve(mountpoint);
  const events = new DaemonEvents(mnt);
  // Set once the FUSE session exists (its repairs step aside for FUSE requests); before, nothing is found sick in use.
  let autoheal: AutoHeal = new AutoHeal({ enabled: () => false, busy: () => true, repair: async () => undefined });
  let st: fs.Stats;
  try {
    st = fs.statSync(mnt);
  } catch {
    if (mountpointDaemonGone(mnt)) throw new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint));
    throw new RmapfsError('ENOENT', `mountpoint ${mountpoint} does not exist`);
  }
  if (!st.isDirectory()) throw new RmapfsError('ENOTDIR', `mountpoint ${mountpoint} is not a directory`);
  if (isMounted(mnt)) throw new RmapfsError('EBUSY', `${mountpoint} is already a mountpoint`);
  // Test interposers go under the filesystem before it reads or writes anything.
  const faults = new FaultInjector(opts.faults);
  const writeLog = opts.writeLog === null ? null : new WriteLogRecorder(opts.writeLog, fs.statSync(device).size);
  const openFilesystem = (readOnly: boolean): Rmapfs => {
    const opened = Rmapfs.open(device, { readOnly, interposers: writeLog === null ? [faults] : [faults, writeLog] });
    opened.fs.alloc.healthEvents.listen((e) => {
      events.health(e);
      autoheal.onHealth(e);
    });
    opened.fs.onShutdown = (why) => {
      // The one line an administrator needs: on stderr (seen with -f) and in the system log.
      const line = `rmapfs: ${mnt}: ${why}; the filesystem is shut down (read-only from now on): unmount it and mount it again`;
      process.stderr.write(`${line}\n`);
      execFile('logger', ['-t', 'rmapfs', '-p', 'kern.err', line], () => undefined);
    };
    return opened;
  };
  // Replaced by a read-write open at a remount,rw of a mount that began read-only.
  let fsx: Rmapfs;
  try {
    fsx = openFilesystem(opts.readOnly);
  } catch (e) {
    writeLog?.close();
    throw e;
  }
  // Read-only now: from the start (-o ro), or since a remount,ro.
  let readOnly = opts.readOnly;
  // The options in force: a remount changes sync, dirsync, the atime policy and commit=.
  let live: MountOptions = opts;
  const ops = new LowLevelOps(fsx, {
    readOnly, sync: opts.sync, dirsync: opts.dirsync, uid: opts.uid, gid: opts.gid, atime: opts.atime,
    posixAcl: () => fuse.posixAcl,
    stillReadOnly: () => {
      followKernel();
      return readOnly;
    },
    writeBack: writebackCacheWanted(opts) ? (node) => fuse.writeBack(node) : undefined,
    invalidateAttributes: writebackCacheWanted(opts) ? (node) => { fuse.invalidateAttributes(node); } : undefined,
    killPrivs: () => fuse.killprivV2,
  });
  const kernelFlags = kernelMountFlags(opts.kernelFlags);
  const options = [`max_write=${opts.maxWrite}`, `fsname=${path.resolve(device)}`, 'subtype=rmapfs'];
  // libfuse sets these MS_* flags in its mount(2); without any it mounts nosuid,nodev.
  options.push(...kernelFlags.libfuse.filter((f) => f !== 'ro' && f !== 'rw'));
  if (opts.readOnly) options.push('ro');
  if (opts.allowOther) options.push('allow_other');
  if (opts.defaultPermissions) options.push('default_permissions');
  // POSIX ACLs make the kernel check permissions (they imply default_permissions): not under
  // no_default_permissions, which asks it not to.
  if (opts.acl && opts.defaultPermissions) options.push('posix_acl');
  options.push(writebackCacheWanted(opts) ? 'writeback_cache' : 'no_writeback_cache');
  if (opts.killprivV2) options.push('killpriv_v2');
  const fuse = new LowLevelFuse({
    attrTimeout: opts.attrTimeout, entryTimeout: opts.entryTimeout, negativeTimeout: opts.negativeTimeout, spinUs: opts.spinUs,
    onError: (op, err) => log('operation %d failed: %O', op, err),
  });
  let finished = false;
  let ctl: CtlServer | null = null;
  let repairing = false;
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => { resolveDone = resolve; });
  let commitTimer: NodeJS.Timeout | null = null;
  let stopWatchingMounts: () => void = () => undefined;

  /**
   * remount,rw of a mount that began read-only: its device is open read-only and unlocked, and a
   * dirty log was replayed in memory only. It is opened again read-write, as a rw mount opens it
   * (the image lock taken, the log replayed on disk, orphans a crash left freed, marked dirty), and
   * served from then on; the kernel's node ids and open handles are inode numbers, valid in both.
   * The read-only one goes first: it writes nothing, and a block device is held exclusively.
   */
  const reopenReadWrite = (): void => {
    fsx.close();
    try {
      fsx = openFilesystem(false);
    } catch (e) {
      fsx = openFilesystem(true); // serve on, read-only as before
      throw e;
    }
    ops.replaceFilesystem(fsx);
    log('opened %s again read-write', device);
  };
  /**
   * remount,ro: no change is accepted from now on, everything is written in
   * place and the filesystem marked clean; remount,rw: changes again.
   */
  const remount = (wantReadOnly: boolean): void => {
    if (wantReadOnly === readOnly || finished) return;
    if (wantReadOnly) {
      readOnly = true;
      ops.update({ readOnly: true });
      fsx.fs.remountReadOnly(fsx.orphanCount > 0);
    } else {
      if (fsx.fs.readOnly) reopenReadWrite();
      else fsx.fs.remountReadWrite();
      readOnly = false;
      ops.update({ readOnly: false });
    }
    log('remounted %s', readOnly ? 'ro' : 'rw');
  };
  /** Forces the log every commit= seconds (also on a read-only mount: a remount,rw may come). */
  function startCommitTimer(): void {
    if (commitTimer !== null) clearInterval(commitTimer);
    commitTimer = setInterval(() => {
      if (readOnly) return;
      try {
        fsx.fsync();
      } catch (e) {
        log('log force failed: %O', e);
      }
    }, live.commit * 1000);
  }
  /** A remount's options (see remountOptions): in force from the next request on. */
  const applyOptions = (next: MountOptions): void => {
    ops.update({ sync: next.sync, dirsync: next.dirsync, atime: next.atime });
    const commitChanged = next.commit !== live.commit;
    live = next;
    if (commitChanged) startCommitTimer();
    log('options now %s', describeLiveOptions(live));
  };
  // The kernel's sync and atime flags as last seen (kernelDaemonFlags); null until the mount is ready.
  let kernelFlagsSeen: string | null = null;
  /**
   * Follows the kernel's idea of the mount: `mount -o remount,ro|rw` may come
   * through `rmapfs mount -o remount` (which also tells us over the control
   * socket) or as a bare mount(2), which only the mount table shows. So may
   * sync/async and the atime choices: when the kernel's change, the daemon's
   * follow (as they came with the mount: a change, not a difference).
   */
  const followKernel = (): void => {
    const entry = findMount(mnt);
    if (finished || entry === null || entry.fstype !== 'fuse.rmapfs' || entry.source !== path.resolve(device)) return;
    const flagsNow = kernelDaemonFlags(entry);
    if (kernelFlagsSeen !== null && flagsNow !== kernelFlagsSeen) {
      kernelFlagsSeen = flagsNow;
      applyOptions(remountOptions(live, flagsNow));
    }
    const kernelRo = superblockReadOnly(entry);
    if (kernelRo === readOnly) return;
    try {
      remount(kernelRo);
    } catch (e) {
      const line = `rmapfs: ${mnt}: cannot follow the remount ${kernelRo ? 'ro' : 'rw'}: ${e instanceof Error ? e.message : String(e)}`;
      process.stderr.write(`${line}\n`);
      log('%s', line);
    }
  };

  const finish = (why: string): void => {
    if (finished) return;
    finished = true;
    if (commitTimer !== null) clearInterval(commitTimer);
    stopWatchingMounts();
    autoheal.stop();
    events.close();
    ctl?.close();
    log('stopping (%s)', why);
    const close = (): void => {
      try {
        fsx.close();
      } catch (e) {
        process.stderr.write(`rmapfs: ${mnt}: closing the filesystem failed: ${e instanceof Error ? e.message : String(e)}\n`);
      }
      writeLog?.close();
      resolveDone();
    };
    fuse.unmount().then(close, () => {
      try {
        execFileSync(FUSERMOUNT, ['-uz', mnt]);
      } catch {
        // Lazy unmount failed too: the kernel will clean up when the daemon exits.
      }
      close();
    });
  };

  try {
    fuse.mount(mnt, options, ops.handlers());
  } catch (e) {
    fsx.close();
    throw new RmapfsError('EIO', `cannot mount ${mountpoint}: ${e instanceof Error ? e.message : String(e)}`);
  }
  log('mounted %s on %s', device, mnt);
  stopWatchingMounts = watchMountTable(followKernel);
  /**
   * Runs one online repair (`rmapfs repair`'s, or an automatic one): the daemon is busy meanwhile,
   * and its start and end are events. The next automatic repair waiting may start after it.
   */
  const runRepair = (asked: ReturnType<typeof requestedStructures>,
    how: { types: string[] | null; forceRebuild: boolean; measureHeap: boolean; auto: boolean },
    cancelled: () => boolean, hooks: OnlineFsckHooks): Promise<CtlReply> => {
    repairing = true;
    const what = { types: how.types === null ? null : how.types.join(','), ag: asked.agno, ino: asked.ino, forceRebuild: how.forceRebuild,
      ...(how.auto ? { automatic: true } : {}) };
    events.repair({ phase: 'started', ...what });
    return onlineRepair(fsx, asked.selected, asked.agno, {
      forceRebuild: how.forceRebuild, measureHeap: how.measureHeap, cancelled, ino: asked.ino,
    }, hooks).catch((e: unknown) => refusalFrom(e, 'repair failed: '))
      .then((reply) => {
        events.repair({ phase: 'finished', ...what, succeeded: reply.ok, ...(reply.ok ? { summary: repairSummary(reply) } : { error: reply.error ?? 'failed' }) });
        return reply;
      })
      .finally(() => {
        repairing = false;
        autoheal.idle();
      });
  };
  autoheal = new AutoHeal({
    enabled: () => live.autoheal && !readOnly && !finished,
    busy: () => repairing,
    repair: (target) => {
      const asked = requestedStructures(fsx, { cmd: 'repair', types: target.types, ag: target.ag, ino: target.ino });
      const repairedFs = fsx;
      return runRepair(asked, { types: target.types, forceRebuild: false, measureHeap: false, auto: true },
        () => finished || fsx !== repairedFs, {
          foregroundWaiting: () => fuse.requestWaiting(),
          abortReason: () => (finished ? 'the filesystem is being unmounted' : fsx !== repairedFs ? 'the filesystem was remounted read-write' : null),
          send: () => undefined,
        });
    },
  });
  ctl = startCtlServer(mnt, (req, signal, send) => {
    switch (req.cmd) {
      case 'status': {
        const s = fsx.statfs();
        return { ok: true, device: path.resolve(device), mountpoint: mnt, pid: process.pid, readOnly,
          blocks: s.blocks, freeBlocks: s.bfree, agCount: fsx.fs.geo.agCount, orphans: fsx.orphanCount,
          options: describeLiveOptions(live), internalErrors: ops.internalErrors, shutdown: fsx.fs.shutdownWhy ?? 'no',
          faultsInjected: faults.injected, requests: fuse.requestCounts(), health: healthSummary(fsx.fs.alloc),
          damaged: sickStructures(fsx.fs.alloc, isRepairable) };
      }
      case 'events': {
        // `rmapfs events`: the connection stays open, an event line each, until the client goes or the mount does.
        return new Promise<CtlReply>((resolve) => {
          const stop = events.subscribe(send, () => resolve(refusal('ESHUTDOWN', `${mnt} was unmounted`)));
          signal.addEventListener('abort', () => { stop(); resolve({ ok: true }); }, { once: true });
          send({ event: 'subscribed', mountpoint: mnt });
        });
      }
      case 'remount': {
        // `rmapfs mount -o remount,...`: first a dry run (an option that cannot change refuses it
        // before the kernel changes anything), then before the kernel's remount,rw or after the rest.
        if (req.readOnly !== undefined && typeof req.readOnly !== 'boolean') return refusal('EINVAL', 'remount: readOnly must be true or false');
        try {
          const next = remountOptions(live, typeof req.options === 'string' ? req.options : '');
          if (req.dryRun === true) return { ok: true };
          if (typeof req.readOnly === 'boolean') remount(req.readOnly);
          applyOptions(next);
        } catch (e) {
          return refusalFrom(e);
        }
        return { ok: true, readOnly, options: describeLiveOptions(live) };
      }
      case 'mark': {
        // Tests: a label in the write log, after everything written so far.
        if (writeLog === null) return refusal('EINVAL', 'this mount has no write log (mount option writelog=FILE)');
        writeLog.mark(String(req.label ?? ''));
        return { ok: true };
      }
      case 'faults': {
        // Tests: replace the device fault rules ('' or 'off': none).
        try {
          faults.set(String(req.spec ?? ''));
        } catch (e) {
          return refusalFrom(e);
        }
        return { ok: true };
      }
      case 'scrub':
      case 'repair': {
        if (req.cmd === 'repair' && readOnly) return refusal('EROFS', 'the filesystem is mounted read-only');
        // The repair scrubs what it rebuilt; a scrub beside it could read the old rmap's blocks after the
        // repair gave them back.
        if (repairing) {
          return refusal('EBUSY', req.cmd === 'scrub' ? 'a repair is running on this filesystem (it scrubs when it is done)'
            : 'a repair is already running on this filesystem');
        }
        let asked: ReturnType<typeof requestedStructures>;
        try {
          asked = requestedStructures(fsx, req);
        } catch (e) {
          return refusalFrom(e);
        }
        // A remount,rw of a read-only mount opens the image again: a scrub of the old object stops.
        const scrubbedFs = fsx;
        const hooks = {
          foregroundWaiting: () => fuse.requestWaiting(),
          abortReason: () => (finished ? 'the filesystem is being unmounted' : signal.aborted ? 'the client went away'
            : req.cmd === 'scrub' && repairing ? 'a repair started'
              : fsx !== scrubbedFs ? 'the filesystem was remounted read-write' : null),
          send,
        };
        if (req.cmd === 'scrub') {
          // In slices, so FUSE requests keep being served; it checks the filesystem as it was when it began.
          return onlineScrub(fsx, asked.selected, asked.agno, hooks, asked.ino).then((r) => ({ ok: true, ...r }),
            (e: unknown) => refusalFrom(e));
        }
        const types = Array.isArray(req.types) ? req.types.map(String) : null;
        return runRepair(asked, { types, forceRebuild: req.forceRebuild === true, measureHeap: req.measureHeap === true, auto: false },
          () => signal.aborted, hooks);
      }
      default:
        return refusal('EINVAL', `unknown command '${req.cmd}'`);
    }
  });
  startCommitTimer();
  // The kernel dropped the connection (fusermount -u, umount): finish up.
  fuse.done.then(() => finish('unmounted'), (e: unknown) => {
    log('FUSE loop failed: %O', e);
    finish('FUSE loop failed');
  });
  // The flags libfuse cannot set go on with a bind remount of the fresh mount, by mount(8) (-i: not
  // through our own helper) in a child process: this process must keep serving meanwhile.
  const ready = kernelFlags.afterMount.length === 0 ? Promise.resolve() : new Promise<void>((resolve, reject) => {
    execFile('mount', ['-i', '-o', `remount,bind,${kernelFlags.afterMount.join(',')}`, mnt], (err, _out, stderr) => {
      if (err === null) return resolve();
      finish('mount flags failed');
      reject(new RmapfsError('EIO', `cannot set ${kernelFlags.afterMount.join(',')} on ${mountpoint}: ${(stderr || err.message).trim().split('\n')[0]}`));
    });
  });
  // From here on, a change of the kernel's flags is a remount the daemon follows.
  ready.then(() => {
    const entry = findMount(mnt);
    if (entry !== null) kernelFlagsSeen = kernelDaemonFlags(entry);
  }, () => undefined);
  return { ready, done, stop: () => finish('stop') };
}
