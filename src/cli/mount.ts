/**
 * `rmapfs mount [-o OPTIONS] [-f] DEVICE MOUNTPOINT` and `rmapfs umount MOUNTPOINT`.
 *
 * Without -f the command starts the daemon as a detached child and returns
 * once the mount is usable (or with the daemon's one-line error). `umount`
 * unmounts and waits until the daemon has written everything and let go of
 * the device, so a `check` right after it sees a clean filesystem.
 */
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import { RmapfsError } from '../errors';
import { Device } from '../io/device';
import { parseMountOptions, startDaemon } from '../fuse/daemon';
import { findMount } from '../fuse/mountinfo';
import { parseArgs } from './args';
import type { Command, CommandIo } from './args';

const MOUNT_USAGE = `usage: rmapfs mount [-o OPTIONS] [-f] DEVICE MOUNTPOINT

Mounts an rmapfs device or image file. Runs in the background and returns
once the mount is usable; -f keeps it in the foreground (log with DEBUG=rmapfs:*).

options (-o, comma separated):
  ro, rw                   read-only / read-write (default)
  allow_other              let other users in (needs user_allow_other for non-root)
  default_permissions      the kernel checks permissions (default on;
                           no_default_permissions turns it off)
  uid=N, gid=N             owner of everything created (default: the process that creates it)
  sync                     every change is durable before it is answered (a failed flush is its error)
  dirsync                  the same for directory changes only (create, mkdir, unlink, rename, link, ...)
  commit=SECONDS           journal flush interval (default 5)
  max_write=BYTES          largest write request (default 131072; big_writes is always on)
  attr_timeout=S, entry_timeout=S   kernel attribute / name cache time (default 1)
  spin_us=N                how long the FUSE loop keeps reading before it sleeps (default 30;
                           0 saves CPU on an idle-heavy machine, costs latency)

exit status: 0 mounted, 1 refused or failed, 2 usage error.`;

const UMOUNT_USAGE = `usage: rmapfs umount MOUNTPOINT

Unmounts an rmapfs mount and waits until its daemon has flushed everything,
marked the filesystem clean and let go of the device.`;

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
    const [device, mountpoint] = args.expectPositionals(['DEVICE', 'MOUNTPOINT']) as [string, string];
    const optionText = args.strings('options').join(',');
    parseMountOptions(optionText); // a bad option is refused here, before anything starts
    if (args.flag('foreground')) return foreground(device, mountpoint, optionText, io);
    return background(device, mountpoint, optionText, io);
  },
};

/** Waits until nobody holds the device's lock (the daemon has exited). */
async function waitForRelease(device: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    let d: Device | null = null;
    try {
      d = new Device(device, { readOnly: true });
      d.lock();
      return true;
    } catch (e) {
      if (!(e instanceof RmapfsError) || e.code !== 'EBUSY') return true; // gone, or not ours to wait for
    } finally {
      d?.close();
    }
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
    const r = spawnSync('fusermount', ['-u', entry.mountpoint], { encoding: 'utf8' });
    if (r.status !== 0) {
      io.err(`rmapfs: cannot unmount ${mountpoint}: ${(r.stderr || r.error?.message || 'fusermount failed').trim().split('\n')[0]}`);
      return 1;
    }
    if (!(await waitForRelease(entry.source, 60_000))) {
      io.err(`rmapfs: ${mountpoint} is unmounted, but its daemon has not finished after 60 s`);
      return 1;
    }
    return 0;
  },
};
