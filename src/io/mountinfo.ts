/** What is mounted where, from /proc/self/mountinfo. */
import * as fs from 'fs';
import * as path from 'path';

export interface MountEntry {
  mountpoint: string;
  fstype: string;
  source: string;
  /** The mount's own flags (ro/rw, nosuid, nodev, noexec, relatime, ...). */
  mountOptions: string[];
  /** The superblock's options (ro/rw, then the filesystem's: user_id=, ...). */
  superOptions: string[];
}

function unescapeMount(s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Every mount of this process's namespace, in mount order (per /proc/self/mountinfo). */
export function listMounts(): MountEntry[] {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const mounts: MountEntry[] = [];
  for (const line of text.split('\n')) {
    const fields = line.split(' ');
    const dash = fields.indexOf('-');
    if (dash < 0 || fields[4] === undefined) continue;
    mounts.push({ mountpoint: unescapeMount(fields[4]), fstype: fields[dash + 1] ?? '',
      source: unescapeMount(fields[dash + 2] ?? ''), mountOptions: (fields[5] ?? '').split(','),
      superOptions: (fields[dash + 3] ?? '').split(',') });
  }
  return mounts;
}

/** The mount at exactly this path (per /proc/self/mountinfo), or null. */
export function findMount(mountpoint: string): MountEntry | null {
  const want = path.resolve(mountpoint);
  let found: MountEntry | null = null;
  for (const m of listMounts()) if (m.mountpoint === want) found = m;
  return found; // the last one: the mount on top
}

export function isMounted(mountpoint: string): boolean {
  return findMount(mountpoint) !== null;
}

/**
 * Whether the filesystem itself is read-only (mount -o remount,ro). A bind
 * mount's own "ro" (mount -o remount,bind,ro) is not: other mounts of it may write.
 */
export function superblockReadOnly(entry: MountEntry): boolean {
  return entry.superOptions.includes('ro');
}

/**
 * The kernel flags of a mount that the daemon also acts on, as mount option
 * text: sync (a superblock flag) and the atime choices (the mount's own; no
 * relatime and no noatime is strictatime). dirsync is left out: the kernel
 * changes it on no remount.
 */
export function kernelDaemonFlags(entry: MountEntry): string {
  const m = entry.mountOptions;
  return [entry.superOptions.includes('sync') ? 'sync' : 'async',
    m.includes('noatime') ? 'noatime' : m.includes('relatime') ? 'relatime' : 'strictatime',
    m.includes('nodiratime') ? 'nodiratime' : 'diratime'].join(',');
}

/**
 * Whether `mountpoint` is an rmapfs mount whose daemon is gone (killed,
 * crashed): the kernel answers ENOTCONN ("Transport endpoint is not
 * connected"). statfs, because it always asks the daemon (a stat may be
 * answered from the kernel's attribute cache).
 */
export function mountpointDaemonGone(mountpoint: string): boolean {
  const entry = findMount(mountpoint);
  if (entry === null || entry.fstype !== 'fuse.rmapfs') return false;
  try {
    fs.statfsSync(entry.mountpoint);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOTCONN';
  }
}

export function daemonGoneMessage(mountpoint: string): string {
  return `${mountpoint} is an rmapfs mount whose daemon is gone: rmapfs umount ${mountpoint}`;
}
