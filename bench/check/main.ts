/**
 * bench/check: how long the offline check takes on a filesystem holding
 * about 1,000,000 rmap records.
 *
 * The filesystem is built through the real allocator and block maps: 1,000
 * files each given 1,000 one-block extents, round robin, so no two
 * neighbouring blocks share an owner and every block is its own rmap record
 * and its own extent. (File data is not written: the check reads metadata.)
 * Prints one JSON line: {"rmap_records":...,"build_s":...,"check_s":...,"problems":...}.
 *
 * Usage: node dist/bench/check/main.js [--files N] [--extents N]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { mkfs } from '../../src/fs/mkfs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG } from '../../src/inode/inode-format';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import { scrubAg } from '../../src/scrub/ag-scrub';
import { scrubInodes } from '../../src/scrub/inode-scrub';

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}

function main(argv: string[]): number {
  const files = arg(argv, '--files', 1000);
  const extents = arg(argv, '--extents', 1000);
  const image = path.join(process.env.RMAPFS_BENCH_DIR ?? os.tmpdir(), `rmapfs-bench-check-${process.pid}.img`);
  try {
    mkfs(image, { size: Math.max(1 << 30, files * extents * 4096 * 2.5) });
    let t0 = Date.now();
    const fsx = Rmapfs.open(image);
    const inos: number[] = [];
    for (let i = 0; i < files; i++) inos.push(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino);
    for (let e = 0; e < extents; e++) {
      for (const ino of inos) {
        fsx.fs.run(() => {
          const inode = fsx.inodes.get(ino);
          const map = new BlockMap(inode, fsx.fs.alloc, fsx.fs.geo);
          // Leave a one-block gap in the file so extents never merge.
          const got = fsx.fs.alloc.alloc({ owner: ino, offset: e * 2, minLen: 1, maxLen: 1 });
          map.insert({ fileoff: e * 2, blockcount: 1, fsbno: got.fsbno, unwritten: false });
          inode.nblocks = inode.nblocks + 1;
          inode.size = (e * 2 + 1) * 4096;
        });
      }
      if (e % 100 === 99) process.stderr.write(`built ${(e + 1) * files} extents\n`);
    }
    fsx.close();
    const buildS = (Date.now() - t0) / 1000;

    t0 = Date.now();
    const check = Rmapfs.open(image, { readOnly: true });
    const problems = new ProblemList();
    let rmapRecords = 0;
    for (const ag of check.fs.alloc.ags) rmapRecords += scrubAg(ag, check.fs.geo, problems).rmapRecords;
    scrubInodes(check.fs, problems);
    const checkS = (Date.now() - t0) / 1000;
    for (const p of problems.problems.slice(0, 5)) console.error(formatProblem(p));
    console.log(JSON.stringify({ rmap_records: rmapRecords, build_s: buildS, check_s: checkS, problems: problems.count,
      heap_mib: Math.round(process.memoryUsage().heapUsed / 1048576) }));
    return problems.count === 0 ? 0 : 1;
  } finally {
    fs.rmSync(image, { force: true });
  }
}

process.exitCode = main(process.argv.slice(2));
