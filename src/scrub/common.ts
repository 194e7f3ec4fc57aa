/**
 * What every checker shares: where it reports, what it reads, and how it
 * pauses.
 *
 * A problem is one line naming the structure, the AG, the block and what is
 * wrong -- the same for the offline `check` and the online `scrub`.
 *
 * The checkers are generators: they yield at points where they may pause
 * (after a btree block, a few records, an inode), so the daemon can run them
 * in slices between FUSE requests (live-scrub.ts); offline they run straight
 * through (`runToEnd`). A yield only lets time pass: whatever the checker
 * reads must not change in between, so the live scrub hands them a frozen
 * view of the filesystem (a cache snapshot), never the live one.
 */
import { corruption } from '../errors';
import type { Btree } from '../btree/btree';
import { NULL_PTR } from '../btree/btree-ops';
import { OFF_NUMRECS, OFF_RIGHTSIB } from '../btree/btree-block';
import type { BufCache } from '../io/buf-cache';
import type { Device } from '../io/device';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import type { StructureName } from '../format/structures';

export interface Problem {
  /** "superblock", "AG header", "bnobt", "cntbt", "rmap", "inobt", "inode", "directory", "coverage"... */
  structure: string;
  /** -1 when the problem is not in one AG. */
  agno: number;
  /** Filesystem block number, -1 when there is none. */
  fsbno: number;
  message: string;
  /**
   * The structure table's name for it (format/structures.ts), when the
   * display label alone does not say ("inode" covers the core, the block
   * map and symlinks); else structureOfProblem derives it from the label.
   */
  type?: StructureName;
  /**
   * The inode whose structure it is, for the per-inode structures (and the
   * rmap's disagreements with one file): what a repair of inode-scope
   * structures works on.
   */
  ino?: number;
}

export class ProblemList {
  readonly problems: Problem[] = [];
  /** Problems not kept once the list is full (they still count). */
  dropped = 0;

  constructor(readonly limit = 1000) {}

  add(structure: string, agno: number, fsbno: number, message: string, type?: StructureName, ino?: number): void {
    if (this.problems.length >= this.limit) {
      this.dropped++;
      return;
    }
    const p: Problem = { structure, agno, fsbno, message };
    if (type !== undefined) p.type = type;
    if (ino !== undefined) p.ino = ino;
    this.problems.push(p);
  }

  get count(): number {
    return this.problems.length + this.dropped;
  }
}

export function formatProblem(p: Problem): string {
  const where = [p.agno >= 0 ? `AG ${p.agno}` : '', p.fsbno >= 0 ? `block ${p.fsbno}` : ''].filter(Boolean).join(' ');
  return `${p.structure}${where ? ` (${where})` : ''}: ${p.message}`;
}

/**
 * What the checkers read: a cache with the AGs and their btrees over it, the
 * geometry, the device (for the file forks' contexts) and the superblock.
 * A Filesystem is one; so is the live scrub's frozen view of one.
 */
export interface ScrubSource {
  readonly cache: BufCache;
  readonly geo: Geometry;
  readonly alloc: Allocator;
  readonly device: Device;
  /**
   * A frozen view of a live filesystem: its metadata as of a moment, but the
   * device as it is now -- blocks outside the metadata (file data, attribute
   * values) may have been freed and reused since, so checks must not read them.
   */
  readonly frozen?: boolean;
  /**
   * The live filesystem a frozen view was taken of: what the view cannot
   * judge (an attribute value read from the device as it is now) is checked
   * again there before it is called damage.
   */
  readonly live?: ScrubSource;
  superblock(): { rootIno: number };
}

/** A checker's run: it yields where it may pause, and returns its result. */
export type ScrubSteps<T> = Generator<void, T, void>;

/** Runs a checker through without pausing. */
export function runToEnd<T>(steps: ScrubSteps<T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * Visits every record of a tree in key order, like Btree.forEach, pausing
 * after each leaf and, with `every`, after every that many records. The
 * walk follows the leaves' right siblings, bounded by the storage's size
 * (a loop in a corrupt tree is an error, not forever).
 */
export function* eachRecord(tree: Btree, visit: (b: Buffer, off: number) => void, every = 0): ScrubSteps<void> {
  const cur = tree.cursor();
  if (!cur.first()) return;
  let ptr = cur.ptrs[0]!;
  let budget = tree.storage.blockLimit() + 1;
  let sinceYield = 0;
  while (ptr !== NULL_PTR) {
    if (--budget < 0) throw corruption(`${tree.ops.name} btree: sibling pointers loop among the leaves`);
    const b = tree.readBlock(ptr, 0).data;
    const n = b.readUInt16BE(OFF_NUMRECS);
    for (let i = 0; i < n; i++) {
      visit(b, tree.geo.recOffset(i));
      if (every > 0 && ++sinceYield >= every) {
        sinceYield = 0;
        yield;
      }
    }
    ptr = b.readUInt32BE(OFF_RIGHTSIB);
    yield;
  }
}

/** Visits every block of a tree as Btree.visitBlocks does, pausing after each. */
export function* eachBlock(tree: Btree, visit: (ptr: number, level: number, b: Buffer) => void): ScrubSteps<void> {
  yield* tree.walkBlocks(visit);
}
