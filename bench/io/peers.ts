/**
 * The filesystems bench/io compares, each behind one interface: kernel ext4
 * and kernel XFS (-m rmapbt=1) on a loop device over an image file, fuse2fs
 * (ext4 over FUSE, libfuse 2), rmapfs (bin/rmapfs of this checkout, whatever
 * binding is built) and the floor (bench/io/floor.ts: a trivial in-memory
 * filesystem on our binding). The images are sparse files of one size in one
 * directory.
 */
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { RMAPFS_BIN, firstLine, isMounted, must, rmapfs, sleep } from '../lib/procs';

export const PEER_NAMES = ['ext4', 'xfs', 'fuse2fs', 'rmapfs', 'floor'] as const;
export type PeerName = typeof PEER_NAMES[number];

export interface Peer {
  readonly name: PeerName;
  readonly mnt: string;
  /**
   * False for the floor: its files live in the server's memory, so its
   * "unmount" keeps it serving and a "fresh mount" is the caches dropped.
   */
  readonly persistent: boolean;
  mkfs(): Promise<void>;
  mount(): Promise<void>;
  umount(): Promise<void>;
  /** The serving daemon's pid (rmapfs, fuse2fs, floor) while mounted, else null. */
  daemonPid(): number | null;
  /** After a failed workload: unmount what it left mounted, keep the image (and loop device). */
  release(): void;
  /** Synchronous last resort (signal handlers, finally): unmount, detach, stop. */
  cleanup(): void;
}

/** Pids of processes whose argv holds every one of `words` (exact arguments or basenames). */
function findProcesses(words: readonly string[]): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (words.every((w) => argv.some((a) => a === w || path.basename(a) === w))) pids.push(Number(entry));
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitGone(pids: readonly number[], timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > until) return false;
    await sleep(100);
  }
  return true;
}

async function waitMounted(mnt: string, what: string): Promise<void> {
  const until = Date.now() + 10_000;
  while (!isMounted(mnt)) {
    if (Date.now() > until) throw new Error(`${what} returned but ${mnt} is not mounted`);
    await sleep(50);
  }
}

async function sparseImage(image: string, size: string): Promise<void> {
  fs.rmSync(image, { force: true });
  await must('truncate', ['-s', size, image]);
}

/** Unmounts whatever is at mnt, lazily if it must (root may umount any FUSE mount). */
function umountSync(mnt: string): void {
  if (isMounted(mnt)) spawnSync('umount', [mnt], { stdio: 'ignore', timeout: 180_000 });
  if (isMounted(mnt)) spawnSync('umount', ['-l', mnt], { stdio: 'ignore' });
}

/** Kernel ext4 or XFS on a loop device over an image file. */
function kernelPeer(name: 'ext4' | 'xfs', dir: string, size: string): Peer {
  const image = path.join(dir, `${name}.img`);
  const mnt = path.join(dir, `mnt-${name}`);
  let loop: string | null = null;
  return {
    name, mnt, persistent: true,
    async mkfs() {
      await sparseImage(image, size);
      loop = (await must('losetup', ['--find', '--show', image])).stdout.trim();
      if (name === 'ext4') await must('mkfs.ext4', ['-F', '-q', loop]);
      else await must('mkfs.xfs', ['-f', '-q', '-m', 'rmapbt=1', loop]);
    },
    async mount() {
      if (loop === null) throw new Error(`${name}: mount before mkfs`);
      await must('mount', [loop, mnt]);
    },
    async umount() {
      await must('umount', [mnt], { timeoutMs: 180_000 });
    },
    daemonPid: () => null,
    release: () => umountSync(mnt),
    cleanup() {
      umountSync(mnt);
      if (loop !== null) spawnSync('losetup', ['-d', loop], { stdio: 'ignore' });
      loop = null;
    },
  };
}

function fuse2fsPeer(dir: string, size: string): Peer {
  const image = path.join(dir, 'fuse2fs.img');
  const mnt = path.join(dir, 'mnt-fuse2fs');
  const pids = (): number[] => findProcesses(['fuse2fs', image, mnt]);
  return {
    name: 'fuse2fs', mnt, persistent: true,
    async mkfs() {
      await sparseImage(image, size);
      await must('mkfs.ext4', ['-F', '-q', image]);
    },
    async mount() {
      // fuse2fs daemonizes once the mount is in place.
      await must('fuse2fs', [image, mnt, '-o', 'fakeroot'], { timeoutMs: 120_000 });
      await waitMounted(mnt, 'fuse2fs');
    },
    async umount() {
      const before = pids();
      await must('umount', [mnt], { timeoutMs: 180_000 });
      // The flush is only over when the daemon has written everything and exited.
      if (!(await waitGone(before, 180_000))) throw new Error(`fuse2fs for ${mnt} did not exit`);
    },
    daemonPid: () => pids()[0] ?? null,
    release: () => umountSync(mnt),
    cleanup: () => umountSync(mnt),
  };
}

function rmapfsPeer(dir: string, size: string, options: string): Peer {
  const image = path.join(dir, 'rmapfs.img');
  const mnt = path.join(dir, 'mnt-rmapfs');
  const pids = (): number[] => findProcesses(['mount', '-f', image, mnt]);
  return {
    name: 'rmapfs', mnt, persistent: true,
    async mkfs() {
      fs.rmSync(image, { force: true });
      await must(process.execPath, [RMAPFS_BIN, 'mkfs', '--size', size, image]);
    },
    async mount() {
      await must(process.execPath, [RMAPFS_BIN, 'mount', ...(options === '' ? [] : ['-o', options]), image, mnt], { timeoutMs: 120_000 });
      if (!isMounted(mnt)) throw new Error(`rmapfs mount returned but ${mnt} is not mounted`);
      if (pids().length !== 1) throw new Error(`expected one rmapfs daemon for ${image}, found ${pids().length}`);
    },
    async umount() {
      const before = pids();
      const r = await rmapfs(['umount', mnt], { timeoutMs: 180_000 });
      if (r.status !== 0) throw new Error(`rmapfs umount ${mnt}: ${firstLine(r.stderr)}`);
      if (!(await waitGone(before, 60_000))) throw new Error(`the rmapfs daemon for ${mnt} did not exit`);
    },
    daemonPid: () => pids()[0] ?? null,
    release() {
      this.cleanup();
    },
    cleanup() {
      if (isMounted(mnt)) spawnSync(process.execPath, [RMAPFS_BIN, 'umount', mnt], { stdio: 'ignore', timeout: 120_000 });
      umountSync(mnt);
    },
  };
}

const FLOOR_SERVER = path.join(__dirname, 'floor.js');

function floorPeer(dir: string): Peer {
  const mnt = path.join(dir, 'mnt-floor');
  let server: ChildProcess | null = null;
  return {
    name: 'floor', mnt, persistent: false,
    async mkfs() {
      // Nothing to format: a new server starts empty.
    },
    async mount() {
      if (server !== null && server.exitCode === null && isMounted(mnt)) return;
      const child = spawn(process.execPath, [FLOOR_SERVER, mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
      server = child;
      await new Promise<void>((resolve, reject) => {
        let out = '';
        child.once('exit', (code) => reject(new Error(`the floor server exited (${code}) before mounting`)));
        child.stdout?.setEncoding('utf8').on('data', (d: string) => {
          out += d;
          if (out.includes('ready\n')) resolve();
        });
      });
      await waitMounted(mnt, 'the floor server');
    },
    async umount() {
      // Stays mounted: its files would be gone. The caller drops the kernel's caches instead.
    },
    daemonPid: () => (server !== null && server.exitCode === null ? server.pid ?? null : null),
    release() {
      // Still serving what the workloads before left; nothing to undo.
    },
    cleanup() {
      umountSync(mnt);
      if (server !== null && server.exitCode === null) server.kill('SIGKILL');
      server = null;
    },
  };
}

/** `rmapfsOptions`: what rmapfs's mount gets after -o ('' for none). */
export function makePeer(name: PeerName, dir: string, size: string, rmapfsOptions = ''): Peer {
  switch (name) {
    case 'ext4':
    case 'xfs':
      return kernelPeer(name, dir, size);
    case 'fuse2fs':
      return fuse2fsPeer(dir, size);
    case 'rmapfs':
      return rmapfsPeer(dir, size, rmapfsOptions);
    case 'floor':
      return floorPeer(dir);
  }
}
