/**
 * Scrub of a mounted filesystem, run by its daemon: the same checkers `check`
 * runs offline (AG metadata, the coverage invariant, files against the rmap).
 *
 * Over a million rmap records the checkers take seconds, and the daemon
 * serves FUSE requests on the same thread, so `scrubLiveSliced` runs them in
 * slices of a few milliseconds (cut short when a FUSE request waits: the
 * shared Pacer), yielding to the event loop in between. The
 * filesystem changes between slices; a checker that read half of it before a
 * change and half after would report damage that is not there (an extent
 * both free and mapped, a link count one off). So the checkers never read the
 * live filesystem across slices: they read a frozen view of it -- a cache
 * snapshot taken when the scrub starts, which keeps the old contents of every
 * block a transaction changes meanwhile (BufCache.openSnapshot). The scrub
 * checks the filesystem exactly as it was at that moment, however long it
 * takes, and the foreground only pays a block copy per first change.
 *
 * A snapshot that can no longer say what a block held (a change made outside
 * a transaction, too many changed blocks) is spoiled: the scrub starts over
 * with a new one, and after a few tries runs through on the live filesystem
 * in one go (correct, but a pause).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { BufCache } from '../io/buf-cache';
import type { CacheSnapshot } from '../io/buf-cache';
import type { BufTarget } from '../io/buf-target';
import type { Device } from '../io/device';
import { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import { decodeSuperblock, superblockBufOps } from '../format/superblock';
import type { Filesystem } from '../fs/filesystem';
import { Pacer } from '../io/pacer';
import type { PacerOptions } from '../io/pacer';
import { ProblemList, runToEnd } from './common';
import type { Problem, ScrubSource, ScrubSteps } from './common';

const log = createDebug('rmapfs:scrub');

export interface LiveScrubResult {
  problems: Problem[];
  problemCount: number;
  agsChecked: number;
  rmapRecords: number;
  inodesChecked: boolean;
  seconds: number;
  /** Slices the scrub ran in (1: it never paused). */
  slices: number;
  /** The longest slice (ms): the longest any foreground request waited for the scrub. */
  longestSliceMs: number;
  /** Slices ended early because a FUSE request was waiting. */
  yieldsToForeground: number;
  /** Times the scrub started over because its frozen view was spoiled. */
  restarts: number;
  /** Blocks that changed during the (last) run and were copied for the frozen view. */
  blocksKept: number;
}

/**
 * How the slices are cut (PacerOptions: sliceMs, default 2; maxUnits, checker
 * steps per slice, for tests; foregroundWaiting, to end a slice at once when a
 * FUSE request waits), and what runs between them.
 */
export interface SlicedScrubOptions extends PacerOptions {
  /** Runs between slices, after the yield (tests do foreground work there). */
  betweenSlices?: () => void | Promise<void>;
  /** Checked between slices: a reason to stop (the client went away, unmount), or null to go on. */
  abortReason?: () => string | null;
  /** Fresh starts after a spoiled view before running through in one go (default 2). */
  maxRestarts?: number;
  /** Changed blocks the frozen view may copy before it gives up (default 16384, 64 MiB). */
  maxBlocksKept?: number;
}

/** What a checker run by the live scrub reports besides its problems. */
export interface ScrubTotals {
  agsChecked: number;
  rmapRecords: number;
  inodesChecked: boolean;
}

/**
 * What the live scrub runs: checks of a source (the frozen view, or the live
 * filesystem) adding to a problem list -- the structure table's walk
 * (fsck/table.ts) over the structures and AGs asked for.
 */
export type LiveChecker = (src: ScrubSource, problems: ProblemList) => ScrubSteps<ScrubTotals>;

function elapsedMs(since: bigint): number {
  return Number(process.hrtime.bigint() - since) / 1e6;
}

/** Runs a checker in one go on the live filesystem: nothing else runs meanwhile. */
export function scrubLive(fs: Filesystem, checker: LiveChecker): LiveScrubResult {
  const t0 = process.hrtime.bigint();
  const problems = new ProblemList();
  const totals = runToEnd(checker(fs, problems));
  const seconds = elapsedMs(t0) / 1000;
  return {
    problems: problems.problems, problemCount: problems.count, ...totals, seconds,
    slices: 1, longestSliceMs: seconds * 1000, yieldsToForeground: 0, restarts: 0, blocksKept: 0,
  };
}

/** The device as a snapshot saw it: reads answer from the snapshot, writes are refused. */
class SnapshotTarget implements BufTarget {
  readonly name: string;
  readonly blockSize: number;
  readonly checksummed: boolean;

  constructor(private readonly live: BufCache, private readonly snap: CacheSnapshot) {
    this.name = `${live.target.name} (scrub snapshot)`;
    this.blockSize = live.blockSize;
    this.checksummed = live.target.checksummed;
  }

  get blockCount(): number {
    return this.live.target.blockCount;
  }

  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    this.snap.readBlocks(bno, count, dst, dstOffset);
  }

  writeBlocks(bno: number): void {
    throw new RmapfsError('EROFS', `${this.name}: block ${bno}: a scrub view is read-only`);
  }

  flush(): void {
    // Nothing is ever written.
  }

  close(): void {
    // The snapshot is closed by its owner.
  }
}

/**
 * The filesystem as it was when the snapshot opened: its own cache, AGs and btrees over the snapshot
 * (also what a file-level repair salvages from while the directory it rebuilds keeps changing).
 */
export class FrozenView implements ScrubSource {
  readonly cache: BufCache;
  readonly geo: Geometry;
  readonly alloc: Allocator;
  readonly device: Device;
  readonly frozen = true;
  readonly live: ScrubSource;

  constructor(fs: Filesystem, snap: CacheSnapshot) {
    this.live = fs;
    // A cache of its own, so the scrub does not push the foreground's working set out of the
    // daemon's; big enough for the rmap leaves the file checks look up in (every one of them, in
    // no order), else each miss costs a copy and a crc: at most 64 MiB, and never more than the
    // daemon's cache may hold.
    this.cache = new BufCache(new SnapshotTarget(fs.cache, snap), { maxBlocks: Math.min(16384, fs.cache.maxBlocks) });
    this.geo = fs.geo;
    this.alloc = new Allocator(this.cache, fs.geo);
    this.device = fs.device;
  }

  superblock(): { rootIno: number } {
    return decodeSuperblock(this.cache.read(0, superblockBufOps(this.geo.uuid)).data);
  }
}

/**
 * Runs a checker (one AG or all of them, some structures or all) in slices paced by a Pacer (a few ms, or less
 * when a FUSE request waits), yielding to the event loop between them, on a
 * frozen view of the filesystem (see the top of this file). Rejects with
 * ECANCELED when abortReason gives a reason.
 */
export async function scrubLiveSliced(fs: Filesystem, checker: LiveChecker, options: SlicedScrubOptions = {}): Promise<LiveScrubResult> {
  const maxRestarts = options.maxRestarts ?? 2;
  const t0 = process.hrtime.bigint();
  const pacer = new Pacer(options);
  let longestSliceMs = 0;
  const done = (r: Omit<LiveScrubResult, 'seconds' | 'slices' | 'longestSliceMs' | 'yieldsToForeground'>): LiveScrubResult => ({
    ...r, seconds: elapsedMs(t0) / 1000, slices: pacer.slices + 1, longestSliceMs, yieldsToForeground: pacer.yieldsToForeground,
  });
  for (let restarts = 0; ; restarts++) {
    if (restarts > maxRestarts) {
      // The filesystem keeps changing in ways a snapshot cannot follow: check it as it is, in one go.
      log('scrub: the view was spoiled %d times; scrubbing in one go', restarts);
      const r = scrubLive(fs, checker);
      longestSliceMs = Math.max(longestSliceMs, r.longestSliceMs);
      return done({ ...r, restarts });
    }
    const snap = fs.cache.openSnapshot(options.maxBlocksKept);
    try {
      const problems = new ProblemList();
      const steps = checker(new FrozenView(fs, snap), problems);
      let sliceStart = process.hrtime.bigint();
      let totals: ScrubTotals | null = null;
      for (;;) {
        const r = steps.next();
        if (r.done === true) {
          totals = r.value;
          break;
        }
        if (!pacer.due()) continue;
        longestSliceMs = Math.max(longestSliceMs, elapsedMs(sliceStart));
        await pacer.pause();
        await options.betweenSlices?.();
        const why = options.abortReason?.() ?? null;
        if (why !== null) throw new RmapfsError('ECANCELED', `scrub stopped: ${why}`);
        if (snap.spoiled !== null) break;
        sliceStart = process.hrtime.bigint();
      }
      if (totals === null) {
        log('scrub: view spoiled (%s); starting over', snap.spoiled);
        continue;
      }
      longestSliceMs = Math.max(longestSliceMs, elapsedMs(sliceStart));
      log('scrub: %d problems; %d slices (longest %d ms, %d cut short for FUSE requests), %d changed blocks kept, %d restarts',
        problems.count, pacer.slices + 1, Math.round(longestSliceMs), pacer.yieldsToForeground, snap.imageCount, restarts);
      return done({ problems: problems.problems, problemCount: problems.count, ...totals, restarts, blocksKept: snap.imageCount });
    } finally {
      snap.close();
    }
  }
}
