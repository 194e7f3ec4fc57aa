/**
 * `rmapfs mount [-o OPTIONS] [-f] DEVICE MOUNTPOINT` and `rmapfs umount MOUNTPOINT`.
 *
 * Without -f the command starts the daemon as a detached child and returns
 * once the mount is usable (or with the daemon's one-line error). `umount`
 * unmounts and waits until the daemon has written everything and let go of
 * the device, so a `check` right after it sees a clean filesystem.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { RmapfsError } from '../errors';
import { Device, loopBackingFile } from '../io/device';
import { kernelMountFlags, parseMountOptions, startDaemon } from '../daemon/daemon';
import { daemonGoneMessage, findMount, listMounts, mountpointDaemonGone, superblockReadOnly } from '../io/mountinfo';
import { ctlRequest } from '../ctl/ctl';
import { FUSERMOUNT } from '../fuse/lowlevel';
import { parseArgs } from './args';
import type { Command, CommandIo } from './args';

const MOUNT_USAGE = `usage: rmapfs mount [-o OPTIONS] [-f] DEVICE MOUNTPOINT
       rmapfs mount -o remount,OPTIONS [DEVICE] MOUNTPOINT

Mounts an rmapfs device or image file. Runs in the background and returns
once the mount is usable; -f keeps it in the foreground (log with DEBUG=rmapfs:*).

options (-o, comma separated):
  ro, rw                   read-only / read-write (default)
  remount                  change a live mount: ro/rw, the kernel flags below, sync, dirsync,
                           the atime choices, commit=, autoheal; the other options cannot change live
  nosuid, suid, nodev, dev, noexec, exec, sync, async, dirsync,
  relatime, strictatime, noatime, atime, nodiratime
                           kernel mount flags (default nosuid,nodev,relatime)
  nonempty                 accepted and ignored: a non-empty mountpoint is always allowed
  allow_other              let other users in (needs user_allow_other for non-root)
  default_permissions      the kernel checks permissions (default on;
                           no_default_permissions turns it off, and ACLs with it)
  acl, noacl               POSIX ACLs (setfacl/getfacl), enforced by the kernel (default acl;
                           noacl refuses the system.posix_acl_* attributes with EOPNOTSUPP)
  uid=N, gid=N             owner of everything created (default: the process that creates it)
  sync                     every change is durable before it is answered (a failed flush is its error)
  dirsync                  the same for directory changes only (create, mkdir, unlink, rename, link, ...)
  commit=SECONDS           journal flush interval (default 5)
  max_write=BYTES          largest write request, up to 1048576 (default 131072)
  attr_timeout=S, entry_timeout=S, negative_timeout=S
                           seconds the kernel may cache attributes, a name's inode, a name's
                           absence before asking again (default 1 each; fractions allowed, 0: always ask)
  writeback_cache, no_writeback_cache
                           the kernel's writeback cache (default on; never with sync): writes wait
                           in the page cache; one refused at writeback (ENOSPC, EIO) is reported
                           by the next write(2) to the file, fsync and close, and its data is lost
  killpriv_v2, no_killpriv_v2
                           the daemon clears suid/sgid/capabilities on write, truncate and chown
                           (default on: spares each write(2) a round trip; off: the kernel does)
  autoheal, noautoheal     repair online, by itself, a structure found damaged in use (the
                           operation that found it gets its error once; default noautoheal for now)
  spin_us=N                how long the FUSE loop keeps reading before it sleeps (default 30;
                           0 saves CPU on an idle-heavy machine, costs latency)

exit status: 0 mounted, 1 refused or failed, 2 usage error.`;

const UMOUNT_USAGE = `usage: rmapfs umount MOUNTPOINT

Unmounts an rmapfs mount and waits until its daemon has flushed everything,
marked the filesystem clean and let go of the device.`;

/**
 * Options of the FUSE superblock that are not ours: mount(8) hands them back on a remount.
 * (It hands back allow_other and default_permissions too: ours, and unchanged then.)
 */
const FUSE_SUPERBLOCK_OPTIONS = new Set(['user_id', 'group_id', 'rootmode', 'max_read', 'blksize', 'fd']);

/** The message a background daemon sends its parent over IPC. */
interface ReadyMessage {
  ready?: boolean;
  error?: string;
}

async function foreground(device: string, mountpoint: string, optionText: string, io: CommandIo): Promise<number> {
  const opts = parseMountOptions(optionText);
  const notify = process.env.RMAPFS_DAEMON_NOTIFY === '1' && typeof process.send === 'function';
  const tell = (m: ReadyMessage): void => {
    if (notify) {
      process.send!(m);
      process.disconnect?.();
    }
  };
  let daemon;
  try {
    daemon = startDaemon(device, mountpoint, opts);
    await daemon.ready;
  } catch (e) {
    tell({ error: e instanceof Error ? e.message : String(e) });
    throw e;
  }
  tell({ ready: true });
  const stop = (): void => daemon.stop();
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', stop);
  if (!notify) io.err(`rmapfs: ${device} mounted on ${path.resolve(mountpoint)} (Ctrl-C or 'rmapfs umount' to unmount)`);
  await daemon.done;
  // fuse-native keeps handles open after unmounting: end the daemon process here.
  process.exit(0);
}

async function background(device: string, mountpoint: string, optionText: string, io: CommandIo): Promise<number> {
  const script = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');
  // --expose-gc: online repair reports its heap growth after a forced GC.
  const child = spawn(process.execPath, ['--expose-gc', script, 'mount', '-f', '-o', optionText || 'rw', device, mountpoint], {
    detached: true,
    stdio: ['ignore', 'ignore', 'ignore', 'ipc'],
    env: { ...process.env, RMAPFS_DAEMON_NOTIFY: '1' },
  });
  const result = await new Promise<ReadyMessage>((resolve) => {
    child.once('message', (m) => resolve(m as ReadyMessage));
    child.once('exit', (code) => resolve({ error: `the daemon exited (status ${code ?? 'killed'}) before mounting` }));
    child.once('error', (e) => resolve({ error: e.message }));
  });
  child.unref();
  if (child.connected) child.disconnect();
  if (result.ready !== true) {
    io.err(`rmapfs: ${result.error ?? 'mount failed'}`);
    return 1;
  }
  return 0;
}

/**
 * `mount -o remount,...` of a live mount (what mount(8) asks of our helper,
 * mount.fuse.rmapfs). The kernel's flags change through mount(8) -i (not our
 * helper again); the daemon learns ro/rw and its own options (sync, atime,
 * commit=, ...) over the control socket: first a dry run, which refuses
 * options that cannot change live before anything changed; then rw before
 * the kernel lets writes in, ro after it has stopped them (so that when this
 * returns a read-only filesystem is clean on disk).
 */
async function remountLive(mountpoint: string, optionText: string, io: CommandIo): Promise<number> {
  const opts = parseMountOptions(optionText);
  const entry = findMount(mountpoint);
  if (entry === null || entry.fstype !== 'fuse.rmapfs' || entry.mountpoint !== path.resolve(mountpoint)) {
    throw new RmapfsError('EINVAL', `${mountpoint} is not an rmapfs mount`);
  }
  if (mountpointDaemonGone(mountpoint)) throw new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint));
  const { chosen } = kernelMountFlags(opts.kernelFlags);
  const wantReadOnly = chosen.includes('ro') ? true : chosen.includes('rw') ? false : null;
  const tellDaemon = async (readOnly: boolean | null, dryRun = false): Promise<void> => {
    const reply = await ctlRequest(mountpoint, { cmd: 'remount', options: optionText, dryRun, ...(readOnly === null ? {} : { readOnly }) });
    if (!reply.ok) {
      const how = readOnly === null ? '' : readOnly ? ' ro' : ' rw';
      throw new RmapfsError(reply.code ?? (dryRun ? 'EINVAL' : 'EIO'), `cannot remount ${mountpoint}${how}: ${String(reply.error)}`);
    }
  };
  await tellDaemon(wantReadOnly, true);
  if (wantReadOnly === false) await tellDaemon(false);
  const r = spawnSync('mount', ['-i', '-o', ['remount', ...chosen].join(','), entry.mountpoint], { encoding: 'utf8' });
  if (r.status !== 0) {
    // The kernel kept its flags: the daemon follows whatever it has.
    const now = findMount(mountpoint);
    if (wantReadOnly === false && now !== null && superblockReadOnly(now)) await tellDaemon(true).catch(() => undefined);
    const why = (r.stderr || r.error?.message || 'mount failed').trim().split('\n')[0] ?? '';
    io.err(`rmapfs: cannot remount ${mountpoint}: ${why.replace(/^mount: [^:]*: /, '')}`);
    return 1;
  }
  if (wantReadOnly !== false) await tellDaemon(wantReadOnly);
  return 0;
}

/** A file or device by what holds its blocks: a loop device is its backing file. */
function storageIdentity(p: string): string | null {
  try {
    const st = fs.statSync(p);
    if (st.isBlockDevice()) {
      const backing = loopBackingFile(p);
      if (backing === null) return `blk:${st.rdev}`;
      const b = fs.statSync(backing);
      return `file:${b.dev}:${b.ino}`;
    }
    return `file:${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** Whether nobody holds the device's lock now (an error other than EBUSY: not ours to wait for). */
function deviceLockFree(device: string): boolean {
  let d: Device | null = null;
  try {
    d = new Device(device, { readOnly: true });
    d.lock();
    return true;
  } catch (e) {
    return !(e instanceof RmapfsError && e.code === 'EBUSY');
  } finally {
    d?.close();
  }
}

const PREVIOUS_DAEMON_WAIT_MS = 30_000;

/**
 * umount(8) returns once the kernel lets go of a mount, while its daemon still
 * writes its last changes and holds the device's lock: a mount of the same
 * device right after it waits for that daemon (saying so after a second)
 * instead of failing. A device some mount still uses is not waited for.
 */
async function waitForPreviousDaemon(device: string, io: CommandIo): Promise<void> {
  const id = storageIdentity(device);
  if (id === null) return; // no such device: the mount says so
  if (listMounts().some((m) => m.fstype === 'fuse.rmapfs' && storageIdentity(m.source) === id)) return;
  const start = Date.now();
  let told = false;
  while (!deviceLockFree(device)) {
    const waited = Date.now() - start;
    if (waited >= PREVIOUS_DAEMON_WAIT_MS) {
      throw new RmapfsError('EBUSY', `${device} is still in use by another rmapfs after ${PREVIOUS_DAEMON_WAIT_MS / 1000} s`);
    }
    if (!told && waited >= 1000) {
      io.err(`rmapfs: waiting for the previous rmapfs of ${device} to finish writing`);
      told = true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const mountCommand: Command = {
  name: 'mount',
  summary: 'mount a filesystem (FUSE)',
  usage: MOUNT_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, [{ name: 'options', short: 'o', kind: 'value', repeat: true }, { name: 'foreground', short: 'f', kind: 'flag' }]);
    if (args.flag('help')) {
      io.out(MOUNT_USAGE);
      return 0;
    }
    let optionText = args.strings('options').join(',');
    const items = optionText.split(',').map((o) => o.trim());
    if (items.includes('remount')) {
      // mount(8) hands back every option the mount shows, the FUSE superblock's too: not ours to change.
      optionText = items.filter((o) => !FUSE_SUPERBLOCK_OPTIONS.has(o.split('=')[0] ?? '')).join(',');
      const positionals = args.positionals;
      if (positionals.length < 1 || positionals.length > 2) throw new RmapfsError('EINVAL', 'usage: rmapfs mount -o remount,OPTIONS [DEVICE] MOUNTPOINT');
      return remountLive(positionals[positionals.length - 1]!, optionText, io);
    }
    const [device, mountpoint] = args.expectPositionals(['DEVICE', 'MOUNTPOINT']) as [string, string];
    parseMountOptions(optionText); // a bad option is refused here, before anything starts
    if (mountpointDaemonGone(mountpoint)) throw new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint));
    await waitForPreviousDaemon(device, io);
    if (args.flag('foreground')) return foreground(device, mountpoint, optionText, io);
    return background(device, mountpoint, optionText, io);
  },
};

/** Waits until nobody holds the device's lock (the daemon has exited). */
async function waitForRelease(device: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (deviceLockFree(device)) return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

export const umountCommand: Command = {
  name: 'umount',
  summary: 'unmount, and wait for the daemon to finish',
  usage: UMOUNT_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, []);
    if (args.flag('help')) {
      io.out(UMOUNT_USAGE);
      return 0;
    }
    const [mountpoint] = args.expectPositionals(['MOUNTPOINT']) as [string];
    const entry = findMount(mountpoint);
    if (entry === null || entry.fstype !== 'fuse.rmapfs') {
      throw new RmapfsError('EINVAL', `${mountpoint} is not an rmapfs mount`);
    }
    let r = spawnSync(FUSERMOUNT, ['-u', entry.mountpoint], { encoding: 'utf8' });
    // A mount whose daemon is gone has nothing left to write: detach it even while something still uses it.
    if (r.status !== 0 && mountpointDaemonGone(entry.mountpoint)) r = spawnSync(FUSERMOUNT, ['-uz', entry.mountpoint], { encoding: 'utf8' });
    if (r.status !== 0) {
      io.err(`rmapfs: cannot unmount ${mountpoint}: ${(r.stderr || r.error?.message || `${FUSERMOUNT} failed`).trim().split('\n')[0]}`);
      return 1;
    }
    if (!(await waitForRelease(entry.source, 60_000))) {
      io.err(`rmapfs: ${mountpoint} is unmounted, but its daemon has not finished after 60 s`);
      return 1;
    }
    return 0;
  },
};
