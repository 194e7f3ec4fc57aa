/**
 * bench/check: how long the offline check takes on a filesystem holding
 * about 1,000,000 rmap records.
 *
 * The filesystem comes from bench/lib/fragmented-fs (1,000 files x 1,000
 * one-block extents: every block its own rmap record).
 * Prints one JSON line: {"rmap_records":...,"build_s":...,"check_s":...,"problems":...}.
 *
 * Usage: node dist/bench/check/main.js [--files N] [--extents N]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildFragmentedFs } from '../lib/fragmented-fs';
import { formatProblem } from '../../src/scrub/common';
import { checkDevice } from '../../src/fsck/check';

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}

function main(argv: string[]): number {
  const files = arg(argv, '--files', 1000);
  const extents = arg(argv, '--extents', 1000);
  const image = path.join(process.env.RMAPFS_BENCH_DIR ?? os.tmpdir(), `rmapfs-bench-check-${process.pid}.img`);
  try {
    let t0 = Date.now();
    const fsx = buildFragmentedFs(image, files, extents, (n) => {
      if (n % (100 * files) === 0) process.stderr.write(`built ${n} extents\n`);
    });
    fsx.close();
    const buildS = (Date.now() - t0) / 1000;

    // What `rmapfs check` runs: open read-only (journal replayed in memory), every pass.
    t0 = Date.now();
    const report = checkDevice(image);
    const checkS = (Date.now() - t0) / 1000;
    for (const p of report.result.problems.slice(0, 5)) console.error(formatProblem(p));
    console.log(JSON.stringify({ rmap_records: report.result.rmapRecords, build_s: buildS, check_s: checkS,
      problems: report.result.problemCount, heap_mib: Math.round(process.memoryUsage().heapUsed / 1048576) }));
    return report.result.problemCount === 0 && report.error === null ? 0 : 1;
  } finally {
    fs.rmSync(image, { force: true });
  }
}

process.exitCode = main(process.argv.slice(2));
