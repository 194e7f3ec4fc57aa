/**
 * bench/dir-repair: online salvage of one big directory with a writer in it
 * (issue 13's bar: a 100,000-entry directory repaired in <= 2 s, commit
 * pause <= 100 ms).
 *
 * Builds a filesystem in-process with one directory of --entries empty
 * files, closes and reopens it (a cold cache, as after a mount), then runs
 * repairDirectory with the daemon's pacing (2 ms slices) while a writer
 * creates and removes names in the same directory between the slices
 * (--writer-ops per slice: where a FUSE request would be served). In-process,
 * not through FUSE: the figure is the repair's own time, the writer's ops
 * included. One JSON object on the last line.
 *
 *   node --expose-gc dist/bench/dir-repair/main.js [--entries N] [--writer-ops N] [--check] [--quick]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { repairDirectory } from '../../src/repair/dir-repair';
import { checkFilesystem } from '../../src/fsck/check';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const entries = arg('--entries', quick ? 10000 : 100000);
  const writerOps = arg('--writer-ops', 2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-bench-dir-'));
  const image = path.join(dir, 'fs.img');
  try {
    mkfs(image, { size: Math.max(256 << 20, entries * 2048) });
    let fsx = Rmapfs.open(image);
    const d = fsx.mkdir(fsx.rootIno, 'd', S_IFDIR | 0o755, 0, 0).ino;
    const b0 = Date.now();
    for (let i = 0; i < entries; i++) {
      fsx.create(d, `file-with-a-longish-name-${i}`, S_IFREG | 0o644, 0, 0);
      if (i % 20000 === 19999) fsx.fsync();
    }
    const buildS = (Date.now() - b0) / 1000;
    fsx.close();
    fsx = Rmapfs.open(image);
    let made = 0;
    let removed = 0;
    let slices = 0;
    const writer = (): void => {
      slices++;
      for (let i = 0; i < writerOps; i++) {
        if (i % 2 === 0) fsx.create(d, `new-${made++}`, S_IFREG | 0o644, 0, 0);
        else fsx.unlink(d, `file-with-a-longish-name-${removed++}`);
      }
    };
    // The machine may be shared: CPU time (user + system) beside wall time, for the whole repair and
    // for its longest transaction (the commit), as a loaded machine's wall clock overstates both.
    const fsRun = fsx.fs.run.bind(fsx.fs);
    let longestRunCpuMs = 0;
    fsx.fs.run = <T>(fn: () => T): T => {
      const c = process.cpuUsage();
      try {
        return fsRun(fn);
      } finally {
        const used = process.cpuUsage(c);
        longestRunCpuMs = Math.max(longestRunCpuMs, (used.user + used.system) / 1000);
      }
    };
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const r = await repairDirectory(fsx, d, { sliceMs: 2, betweenSlices: writer });
    const totalS = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    const load = os.loadavg()[0]!;
    const want = entries + made - removed;
    const have = fsx.stat(d).nlink > 0 ? fsx.readdir(d).length - 2 : -1;
    let checkProblems: number | null = null;
    if (process.argv.includes('--check')) checkProblems = checkFilesystem(fsx.fs).problemCount;
    fsx.close();
    const out = {
      bench: 'dir-repair', entries, writer_ops_per_slice: writerOps, build_s: buildS,
      total_s: Number(totalS.toFixed(3)), commit_pause_ms: Number(r.commitPauseMs.toFixed(1)), slices,
      total_cpu_s: Number(((cpu.user + cpu.system) / 1e6).toFixed(3)), commit_cpu_ms: Number(longestRunCpuMs.toFixed(1)),
      load_average: Number(load.toFixed(1)), cpus: os.cpus().length,
      writer_creates: made, writer_removes: removed, entries_after: have, entries_expected: want,
      changes: r.changes.length, check_problems: checkProblems,
      bar_total_s: 2, bar_commit_pause_ms: 100,
    };
    console.log(JSON.stringify(out));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
