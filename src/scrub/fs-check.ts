/**
 * The offline whole-filesystem check: what `rmapfs check` runs on a
 * filesystem opened read-only (the journal replayed into an overlay, nothing
 * written).
 *
 * The check is a list of passes, each adding problems to one ProblemList:
 * the superblocks (the primary was verified by the open; every AG's copy must
 * be intact and agree with it), then every AG (scrubAg: header, btrees, free
 * space, coverage, metadata owners; plus the header counters scrubAg does not
 * compare yet). Later passes (inodes, directories, link counts) plug in by
 * adding to FS_CHECK_PASSES or passing their own list.
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
import { readField } from '../format/fields';
import { AGH_AGBNO, AGH_MAGIC, OFF_FREE_EXTENTS, OFF_FREE_INODES, OFF_INODE_COUNT } from '../format/ag-header';
import { BLOCK_SIZE, SB_MAGIC, SUPERBLOCK_FIELDS, superblockBufOps } from '../format/superblock';
import { decodeInobt, INODES_PER_CHUNK } from '../alloc/inode-btree';
import { scrubAg } from './ag-scrub';
import { scrubInodes } from './inode-scrub';
import type { AgScrubResult } from './ag-scrub';
import { ProblemList } from './common';
import type { Problem } from './common';

const log = createDebug('rmapfs:check');

/** Superblock fields every AG's copy must share with the primary (state, counters and times may differ). */
export const SECONDARY_SB_FIELDS: readonly string[] = [
  'magic', 'version', 'features', 'blockSize', 'uuid', 'totalBlocks', 'agBlocks', 'agCount', 'logStart', 'logBlocks',
  'inodeSize', 'inodesPerChunk', 'createdSec', 'label',
];

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
  /** Failures of the checker itself (a bug, not the filesystem's): the check is incomplete. */
  internalErrors: string[];
}

export interface FsCheckContext {
  fs: Filesystem;
  problems: ProblemList;
  result: FsCheckResult;
  /** Per AG, what its scrub found (null until the AG pass ran, or when it failed). */
  agScrub: (AgScrubResult | null)[];
}

export interface FsCheckPass {
  name: string;
  run(ctx: FsCheckContext): void;
}

export interface FsCheckOptions {
  /** The passes to run, in order (default FS_CHECK_PASSES). */
  passes?: readonly FsCheckPass[];
  /** Problems kept in full (default 1000; the rest are counted). */
  maxProblems?: number;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Every AG's superblock copy: intact, and the same filesystem and geometry as the primary. */
export const superblockPass: FsCheckPass = {
  name: 'superblocks',
  run({ fs, problems }) {
    const ops = superblockBufOps(fs.uuid);
    const primary = fs.cache.read(0, ops).data;
    for (let agno = 1; agno < fs.geo.agCount; agno++) {
      const bno = fs.geo.agStart(agno);
      let copy: Buffer;
      try {
        copy = fs.cache.read(bno, ops).data;
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        problems.add('superblock', agno, bno, `secondary: ${e.message.replace(/^superblock block \d+: /, '')}`);
        continue;
      }
      for (const name of SECONDARY_SB_FIELDS) {
        const f = SUPERBLOCK_FIELDS.find((x) => x.name === name)!;
        const want = readField(primary, 0, f);
        const got = readField(copy, 0, f);
        if (got !== want) problems.add('superblock', agno, bno, `secondary: ${name} ${JSON.stringify(got)}, the primary has ${JSON.stringify(want)}`);
      }
    }
  },
};

/** Header counters scrubAg does not compare (yet): free extents, inodes and free inodes. */
function checkAgCounters(ctx: FsCheckContext, agno: number, scrub: AgScrubResult): void {
  const ag = ctx.fs.alloc.ags[agno]!;
  const h = ag.header().data;
  const where = ag.start + AGH_AGBNO;
  const freeExtents = h.readUInt32BE(OFF_FREE_EXTENTS);
  if (freeExtents !== scrub.freeExtents) {
    ctx.problems.add('AG header', agno, where, `free extents ${freeExtents}, the bnobt holds ${scrub.freeExtents}`);
  }
  let inodes = 0;
  let free = 0;
  ag.ino.forEach((b, off) => {
    inodes += INODES_PER_CHUNK;
    free += decodeInobt(b, off).freecount;
  });
  if (h.readUInt32BE(OFF_INODE_COUNT) !== inodes) {
    ctx.problems.add('AG header', agno, where, `inode count ${h.readUInt32BE(OFF_INODE_COUNT)}, the inobt holds ${inodes}`);
  }
  if (h.readUInt32BE(OFF_FREE_INODES) !== free) {
    ctx.problems.add('AG header', agno, where, `free inodes ${h.readUInt32BE(OFF_FREE_INODES)}, the inobt holds ${free}`);
  }
}

/** Every AG: scrubAg, then the counters. */
export const agPass: FsCheckPass = {
  name: 'allocation groups',
  run(ctx) {
    const { fs, problems, result } = ctx;
    for (const ag of fs.alloc.ags) {
      let scrub: AgScrubResult | null = null;
      try {
        scrub = scrubAg(ag, fs.geo, problems);
        if (scrub.treesReadable) checkAgCounters(ctx, ag.agno, scrub);
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        problems.add('AG', ag.agno, -1, message(e));
      }
      ctx.agScrub[ag.agno] = scrub;
      result.agsChecked++;
      if (scrub !== null) {
        result.rmapRecords += scrub.rmapRecords;
        result.freeExtents += scrub.freeExtents;
      }
      try {
        result.freeBlocks += ag.freeBlocks;
      } catch {
        // An unreadable header is already a problem.
      }
    }
  },
};

/**
 * The files: inodes in use against the inode btrees, the directory tree and
 * link counts, block maps and directory btrees against the rmap. Runs only
 * when every AG's btrees could be walked (it leans on them).
 */
export const inodePass: FsCheckPass = {
  name: 'inodes',
  run(ctx): void {
    if (ctx.agScrub.some((s) => s === null || !s.treesReadable)) return;
    try {
      scrubInodes(ctx.fs, ctx.problems);
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      ctx.problems.add('inode', -1, -1, message(e));
    }
  },
};

export const FS_CHECK_PASSES: readonly FsCheckPass[] = [superblockPass, agPass, inodePass];

/** Runs every pass over an open filesystem. Corruption becomes problems; only a checker bug is an internal error. */
export function checkFilesystem(fs: Filesystem, options: FsCheckOptions = {}): FsCheckResult {
  const problems = new ProblemList(options.maxProblems ?? 1000);
  const result: FsCheckResult = {
    problems: problems.problems, problemCount: 0, agsChecked: 0, blocks: fs.geo.totalBlocks, freeBlocks: 0,
    freeExtents: 0, rmapRecords: 0, internalErrors: [],
  };
  const ctx: FsCheckContext = { fs, problems, result, agScrub: new Array<AgScrubResult | null>(fs.geo.agCount).fill(null) };
  for (const pass of options.passes ?? FS_CHECK_PASSES) {
    try {
      pass.run(ctx);
    } catch (e) {
      if (e instanceof RmapfsError) {
        problems.add(pass.name, -1, -1, e.message);
      } else {
        result.internalErrors.push(`${pass.name}: ${message(e)}`);
        log('internal error in %s: %O', pass.name, e);
      }
    }
  }
  result.problemCount = problems.count;
  return result;
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
  return { problems: [], problemCount: 0, agsChecked: 0, blocks: 0, freeBlocks: 0, freeExtents: 0, rmapRecords: 0, internalErrors: [] };
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
    fs = Filesystem.open(path, { readOnly: true, exclusive: true });
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
