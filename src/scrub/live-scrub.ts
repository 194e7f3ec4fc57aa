/**
 * Scrub of a mounted filesystem, run by its daemon between FUSE requests:
 * the same checkers `check` runs offline (AG metadata, the coverage
 * invariant, files against the rmap), reading through the daemon's own cache,
 * so they see every finished operation and none half-done.
 */
import type { Filesystem } from '../fs/filesystem';
import { scrubAg } from './ag-scrub';
import { scrubInodes } from './inode-scrub';
import { ProblemList } from './common';
import type { Problem } from './common';

export interface LiveScrubResult {
  problems: Problem[];
  problemCount: number;
  agsChecked: number;
  rmapRecords: number;
  inodesChecked: boolean;
  seconds: number;
}

/** Scrubs one AG (agno) or all of them, and then the files when every AG was scrubbed. */
export function scrubLive(fs: Filesystem, agno: number | null): LiveScrubResult {
  const t0 = process.hrtime.bigint();
  const problems = new ProblemList();
  const ags = agno === null ? fs.alloc.ags : [fs.alloc.ag(agno)];
  let rmapRecords = 0;
  let readable = true;
  for (const ag of ags) {
    const r = scrubAg(ag, fs.geo, problems);
    rmapRecords += r.rmapRecords;
    readable &&= r.treesReadable;
  }
  const inodesChecked = agno === null && readable;
  if (inodesChecked) scrubInodes(fs, problems);
  return {
    problems: problems.problems, problemCount: problems.count, agsChecked: ags.length, rmapRecords, inodesChecked,
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
  };
}
