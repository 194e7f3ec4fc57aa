/**
 * bench/repair: online rmap repair of every AG of a filesystem holding about
 * 1,000,000 rmap records (built as bench/check builds it: 1,000 files of
 * 1,000 one-block extents, round robin). Per AG: records, scan and load time,
 * the commit pause, xfile bytes, and heap growth (after a forced GC) -- which
 * must not grow with the record count. Last line: one JSON object.
 *
 * Usage: node --expose-gc dist/bench/repair/main.js [--files N] [--extents N]
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { repairRmap } from '../../src/repair/rmap-repair';
import { buildFragmentedFs } from '../lib/fragmented-fs';
import { ProblemList } from '../../src/scrub/common';
import { scrubAg } from '../../src/scrub/ag-scrub';

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}

function heapAfterGc(): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  return process.memoryUsage().heapUsed;
}

async function main(argv: string[]): Promise<number> {
  const files = arg(argv, '--files', 1000);
  const extents = arg(argv, '--extents', 1000);
  const image = path.join(process.env.RMAPFS_BENCH_DIR ?? os.tmpdir(), `rmapfs-bench-repair-${process.pid}.img`);
  try {
    const fsx = buildFragmentedFs(image, files, extents);
    fsx.fsync();
    const heap0 = heapAfterGc();
    const ags = [];
    for (const ag of fsx.fs.alloc.ags) {
      const r = await repairRmap(fsx, ag.agno);
      const heap = heapAfterGc();
      ags.push({ agno: r.agno, records: r.records, blocks: r.blocks, scan_ms: Math.round(r.scanMs), load_ms: +r.loadMs.toFixed(1),
        commit_pause_ms: +r.commitPauseMs.toFixed(1), xfile_mib: +(r.xfileBytes / 1048576).toFixed(2),
        heap_growth_mib: +((heap - heap0) / 1048576).toFixed(2) });
      console.log(`AG ${r.agno}: ${r.records} records, scan ${Math.round(r.scanMs)} ms, load ${r.loadMs.toFixed(1)} ms, `
        + `pause ${r.commitPauseMs.toFixed(1)} ms, xfile ${(r.xfileBytes / 1048576).toFixed(1)} MiB`);
    }
    const problems = new ProblemList();
    for (const ag of fsx.fs.alloc.ags) scrubAg(ag, fsx.fs.geo, problems);
    fsx.close();
    console.log(JSON.stringify({ rmap_records: ags.reduce((n, a) => n + a.records, 0), problems: problems.count, ags }));
    return problems.count === 0 ? 0 : 1;
  } finally {
    fs.rmSync(image, { force: true });
  }
}

void main(process.argv.slice(2)).then((code) => { process.exitCode = code; });
