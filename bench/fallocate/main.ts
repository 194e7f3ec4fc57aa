/**
 * bench/fallocate: the metadata-only fallocate modes at the sizes
 * (issue 15 bars, each <= 0.2 s): `fallocate -l 10G` on an empty 16 GiB
 * filesystem, a hole punched over 1 GiB of a contiguous written file, a zero
 * range over 1 GiB of written data.
 *
 * Each twice: in process (Rmapfs.fallocate, the call the FUSE handler makes;
 * wall and CPU time) and through a real mount with fallocate(1) (wall time of
 * the whole command: process start, the FUSE round trip, the daemon's work).
 * The data files are written in process first (4 x 1 GiB, one set for each
 * way). One JSON object on the last line; the load average beside it (the
 * figures on a loaded machine are inflated).
 *
 *   node dist/bench/fallocate/main.js      (make bench-fallocate)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import { failure, forceUmount, must, rmapfs, run } from '../lib/procs';

const GiB = 1 << 30;

interface Timing {
  wall_ms: number;
  cpu_ms?: number;
}

function timed(fn: () => void): Timing {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  fn();
  const wall = Number(process.hrtime.bigint() - t0) / 1e6;
  const cpu = process.cpuUsage(cpu0);
  return { wall_ms: +wall.toFixed(2), cpu_ms: +((cpu.user + cpu.system) / 1000).toFixed(2) };
}

function writeGiB(fsx: Rmapfs, name: string): number {
  const ino = fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
  const chunk = Buffer.alloc(8 << 20, 0x5a);
  for (let pos = 0; pos < GiB; pos += chunk.length) fsx.write(ino, pos, chunk);
  return ino;
}

async function mounted(cmd: string[], mnt: string): Promise<Timing> {
  const r = await run('fallocate', cmd.map((a) => (a.startsWith('@') ? path.join(mnt, a.slice(1)) : a)));
  if (r.status !== 0) throw new Error(failure('fallocate', cmd, r));
  return { wall_ms: +(r.seconds * 1000).toFixed(1) };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-bench-fallocate-'));
  const image = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const load0 = os.loadavg()[0]!;
  try {
    mkfs(image, { size: 16 * GiB });
    const fsx = Rmapfs.open(image);
    let inProcess: Record<string, Timing>;
    try {
      const t0 = Date.now();
      const files = ['contig-a', 'written-a', 'contig-b', 'written-b'].map((n) => writeGiB(fsx, n));
      fsx.fsync();
      process.stderr.write(`4 GiB written in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
      // An empty filesystem for the preallocation: the data files' 4 GiB are beside it (12 GiB free).
      const pre = fsx.create(fsx.rootIno, 'pre-a', S_IFREG | 0o644, 0, 0).ino;
      inProcess = {
        preallocate_10g: timed(() => fsx.fallocate(pre, 0, 0, 10 * GiB)),
        punch_1g: timed(() => fsx.fallocate(files[0]!, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, GiB)),
        zero_range_1g: timed(() => fsx.fallocate(files[1]!, FALLOC_FL_ZERO_RANGE, 0, GiB)),
      };
      fsx.unlink(fsx.rootIno, 'pre-a');
      fsx.fsync();
    } finally {
      fsx.close();
    }
    let viaMount: Record<string, Timing>;
    await must(process.execPath, [path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs'), 'mount', image, mnt]);
    try {
      viaMount = {
        preallocate_10g: await mounted(['-l', '10G', '@pre-b'], mnt),
        punch_1g: await mounted(['-p', '-o', '0', '-l', '1G', '@contig-b'], mnt),
        zero_range_1g: await mounted(['-z', '-o', '0', '-l', '1G', '@written-b'], mnt),
      };
      const blocks = (f: string): number => fs.statSync(path.join(mnt, f)).blocks;
      if (blocks('pre-b') !== 10 * GiB / 512 || blocks('contig-b') !== 0 || blocks('written-b') !== GiB / 512) {
        throw new Error(`unexpected st_blocks: pre-b ${blocks('pre-b')}, contig-b ${blocks('contig-b')}, written-b ${blocks('written-b')}`);
      }
    } finally {
      const r = await rmapfs(['umount', mnt], { timeoutMs: 300_000 });
      if (r.status !== 0) process.stderr.write(`${failure('rmapfs', ['umount', mnt], r)}\n`);
      forceUmount(mnt);
    }
    const check = await rmapfs(['check', image], { timeoutMs: 600_000 });
    const result = {
      bench: 'fallocate', in_process: inProcess, mounted_fallocate_cmd: viaMount, check_clean: check.status === 0,
      load_before: +load0.toFixed(2), load_after: +os.loadavg()[0]!.toFixed(2), cores: os.cpus().length,
    };
    console.log(JSON.stringify(result));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/fallocate: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
