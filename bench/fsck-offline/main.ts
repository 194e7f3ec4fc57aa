/**
 * bench/fsck-offline: offline repair of a whole filesystem, rmapfs beside
 * xfs_repair, with the same files (issue 13's bar: rmapfs within 3x).
 *
 * 1. Build an rmapfs image of about --records rmap records (bench/lib/
 *    fragmented-fs buildMixedFs: small files with real data, 30% of the
 *    records, and files of 1,000 one-block extents, each with a gap).
 * 2. `rmapfs repair --force-rebuild --json IMAGE`, timed: every AG structure
 *    rebuilt (what xfs_repair always does in its phase 5), between the
 *    offline repair's own closing scrub and its closing whole check. Its
 *    exit must be 1 (corrected: everything was rebuilt) and the check clean.
 * 3. The same files on XFS: an image of the same size, `mkfs.xfs -m
 *    rmapbt=1`, a loop device, the kernel's XFS mounted on it; the small
 *    files with the same data, each fragmented file written one 4 KiB block
 *    at every other block offset (an extent and an rmap record each, as in
 *    rmapfs); unmount.
 * 4. `xfs_repair DEV` on the loop device, timed.
 * One human line, then one JSON line. Images in $RMAPFS_BENCH_DIR (default
 * os.tmpdir()), removed at the end; the loop device is detached, the XFS
 * unmounted, also on failure.
 *
 * Usage (as root; needs xfsprogs): node dist/bench/fsck-offline/main.js
 *   [--records 1M]   rmap records to build (k, M suffixes)   [--quick]  100k
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';
import { buildMixedFs, estimateRecords, mixedPlanFor, smallFileData, SMALL_FILES_PER_DIR } from '../lib/fragmented-fs';
import type { MixedFsPlan } from '../lib/fragmented-fs';

const RMAPFS = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');
const BLOCK = 4096;
const FRAGMENTED_EXTENTS = 1000;

function parseCount(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text);
  if (m === null) throw new Error(`bad count '${text}'`);
  return Math.round(Number(m[1]) * (m[2] === '' ? 1 : /k/i.test(m[2]!) ? 1e3 : 1e6));
}

function seconds(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e9;
}

/**
 * CPU seconds (user + system) of this process's children that have ended and been waited for
 * (/proc/self/stat's cutime and cstime): around a spawnSync, that child's time -- on a shared
 * machine, the figure the load does not inflate as it does wall time.
 */
function childCpuSeconds(): number {
  // The fields after the command name (which may hold spaces) start at state, field 3; cutime is field 16.
  const fields = fs.readFileSync('/proc/self/stat', 'utf8').replace(/^.*\) /, '').split(' ');
  const ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
  return (Number(fields[16 - 3]) + Number(fields[17 - 3])) / ticks;
}

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
}

/** The same files on a mounted XFS: the small ones with rmapfs's data, the fragmented ones a block at every other offset. */
function populateXfs(mnt: string, plan: MixedFsPlan): void {
  fs.mkdirSync(path.join(mnt, 'large'));
  fs.mkdirSync(path.join(mnt, 'small'));
  const scratch = Buffer.alloc(12 * 1024);
  for (let i = 0; i < plan.smallFiles; i++) {
    const dir = path.join(mnt, 'small', `d${Math.floor(i / SMALL_FILES_PER_DIR)}`);
    if (i % SMALL_FILES_PER_DIR === 0) fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, `s${i}`), smallFileData(i, scratch));
  }
  const block = Buffer.alloc(BLOCK, 0x5a);
  for (let f = 0; f < plan.fragmentedFiles; f++) {
    const fd = fs.openSync(path.join(mnt, 'large', `f${f}`), 'w');
    try {
      for (let e = 0; e < plan.fragmentedExtents; e++) fs.writeSync(fd, block, 0, BLOCK, e * 2 * BLOCK);
      // Written now, extent by extent (delayed allocation would still leave one extent per block: the gaps).
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}

/** XFS's rmap records, summed over its AGs: the leaf records of each AG's rmap btree, as xfs_db's btdump lists them. */
function xfsRmapRecords(dev: string): number | null {
  try {
    const agcount = Number(/agcount = (\d+)/.exec(run('xfs_db', ['-r', '-c', 'sb 0', '-c', 'print agcount', dev]))?.[1]);
    let total = 0;
    for (let a = 0; a < agcount; a++) {
      // A block's header line says its level; its entries are numbered lines ("12:[...]").
      let level = -1;
      for (const line of run('xfs_db', ['-r', '-c', `agf ${a}`, '-c', 'addr rmaproot', '-c', 'btdump', dev]).split('\n')) {
        const header = /^rmapbt level (\d+)/.exec(line);
        if (header !== null) level = Number(header[1]);
        else if (level === 0 && /^\d+:\[/.test(line.trim())) total++;
      }
    }
    return total;
  } catch {
    return null;
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const at = argv.indexOf('--records');
  const records = at >= 0 ? parseCount(argv[at + 1]!) : argv.includes('--quick') ? 100_000 : 1_000_000;
  const dir = fs.mkdtempSync(path.join(process.env.RMAPFS_BENCH_DIR ?? os.tmpdir(), 'rmapfs-bench-fsck-offline-'));
  const image = path.join(dir, 'rmapfs.img');
  const xfsImage = path.join(dir, 'xfs.img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  let loop: string | null = null;
  let mounted = false;
  try {
    const plan = mixedPlanFor(records, 0.3, FRAGMENTED_EXTENTS);
    process.stderr.write(`building ${plan.smallFiles} small files and ${plan.fragmentedFiles} files of ${plan.fragmentedExtents} extents `
      + `(about ${estimateRecords(plan)} rmap records)\n`);
    let t0 = process.hrtime.bigint();
    buildMixedFs(image, plan).close();
    const buildS = seconds(t0);
    const size = fs.statSync(image).size;
    process.stderr.write(`  rmapfs built in ${buildS.toFixed(1)} s (${(size / 2 ** 20).toFixed(0)} MiB image)\n`);

    // Each side is timed with nothing of its own still being written back (the build's dirty pages).
    run('sync', []);
    let cpu0 = childCpuSeconds();
    t0 = process.hrtime.bigint();
    const repair = spawnSync(RMAPFS, ['repair', '--force-rebuild', '--json', image], { encoding: 'utf8', maxBuffer: 64 << 20 });
    const rmapfsS = seconds(t0);
    const rmapfsCpuS = childCpuSeconds() - cpu0;
    const rmapfsLoad = os.loadavg()[0]!;
    const reply = JSON.parse(repair.stdout.trim().split('\n').pop() ?? '{}') as { status?: number; clean?: boolean; ags?: { records: number }[] };
    const rmapRecords = (reply.ags ?? []).reduce((n, a) => n + a.records, 0);
    process.stderr.write(`  rmapfs repair --force-rebuild: ${rmapfsS.toFixed(2)} s (CPU ${rmapfsCpuS.toFixed(2)} s, load ${rmapfsLoad.toFixed(1)}), `
      + `exit ${repair.status} (${rmapRecords} rmap records rebuilt)\n`);
    if (repair.status !== 1 || reply.clean !== true) throw new Error(`rmapfs repair: exit ${repair.status}: ${repair.stderr.trim()}`);
    fs.rmSync(image);

    t0 = process.hrtime.bigint();
    fs.writeFileSync(xfsImage, '');
    fs.truncateSync(xfsImage, size);
    run('mkfs.xfs', ['-q', '-f', '-m', 'rmapbt=1', xfsImage]);
    loop = run('losetup', ['-f', '--show', xfsImage]).trim();
    run('mount', ['-t', 'xfs', loop, mnt]);
    mounted = true;
    populateXfs(mnt, plan);
    run('umount', [mnt]);
    mounted = false;
    process.stderr.write(`  xfs built in ${seconds(t0).toFixed(1)} s\n`);
    const xfsRecords = xfsRmapRecords(loop);
    run('sync', []);
    cpu0 = childCpuSeconds();
    t0 = process.hrtime.bigint();
    const xr = spawnSync('xfs_repair', [loop], { encoding: 'utf8' });
    const xfsS = seconds(t0);
    const xfsCpuS = childCpuSeconds() - cpu0;
    const xfsLoad = os.loadavg()[0]!;
    process.stderr.write(`  xfs_repair: ${xfsS.toFixed(2)} s (CPU ${xfsCpuS.toFixed(2)} s, load ${xfsLoad.toFixed(1)}), exit ${xr.status}`
      + `${xfsRecords === null ? '' : ` (${xfsRecords} rmap records)`}\n`);
    if (xr.status !== 0) throw new Error(`xfs_repair: exit ${xr.status}: ${xr.stderr.trim().split('\n').pop()}`);

    const ratio = rmapfsS / xfsS;
    const cpuRatio = rmapfsCpuS / xfsCpuS;
    process.stdout.write(`fsck-offline ${records}: rmapfs repair --force-rebuild ${rmapfsS.toFixed(2)} s, xfs_repair ${xfsS.toFixed(2)} s: `
      + `${ratio.toFixed(2)}x (bar 3x: ${ratio <= 3 ? 'PASS' : 'FAIL'}); CPU ${rmapfsCpuS.toFixed(2)} s vs ${xfsCpuS.toFixed(2)} s: `
      + `${cpuRatio.toFixed(2)}x; load ${rmapfsLoad.toFixed(1)} / ${xfsLoad.toFixed(1)}\n`);
    process.stdout.write(`${JSON.stringify({
      bench: 'fsck-offline', records, rmap_records: rmapRecords, xfs_rmap_records: xfsRecords, small_files: plan.smallFiles,
      fragmented_files: plan.fragmentedFiles, image_mib: Math.round(size / 2 ** 20), build_s: +buildS.toFixed(2),
      rmapfs_repair_s: +rmapfsS.toFixed(2), xfs_repair_s: +xfsS.toFixed(2), ratio: +ratio.toFixed(2), pass: ratio <= 3,
      rmapfs_cpu_s: +rmapfsCpuS.toFixed(2), xfs_repair_cpu_s: +xfsCpuS.toFixed(2), cpu_ratio: +cpuRatio.toFixed(2),
      rmapfs_load_average: +rmapfsLoad.toFixed(2), xfs_load_average: +xfsLoad.toFixed(2), load_average: +os.loadavg()[0]!.toFixed(2),
    })}\n`);
  } finally {
    if (mounted) spawnSync('umount', [mnt]);
    if (loop !== null) spawnSync('losetup', ['-d', loop]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/fsck-offline: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
