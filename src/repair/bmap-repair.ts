/**
 * Online repair of a file's data fork (its block map), from the rmap -- the
 * second source of what the file owns (the method of XFS's
 * fs/xfs/scrub/bmap_repair.c). The old map is never read: it is what may be
 * damaged. While the filesystem stays in use:
 *
 * 1. Collect: walk every AG's rmap in block order, in paced slices, keeping
 *    the records this inode owns: its data extents (file offset, unwritten
 *    flag), its old block-map btree blocks, and how many blocks its
 *    attribute fork holds (for the block count). The walk resumes by block
 *    after each slice. A live rmap hook, filtered to this owner, applies
 *    committed changes below the walk's position (a change straddling it is
 *    cut there: the walk reads the rest as it then is), so writes to this
 *    file between slices are kept.
 * 2. Commit, in ONE transaction (the only pause): the extents in file order
 *    (merged where they continue each other) go inline when they fit, else
 *    into a new block-map btree bulk-loaded into fresh blocks written in
 *    place (staged-btree.ts); the inode gets the new fork and its block
 *    count; the old btree's blocks (those the rmap says the inode owns as
 *    btree blocks) are reaped. Nothing of the old map is freed before the
 *    commit, and a crash before it leaves the old map in place.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { Btree } from '../btree/btree';
import { computeBulkLoadGeometry } from '../btree/bulk-load';
import type { RmapUpdate } from '../alloc/alloc';
import { bmapBtreeOps } from '../file/bmap';
import { ForkBtreeStorage } from '../inode/fork-btree';
import {
  DATA_FORK_SIZE, EXTENT_SIZE, FORK_BTREE, FORK_EXTENTS, FORK_LOCAL, MAX_EXTENT_LEN, MAX_INLINE_EXTENTS, S_IFDIR, S_IFMT, encodeExtent,
} from '../inode/inode-format';
import type { Extent } from '../inode/inode-format';
import type { Inode } from '../inode/inode';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN, decodeRmap, encodeRmapKey } from '../rmap/rmap-btree';
import type { RmapRecord } from '../rmap/rmap-btree';
import type { Rmapfs } from '../fs/rmapfs';
import { Pacer } from '../io/pacer';
import type { FileRepairOptions, FileRepairResult } from './file-repair';
import { listSource, writeStagedBtree } from './staged-btree';
import { HookFailure, pauseBetweenSlices } from './paced-repair';
import { reapInodeBlocks } from './reap';
import { ExtentBitmap } from './bitmap';

const log = createDebug('rmapfs:repair');

/** One data extent the rmap gives the file, AG-relative. */
interface OwnedExtent {
  agbno: number;
  blockcount: number;
  fileoff: number;
  unwritten: boolean;
}

/**
 * The file's extents of one AG, sorted by block, with the pieces a live
 * unmap removes cut out (a write over part of an extent, a truncate).
 */
class AgExtents {
  readonly list: OwnedExtent[] = [];

  /** Index of the first extent ending after agbno. */
  private firstEndingAfter(agbno: number): number {
    let lo = 0;
    let hi = this.list.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const e = this.list[mid]!;
      if (e.agbno + e.blockcount <= agbno) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  add(e: OwnedExtent): void {
    const at = this.firstEndingAfter(e.agbno);
    const next = this.list[at];
    if (next !== undefined && next.agbno < e.agbno + e.blockcount) {
      throw new RmapfsError('EFSCORRUPTED', `the rmap maps block ${e.agbno} to the file twice`);
    }
    this.list.splice(at, 0, e);
  }

  remove(agbno: number, blockcount: number): void {
    const end = agbno + blockcount;
    let i = this.firstEndingAfter(agbno);
    while (i < this.list.length && this.list[i]!.agbno < end) {
      const e = this.list[i]!;
      const eEnd = e.agbno + e.blockcount;
      const pieces: OwnedExtent[] = [];
      if (e.agbno < agbno) pieces.push({ ...e, blockcount: agbno - e.agbno });
      if (end < eEnd) pieces.push({ ...e, agbno: end, blockcount: eEnd - end, fileoff: e.fileoff + (end - e.agbno) });
      this.list.splice(i, 1, ...pieces);
      i += pieces.length;
    }
  }
}

/** What the rmap says one inode owns, collected AG by AG and kept current. */
class OwnedByRmapCollector {
  readonly extents: AgExtents[];
  /** The data fork's old btree blocks (its "bmbt block" records), per AG. */
  readonly oldTreeBlocks: ExtentBitmap[];
  /** Blocks of the attribute fork (its btree and values): part of the inode's block count. */
  attrBlocks = 0;
  /** The walk: AG, and the block in it below which every record has been read. */
  private agno = 0;
  private walkedTo = 0;
  recordsScanned = 0;
  liveUpdates = 0;
  private readonly hookFailure: HookFailure;
  private readonly hook = (u: RmapUpdate): void => this.onRmapUpdate(u);

  constructor(private readonly fsx: Rmapfs, private readonly ino: number) {
    this.hookFailure = new HookFailure(`block map repair of inode ${ino}`, 'the old block map is kept');
    const ags = fsx.fs.geo.agCount;
    this.extents = Array.from({ length: ags }, () => new AgExtents());
    this.oldTreeBlocks = Array.from({ length: ags }, () => new ExtentBitmap());
  }

  /** A record (or the part of one) the walk has passed: added to what is collected, or taken away. */
  private apply(op: 'map' | 'unmap', agno: number, r: RmapRecord): void {
    if ((r.flags & RMAP_ATTR_FORK) !== 0) {
      this.attrBlocks += op === 'map' ? r.blockcount : -r.blockcount;
    } else if ((r.flags & RMAP_BMBT_BLOCK) !== 0) {
      const blocks = this.oldTreeBlocks[agno]!;
      if (op === 'map') blocks.add(r.startblock, r.blockcount);
      else {
        if (!blocks.covers(r.startblock, r.blockcount)) {
          throw new RmapfsError('EFSCORRUPTED', `inode ${this.ino}: btree block ${r.startblock} freed, not one the rmap gave it`);
        }
        blocks.subtract(r.startblock, r.blockcount);
      }
    } else if (op === 'map') {
      this.extents[agno]!.add({ agbno: r.startblock, blockcount: r.blockcount, fileoff: r.offset, unwritten: (r.flags & RMAP_UNWRITTEN) !== 0 });
    } else {
      this.extents[agno]!.remove(r.startblock, r.blockcount);
    }
  }

  private onRmapUpdate(u: RmapUpdate): void {
    if (u.owner !== this.ino || u.agno > this.agno) return;
    // The part of the change below the walk (all of it in an AG already walked); the rest is read as it then is.
    const end = u.agno < this.agno ? u.startblock + u.blockcount : Math.min(u.startblock + u.blockcount, this.walkedTo);
    if (end <= u.startblock) return;
    this.liveUpdates++;
    this.apply(u.op, u.agno, { startblock: u.startblock, blockcount: end - u.startblock, owner: u.owner, offset: u.offset, flags: u.flags });
  }

  /** Walks every AG's rmap in slices; the hook stays registered until close(). */
  async collect(options: FileRepairOptions): Promise<void> {
    const alloc = this.fsx.fs.alloc;
    alloc.addRmapHook(this.hook, this.hookFailure.note);
    const pacer = new Pacer(options);
    const key = Buffer.alloc(alloc.ag(0).rmap.ops.keySize);
    while (this.agno < this.fsx.fs.geo.agCount) {
      // Each slice looks its first record up afresh (the tree may have changed since the last one): the one at
      // or before the walk's position, which may reach past it.
      const cur = alloc.ag(this.agno).rmap.cursor();
      encodeRmapKey(this.walkedTo, 0, 0, 0, key);
      let ok = cur.lookup(key, 0, 'le') || cur.first();
      let due = false;
      while (ok && !due) {
        const { block, offset } = cur.recordAt();
        const r = decodeRmap(block, offset);
        const end = r.startblock + r.blockcount;
        if (end > this.walkedTo) {
          this.recordsScanned++;
          if (r.owner === this.ino) {
            // Only the part past the walk: the part below it was read before (the record grew since).
            const from = Math.max(r.startblock, this.walkedTo);
            const cut = from - r.startblock;
            this.apply('map', this.agno, { ...r, startblock: from, blockcount: r.blockcount - cut, offset: (r.flags & RMAP_BMBT_BLOCK) !== 0 ? r.offset : r.offset + cut });
          }
          this.walkedTo = end;
        }
        due = pacer.due();
        ok = cur.increment();
      }
      if (!ok) {
        this.agno++;
        this.walkedTo = 0;
      }
      await pauseBetweenSlices(pacer, options, this.hookFailure, `block map repair of inode ${this.ino}`);
    }
    this.hookFailure.throwIfFailed();
  }

  close(): void {
    this.fsx.fs.alloc.removeRmapHook(this.hook);
  }

  /** The data extents in file order, as filesystem blocks, merged where they continue each other. */
  fileExtents(): Extent[] {
    const geo = this.fsx.fs.geo;
    const all: Extent[] = [];
    this.extents.forEach((ag, agno) => {
      for (const e of ag.list) all.push({ fileoff: e.fileoff, blockcount: e.blockcount, fsbno: geo.fsbno(agno, e.agbno), unwritten: e.unwritten });
    });
    all.sort((a, b) => a.fileoff - b.fileoff);
    const merged: Extent[] = [];
    for (const e of all) {
      const last = merged[merged.length - 1];
      if (last !== undefined && e.fileoff < last.fileoff + last.blockcount) {
        throw new RmapfsError('EFSCORRUPTED', `inode ${this.ino}: the rmap maps file block ${e.fileoff} twice; the old block map is kept`);
      }
      if (last !== undefined && last.fileoff + last.blockcount === e.fileoff && last.fsbno + last.blockcount === e.fsbno
        && last.unwritten === e.unwritten && geo.agnoOf(last.fsbno) === geo.agnoOf(e.fsbno) && last.blockcount + e.blockcount <= MAX_EXTENT_LEN) {
        last.blockcount += e.blockcount;
      } else {
        merged.push({ ...e });
      }
    }
    return merged;
  }
}

interface InstalledMap {
  extents: number;
  btreeBlocks: number;
  oldTreeBlocks: number;
  nblocks: number;
}

/** Inside the commit transaction: the new map into the inode (inline, or a new btree), the old btree reaped. */
function installBlockMap(fsx: Rmapfs, inode: Inode, extents: readonly Extent[], collector: OwnedByRmapCollector): InstalledMap {
  const fs = fsx.fs;
  const { buf, offset } = inode.dataFork();
  let btreeBlocks = 0;
  // The fork's bytes hold inline extents only (a btree's root is in the core): cleared either way.
  buf.data.fill(0, offset, offset + DATA_FORK_SIZE);
  if (extents.length <= MAX_INLINE_EXTENTS) {
    extents.forEach((e, i) => encodeExtent(e, buf.data, offset + i * EXTENT_SIZE));
    fs.cache.markDirty(buf);
    inode.format = FORK_EXTENTS;
    inode.dataRoot = 0;
    inode.dataHeight = 0;
  } else {
    fs.cache.markDirty(buf);
    const tree = new Btree(bmapBtreeOps, new ForkBtreeStorage(inode, 'data', fs.alloc, fs.geo, true));
    const need = computeBulkLoadGeometry(tree, extents.length, 1).totalBlocks;
    // Fresh blocks (never busy ones: they are written in place), near the file's data, owned as its btree blocks.
    const blocks: number[] = [];
    for (let i = 0; i < need; i++) {
      const goal = i === 0 ? extents[0]!.fsbno : blocks[i - 1]! + 1;
      blocks.push(fs.alloc.alloc({ owner: inode.ino, flags: RMAP_BMBT_BLOCK, minLen: 1, maxLen: 1, goal, useReserve: true }).fsbno);
    }
    const { loaded } = writeStagedBtree(fs, tree, extents.length, listSource(extents, encodeExtent, 'extents'), blocks, `inode ${inode.ino}`);
    inode.format = FORK_BTREE;
    inode.dataRoot = loaded.ptr;
    inode.dataHeight = loaded.height;
    btreeBlocks = need;
  }
  inode.nextents = extents.length;
  let oldTreeBlocks = 0;
  collector.oldTreeBlocks.forEach((blocks, agno) => {
    if (blocks.count > 0) oldTreeBlocks += reapInodeBlocks(fs.alloc, agno, blocks, inode.ino, RMAP_BMBT_BLOCK);
  });
  const dataBlocks = extents.reduce((n, e) => n + e.blockcount, 0);
  inode.nblocks = dataBlocks + btreeBlocks + collector.attrBlocks;
  return { extents: extents.length, btreeBlocks, oldTreeBlocks, nblocks: inode.nblocks };
}

/**
 * Rebuilds inode ino's block map online from the rmap (which must be sound
 * in every AG: it is the source). On failure the old map stays in place.
 * The result's path is the caller's to find (null here).
 */
export async function repairBlockMap(fsx: Rmapfs, ino: number, options: FileRepairOptions = {}): Promise<FileRepairResult> {
  const fs = fsx.fs;
  const first = fsx.inodes.get(ino);
  // A directory's data fork holds its entries, not a block map: the directory repair's.
  if ((first.mode & S_IFMT) === S_IFDIR) return { type: 'bmap', ino, path: null, changes: [], commitPauseMs: 0 };
  const sickRmaps = fs.alloc.ags.filter((a) => a.health.isSick('rmapbt')).map((a) => a.agno);
  if (sickRmaps.length > 0) {
    throw new RmapfsError('EFSCORRUPTED', `inode ${ino}: the block map is rebuilt from the rmap, and the rmap btree of AG ${sickRmaps.join(', ')} is damaged`);
  }
  const generation = first.generation;
  const t0 = process.hrtime.bigint();
  const collector = new OwnedByRmapCollector(fsx, ino);
  try {
    await collector.collect(options);
    const scanMs = Number(process.hrtime.bigint() - t0) / 1e6;
    // Nothing runs between here and the commit: the hook has nothing more to hear.
    collector.close();
    const extents = collector.fileExtents();
    const before = fsx.inodes.get(ino);
    if (before.generation !== generation) throw new RmapfsError('ENOENT', `inode ${ino} was freed and reused during its block map repair`);
    const oldCount = before.nextents;
    const oldBlocks = before.nblocks;
    const oldFormat = before.format;
    if (oldFormat === FORK_LOCAL) {
      if (extents.length > 0) throw new RmapfsError('EFSCORRUPTED', `inode ${ino} holds local data, yet the rmap gives it ${extents.length} extents`);
      return { type: 'bmap', ino, path: null, changes: [], commitPauseMs: 0 };
    }
    const c0 = process.hrtime.bigint();
    const installed = fs.run(() => installBlockMap(fsx, fsx.inodes.get(ino), extents, collector));
    const commitPauseMs = Number(process.hrtime.bigint() - c0) / 1e6;
    const how = installed.btreeBlocks === 0 ? 'inline' : `in a btree of ${installed.btreeBlocks} blocks`;
    const changes = [`block map rebuilt from the rmap: ${installed.extents} extents ${how}`
      + `${oldCount !== installed.extents ? ` (the inode counted ${oldCount})` : ''}`
      + `${installed.oldTreeBlocks > 0 ? `, ${installed.oldTreeBlocks} old btree blocks freed` : ''}`];
    if (oldBlocks !== installed.nblocks) changes.push(`block count ${oldBlocks} -> ${installed.nblocks}`);
    log('inode %d: block map rebuilt: %d extents, %d btree blocks (old %d); %d rmap records, %d live updates; scan %d ms, pause %s ms',
      ino, installed.extents, installed.btreeBlocks, installed.oldTreeBlocks, collector.recordsScanned, collector.liveUpdates,
      Math.round(scanMs), commitPauseMs.toFixed(1));
    return { type: 'bmap', ino, path: null, changes, commitPauseMs };
  } finally {
    collector.close();
  }
}
