/**
 * The second source of the file-level salvage repairers (directories,
 * attributes, symlinks): the blocks the rmap says one inode owns in one
 * role (its directory btree, its attribute btree, its attribute values, its
 * data), found even when the inode's own pointers to them are damaged.
 *
 * The rmap is walked on a frozen view (a cache snapshot: live-scrub.ts's
 * FrozenView), in paced steps, so the walk sees one moment's rmap however
 * long it takes; a live rmap hook registered in the same turn the snapshot
 * opened logs every later change of that owner's blocks. The view's blocks
 * plus the log, replayed in order, are the blocks the owner holds now
 * (`current`): what the repair's commit reaps.
 */
import { RmapfsError } from '../errors';
import { Pacer } from '../io/pacer';
import type { Allocator, RmapUpdate } from '../alloc/alloc';
import type { Filesystem } from '../fs/filesystem';
import { FrozenView } from '../scrub/live-scrub';
import type { FileRepairOptions } from './file-repair';
import { decodeRmapOwner } from '../rmap/rmap-btree';
import { ExtentBitmap } from './bitmap';

/** The rmap flags (attr fork, btree block, unwritten) of the role wanted: true for a match. */
export type RmapRole = (flags: number) => boolean;

/** The flags of an rmap record at b[off] (the top bits of its offset's high word). */
function rmapFlagsAt(b: Buffer, off: number): number {
  return (b.readUInt32BE(off + 16) & 0xe0000000) >>> 0;
}

export class OwnerBlocks {
  /** Per AG: the owner's blocks in that role as the frozen view's rmap has them. */
  private readonly walked = new Map<number, ExtentBitmap>();
  /** Changes of those blocks committed since the view was taken, in order. */
  private readonly changes: RmapUpdate[] = [];
  private hookError: unknown = null;
  private readonly hook = (u: RmapUpdate): void => {
    if (u.owner === this.owner && this.role(u.flags)) this.changes.push(u);
  };
  recordsScanned = 0;

  /** Registers the hook: call in the same turn as the snapshot opens. */
  constructor(private readonly alloc: Allocator, readonly owner: number, private readonly role: RmapRole) {
    alloc.addRmapHook(this.hook, (e) => { this.hookError = e; });
  }

  /** Walks every AG's rmap of the frozen view (`viewAlloc`), pausing every record. */
  walk(viewAlloc: Allocator): Generator<void, void, void> {
    return walkOwners(viewAlloc, [this]);
  }

  /** A record of the view's rmap: kept when it is the owner's, in the role. */
  offer(agno: number, block: Buffer, offset: number): void {
    if (decodeRmapOwner(block, offset) !== this.owner || !this.role(rmapFlagsAt(block, offset))) return;
    let set = this.walked.get(agno);
    if (set === undefined) this.walked.set(agno, (set = new ExtentBitmap()));
    set.add(block.readUInt32BE(offset), block.readUInt32BE(offset + 4));
  }

  /** The blocks the view's rmap gave the owner, as filesystem block numbers in order. */
  walkedBlocks(): number[] {
    const out: number[] = [];
    for (const [agno, set] of [...this.walked].sort((a, b) => a[0] - b[0])) {
      set.walk((start, len) => { for (let i = 0; i < len; i++) out.push(this.alloc.geo.fsbno(agno, start + i)); });
    }
    return out;
  }

  /** The owner's blocks in the role now: the walk with every logged change replayed. Per AG. */
  current(): Map<number, ExtentBitmap> {
    this.throwIfAborted();
    const now = new Map<number, ExtentBitmap>();
    for (const [agno, set] of this.walked) now.set(agno, set.clone());
    for (const u of this.changes) {
      let set = now.get(u.agno);
      if (set === undefined) now.set(u.agno, (set = new ExtentBitmap()));
      if (u.op === 'map') set.add(u.startblock, u.blockcount);
      else set.subtract(u.startblock, u.blockcount);
    }
    return now;
  }

  throwIfAborted(): void {
    if (this.hookError === null) return;
    const why = this.hookError instanceof Error ? this.hookError.message : String(this.hookError);
    throw new RmapfsError('EIO', `repair of inode ${this.owner}: the live rmap hook failed: ${why}; the old structure is kept`);
  }

  close(): void {
    this.alloc.removeRmapHook(this.hook);
  }
}

/** One walk of every AG's rmap of a frozen view for several collectors (an inode's roles), pausing every record. */
export function* walkOwners(viewAlloc: Allocator, collectors: readonly OwnerBlocks[]): Generator<void, void, void> {
  for (const ag of viewAlloc.ags) {
    const cur = ag.rmap.cursor();
    for (let ok = cur.first(); ok; ok = cur.increment()) {
      const { block, offset } = cur.recordAt();
      for (const c of collectors) {
        c.recordsScanned++;
        c.offer(ag.agno, block, offset);
      }
      yield;
    }
  }
}

/** A file repair's pacing: the slices, what runs between them, and cancellation. */
export class RepairPacing {
  private readonly pacer: Pacer;

  constructor(private readonly options: FileRepairOptions, private readonly what: string) {
    this.pacer = new Pacer(options);
  }

  due(): boolean {
    return this.pacer.due();
  }

  async pause(): Promise<void> {
    await this.pacer.pause();
    await this.options.betweenSlices?.();
    if (this.options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of ${this.what} cancelled before its commit`);
  }

  /** Runs steps in slices, pausing between them. */
  async run(steps: Generator<void, void, void>): Promise<void> {
    for (;;) {
      let r = steps.next();
      while (r.done !== true && !this.due()) r = steps.next();
      if (r.done === true) return;
      await this.pause();
    }
  }
}

/**
 * The rmap walk of a file-level repair that reads the blocks themselves at
 * its commit (attributes, symlinks): a snapshot's view walked in slices for
 * each role, the snapshot closed after. The collectors go on logging live
 * changes until the caller closes them.
 */
export async function collectOwnerBlocks(fs: Filesystem, owner: number, roles: readonly RmapRole[], pacing: RepairPacing): Promise<OwnerBlocks[]> {
  const snap = fs.cache.openSnapshot();
  const collectors = roles.map((role) => new OwnerBlocks(fs.alloc, owner, role));
  try {
    await pacing.run(walkOwners(new FrozenView(fs, snap).alloc, collectors));
    if (snap.spoiled !== null) throw new RmapfsError('EAGAIN', `repair of inode ${owner}: the frozen view was spoiled (${snap.spoiled}); try again`);
    return collectors;
  } catch (e) {
    for (const c of collectors) c.close();
    throw e;
  } finally {
    snap.close();
  }
}

/** Block numbers as ranges: "1234-1236, 1240". */
export function formatBlockRanges(blocks: readonly number[]): string {
  const sorted = [...blocks].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length;) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(i === j ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(', ');
}

/**
 * Allocates `count` blocks for an inode's new structure (one extent after
 * another, near `goal`), mapped to it with `flags` in the rmap. Inside the
 * caller's transaction; the allocator never hands out busy blocks, so they
 * can be written in place before the log records them (staged-btree.ts).
 */
export function allocateInodeBlocks(alloc: Allocator, owner: number, flags: number, count: number, goal: number): number[] {
  const out: number[] = [];
  while (out.length < count) {
    const got = alloc.alloc({ owner, flags, minLen: 1, maxLen: count - out.length, goal: out.length > 0 ? out[out.length - 1]! + 1 : goal });
    for (let i = 0; i < got.len; i++) out.push(got.fsbno + i);
  }
  return out;
}
