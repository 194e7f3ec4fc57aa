/**
 * The first half of online rmap repair: rebuild what one AG's rmap btree
 * should hold, in an in-memory rmap btree (an xfile), while the filesystem
 * stays in use.
 *
 * 1. Collect the AG's static metadata owners (headers, log, free-space and
 *    rmap btree blocks and the free list, inode btree blocks, inode chunks).
 * 2. Scan every inode in inode-number order, in slices that yield to the
 *    event loop, adding each file's mappings that fall in this AG.
 * 3. Meanwhile a live hook applies every committed rmap change in this AG to
 *    the in-memory copy when its owner has been scanned already (or is a
 *    metadata owner, collected in step 1) and ignores it otherwise -- the
 *    scan will see it when it gets there.
 *
 * The old rmap btree's own blocks are left out: the repair replaces them
 * (the new btree's blocks are added when they are reserved). Blocks can move
 * between the free list and the rmap btree during the scan without an rmap
 * change (both are owned by "ag"), so the commit step must redo the "ag"
 * records from the AG as it is then.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { MemBtree } from '../btree/mem-btree';
import type { AllocGroup } from '../alloc/ag';
import type { RmapHook, RmapUpdate } from '../alloc/alloc';
import { isInodeOwner, OWN_AG, OWN_FS, OWN_INOBT, OWN_INODES, OWN_LOG } from '../format/owners';
import { CHUNK_BLOCKS, INODES_PER_BLOCK } from '../format/geometry';
import { decodeInobt, INODES_PER_CHUNK, isInodeFree } from '../inode/inode-btree';
import { FORK_LOCAL } from '../inode/inode-format';
import { BlockMap } from '../file/bmap';
import { Directory } from '../dir/dir';
import { AttrFork, valueBlocks } from '../attr/attr';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, rmapBtreeOps } from '../rmap/rmap-btree';
import type { RmapRecord } from '../rmap/rmap-btree';
import { rmapMap, rmapUnmap } from '../rmap/rmap';
import type { Rmapfs } from '../fs/rmapfs';

const log = createDebug('rmapfs:repair');

export interface CollectOptions {
  /** Inodes per slice of the scan (between yields to the event loop). */
  sliceInodes?: number;
  /** Called between slices (tests use it to run foreground work there). */
  betweenSlices?: () => void | Promise<void>;
  /** Set to stop the scan at the next slice. */
  cancelled?: () => boolean;
}

export interface CollectResult {
  records: number;
  inodesScanned: number;
  hookUpdatesApplied: number;
  hookUpdatesIgnored: number;
  slices: number;
}

export class RmapCollector {
  readonly mem: MemBtree;
  private readonly ag: AllocGroup;
  /** Inodes with a number up to this one have been scanned (-1: none yet). */
  private scannedUpTo = -1;
  private hookError: unknown = null;
  private readonly hook: RmapHook;
  private applied = 0;
  private ignored = 0;

  constructor(private readonly fsx: Rmapfs, readonly agno: number) {
    this.ag = fsx.fs.alloc.ag(agno);
    this.mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 1024 });
    this.hook = (u) => this.onUpdate(u);
  }

  private map(r: RmapRecord): void {
    rmapMap(this.mem.tree, r, `repair AG ${this.agno}`);
  }

  /** A committed rmap change in the live filesystem. */
  private onUpdate(u: RmapUpdate): void {
    if (u.agno !== this.agno || this.hookError !== null) return;
    if (isInodeOwner(u.owner) && u.owner > this.scannedUpTo) {
      this.ignored++;
      return;
    }
    try {
      const r = { startblock: u.startblock, blockcount: u.blockcount, owner: u.owner, offset: u.offset, flags: u.flags };
      if (u.op === 'map') this.map(r);
      else rmapUnmap(this.mem.tree, r, `repair AG ${this.agno}`);
      this.applied++;
    } catch (e) {
      // A hook failure aborts the repair, never the user's operation.
      this.hookError = e;
    }
  }

  /** Step 1: the AG's own metadata, as it is now (hooked from the same moment). */
  private collectStatic(): void {
    const ag = this.ag;
    const geo = this.fsx.fs.geo;
    const owned: { start: number; len: number; owner: number }[] = [{ start: 0, len: 2, owner: OWN_FS }];
    if (ag.agno === 0) owned.push({ start: geo.logStart, len: geo.logBlocks, owner: OWN_LOG });
    ag.bno.visitBlocks((ptr) => owned.push({ start: ptr, len: 1, owner: OWN_AG }));
    ag.cnt.visitBlocks((ptr) => owned.push({ start: ptr, len: 1, owner: OWN_AG }));
    for (const b of ag.agflBlocks()) owned.push({ start: b, len: 1, owner: OWN_AG });
    ag.ino.visitBlocks((ptr) => owned.push({ start: ptr, len: 1, owner: OWN_INOBT }));
    ag.ino.forEach((b, off) => {
      owned.push({ start: decodeInobt(b, off).startino / INODES_PER_BLOCK, len: CHUNK_BLOCKS, owner: OWN_INODES });
    });
    owned.sort((a, b) => a.start - b.start);
    for (const o of owned) this.map({ startblock: o.start, blockcount: o.len, owner: o.owner, offset: 0, flags: 0 });
  }

  /** The used inode numbers of one AG's chunk record, in order. */
  private static usedInodes(fsx: Rmapfs, agno: number): number[] {
    const out: number[] = [];
    fsx.fs.alloc.ag(agno).ino.forEach((b, off) => {
      const r = decodeInobt(b, off);
      for (let i = 0; i < INODES_PER_CHUNK; i++) if (!isInodeFree(r, i)) out.push(fsx.fs.geo.ino(agno, r.startino + i));
    });
    return out;
  }

  /** Adds one inode's mappings that lie in this AG. */
  private scanInode(ino: number): void {
    const fs = this.fsx.fs;
    const geo = fs.geo;
    const inode = this.fsx.inodes.handle(ino);
    if (inode.mode === 0) return; // freed since the list was taken
    const mine = (fsbno: number): boolean => geo.agnoOf(fsbno) === this.agno;
    const add = (fsbno: number, len: number, offset: number, flags: number): void => {
      if (mine(fsbno)) this.map({ startblock: geo.agbnoOf(fsbno), blockcount: len, owner: ino, offset, flags });
    };
    const ctx = { device: fs.device, alloc: fs.alloc, geo, noteDataWritten: () => undefined };
    if (inode.isDir) {
      new Directory(inode, fs.alloc, geo).tree.visitBlocks((ptr) => add(ptr, 1, 0, RMAP_BMBT_BLOCK));
    } else if (inode.format !== FORK_LOCAL) {
      const map = new BlockMap(inode, fs.alloc, geo);
      map.btree?.visitBlocks((ptr) => add(ptr, 1, 0, RMAP_BMBT_BLOCK));
      for (const e of map.extents()) add(e.fsbno, e.blockcount, e.fileoff, 0);
    }
    const attrs = new AttrFork(inode, ctx);
    attrs.btree?.visitBlocks((ptr) => add(ptr, 1, 0, (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK) >>> 0));
    if (attrs.btree !== null) {
      for (const e of attrs.list()) if (e.valueBlock !== 0) add(e.valueBlock, valueBlocks(e.valueLen), 0, RMAP_ATTR_FORK);
    }
  }

  /** Runs steps 1-3; the in-memory btree then holds what the AG's rmap should. */
  async collect(options: CollectOptions = {}): Promise<CollectResult> {
    const slice = options.sliceInodes ?? 256;
    const alloc = this.fsx.fs.alloc;
    this.collectStatic();
    alloc.addRmapHook(this.hook);
    let inodesScanned = 0;
    let slices = 0;
    try {
      for (let agno = 0; agno < this.fsx.fs.geo.agCount; agno++) {
        // Inode numbers grow with the AG number: scanning AG by AG is inode-number order.
        let list = RmapCollector.usedInodes(this.fsx, agno);
        let i = 0;
        while (i < list.length) {
          for (const end = Math.min(list.length, i + slice); i < end; i++) {
            this.scanInode(list[i]!);
            this.scannedUpTo = list[i]!;
            inodesScanned++;
          }
          if (this.hookError !== null) throw this.hookError;
          slices++;
          await new Promise<void>((r) => setImmediate(r));
          await options.betweenSlices?.();
          if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of AG ${this.agno} cancelled before its commit`);
          // Inodes created meanwhile below the cursor have been seen by the hook; take the rest fresh.
          const last = this.scannedUpTo;
          list = RmapCollector.usedInodes(this.fsx, agno).filter((x) => x > last);
          i = 0;
        }
        // Everything in this AG's inode range is scanned, new inodes included.
        this.scannedUpTo = Math.max(this.scannedUpTo, this.fsx.fs.geo.ino(agno + 1, 0) - 1);
      }
      if (this.hookError !== null) throw this.hookError;
    } finally {
      alloc.removeRmapHook(this.hook);
    }
    const records = this.mem.tree.count();
    log('AG %d: collected %d records from %d inodes in %d slices (%d live updates applied, %d left to the scan)',
      this.agno, records, inodesScanned, slices, this.applied, this.ignored);
    return { records, inodesScanned, hookUpdatesApplied: this.applied, hookUpdatesIgnored: this.ignored, slices };
  }

  close(): void {
    this.mem.close();
  }
}
