/**
 * The offline whole-filesystem check: what `rmapfs check` runs on a
 * filesystem opened read-only (the journal replayed into an overlay, nothing
 * written).
 *
 * The check walks the structure table (table.ts) -- the same checkers the
 * online scrub runs: the superblocks, every AG's header, free list, btrees,
 * coverage and counters, then the files against the rmap.
 *
 * `checkDevice` wraps it for a path: it opens the filesystem and classifies a
 * failure to open as corruption (a damaged primary superblock or log
 * superblock) or as an operational error (no such file, not an rmapfs, I/O).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { Filesystem } from '../fs/filesystem';
import type { ReplayInfo } from '../fs/filesystem';
import { Device } from '../io/device';
import { AGH_AGBNO, AGH_MAGIC } from '../format/ag-header';
import { BLOCK_SIZE, SB_MAGIC } from '../format/superblock';
import type { StructureName } from '../format/structures';
import { ProblemList, runToEnd } from '../scrub/common';
import type { Problem } from '../scrub/common';
import { checkStructures, selectStructures } from './table';
import type { RebuiltRmaps } from '../rmap/rmap-digest';
import type { CachedImage } from '../io/buf-cache';

const log = createDebug('rmapfs:check');

export interface FsCheckResult {
  /** The problems kept (at most the list's limit). */
  problems: Problem[];
  /** All problems found, kept or not. */
  problemCount: number;
  agsChecked: number;
  blocks: number;
  freeBlocks: number;
  freeExtents: number;
  rmapRecords: number;
  /** Whether the file pass ran (it needs every AG's btrees walkable): false, the files' damage is unknown. */
  inodesChecked: boolean;
  /**
   * The AGs whose files were not compared with their rmap: the one an offline
   * repair just rebuilt from those very files, unchanged since (FsCheckOptions.rebuiltRmaps).
   */
  rmapRebuiltFromFiles: number[];
  /** Failures of the checker itself (a bug, not the filesystem's): the check is incomplete. */
  internalErrors: string[];
}

export interface FsCheckOptions {
  /** The structures to check (default every one in the structure table). */
  types?: readonly StructureName[];
  /** Problems kept in full (default 1000; the rest are counted). */
  maxProblems?: number;
  /** What the offline repair before this check rebuilt (table.ts CheckRunOptions). */
  rebuiltRmaps?: RebuiltRmaps;
  /** checkDevice: blocks of the device a filesystem just closed held (OpenOptions.warmBlocks). */
  warmBlocks?: readonly CachedImage[];
}

/** Walks the structure table over an open filesystem. Corruption becomes problems; only a checker bug is an internal error. */
export function checkFilesystem(fs: Filesystem, options: FsCheckOptions = {}): FsCheckResult {
  const problems = new ProblemList(options.maxProblems ?? 1000);
  const totals = runToEnd(checkStructures(fs, options.types ?? selectStructures(null, null), null, problems,
    { rebuiltRmaps: options.rebuiltRmaps }));
  for (const e of totals.internalErrors) log('internal error: %s', e);
  let freeBlocks = 0;
  for (const ag of fs.alloc.ags) {
    try {
      freeBlocks += ag.freeBlocks;
    } catch {
      // An unreadable header is already a problem.
    }
  }
  return {
    problems: problems.problems, problemCount: problems.count, agsChecked: totals.agsChecked, blocks: fs.geo.totalBlocks,
    freeBlocks, freeExtents: totals.freeExtents, rmapRecords: totals.rmapRecords, inodesChecked: totals.inodesChecked,
    rmapRebuiltFromFiles: totals.rmapRebuiltFromFiles, internalErrors: totals.internalErrors,
  };
}

// ---- a whole device ------------------------------------------------------------

/** fsck's exit statuses. */
export const CHECK_CLEAN = 0;
export const CHECK_CORRUPT = 4;
export const CHECK_OPERATIONAL = 8;

export interface DeviceCheckReport {
  path: string;
  /** CHECK_CLEAN, CHECK_CORRUPT or CHECK_OPERATIONAL. */
  status: number;
  /** Why the check could not run (operational errors), one line. */
  error: string | null;
  result: FsCheckResult;
  replayed: ReplayInfo;
  seconds: number;
}

function emptyResult(): FsCheckResult {
  return {
    problems: [], problemCount: 0, agsChecked: 0, blocks: 0, freeBlocks: 0, freeExtents: 0, rmapRecords: 0, inodesChecked: false,
    rmapRebuiltFromFiles: [], internalErrors: [],
  };
}

/**
 * Block 0 does not look like an rmapfs superblock: is this a damaged rmapfs
 * (its AG 0 header still in block 1, or a superblock copy where the primary's
 * agBlocks field says AG 1 starts) rather than something else?
 */
function looksLikeDamagedRmapfs(path: string): boolean {
  let device: Device | null = null;
  try {
    device = new Device(path, { readOnly: true });
    const blocks = Math.floor(device.size / BLOCK_SIZE);
    if (blocks < 2) return false;
    const b = Buffer.alloc(BLOCK_SIZE);
    device.read(AGH_AGBNO * BLOCK_SIZE, b, 0, BLOCK_SIZE);
    if (b.readUInt32BE(0) === AGH_MAGIC) return true;
    device.read(0, b, 0, BLOCK_SIZE);
    const agBlocks = b.readUInt32BE(64 + 8);
    if (agBlocks >= 64 && agBlocks < blocks) {
      device.read(agBlocks * BLOCK_SIZE, b, 0, BLOCK_SIZE);
      if (b.readUInt32BE(0) === SB_MAGIC) return true;
    }
    return false;
  } catch {
    return false;
  } finally {
    device?.close();
  }
}

/** Opens path read-only and checks it; never throws for what it finds on the device. */
export function checkDevice(path: string, options: FsCheckOptions = {}): DeviceCheckReport {
  const started = process.hrtime.bigint();
  const report: DeviceCheckReport = {
    path, status: CHECK_CLEAN, error: null, result: emptyResult(), replayed: { transactions: 0, blocks: 0 }, seconds: 0,
  };
  const finish = (): DeviceCheckReport => {
    report.seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return report;
  };
  let fs: Filesystem;
  try {
    fs = Filesystem.open(path, { readOnly: true, exclusive: true, warmBlocks: options.warmBlocks });
  } catch (e) {
    if (!(e instanceof RmapfsError)) throw e;
    if (e.code === 'EBUSY') e.message = `${e.message}; unmount it first (scrub checks a live filesystem)`;
    if (e.code === 'EFSCORRUPTED' || e.code === 'EFSBADCRC') {
      // The open verifies the primary superblock and the log superblock; neither can be checked around.
      const structure = /log superblock|bad log geometry/.test(e.message) ? 'log' : 'superblock';
      report.result.problems.push({ structure, agno: -1, fsbno: -1, message: `cannot open the filesystem: ${e.message}` });
      report.result.problemCount = 1;
      report.status = CHECK_CORRUPT;
    } else if (e.code === 'EINVAL' && /not an rmapfs/.test(e.message) && looksLikeDamagedRmapfs(path)) {
      report.result.problems.push({
        structure: 'superblock', agno: 0, fsbno: 0,
        message: 'the primary superblock is damaged (bad magic or block number), but AG metadata follows it',
      });
      report.result.problemCount = 1;
      report.status = CHECK_CORRUPT;
    } else {
      report.error = e.message;
      report.status = CHECK_OPERATIONAL;
    }
    return finish();
  }
  try {
    report.replayed = fs.replayed;
    report.result = checkFilesystem(fs, options);
  } catch (e) {
    if (!(e instanceof RmapfsError)) throw e;
    report.error = e.message;
    report.status = CHECK_OPERATIONAL;
    return finish();
  } finally {
    fs.close();
  }
  const r = report.result;
  report.status = r.internalErrors.length > 0 ? CHECK_OPERATIONAL : r.problemCount > 0 ? CHECK_CORRUPT : CHECK_CLEAN;
  if (r.internalErrors.length > 0) report.error = `internal error: ${r.internalErrors[0]}`;
  return finish();
}
