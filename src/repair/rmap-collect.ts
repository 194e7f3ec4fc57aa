/**
 * The first half of online rmap repair: rebuild what the rmap btrees of one
 * or more AGs should hold, each in an in-memory rmap btree (an xfile), while
 * the filesystem stays in use. One inode scan serves every AG repaired.
 *
 * 1. Collect each AG's static metadata owners (headers, log, inode btree
 *    blocks, inode chunks). Not the "ag" owner's (free-space and rmap btree
 *    blocks, the free list): they move without rmap changes, so the commit
 *    step takes them from the AG as it is then.
 * 2. Scan every inode in inode-number order -- walking the inode btrees, in
 *    slices paced to yield to foreground requests -- adding each file's
 *    mappings to the in-memory btree of the AG they fall in.
 * 3. Meanwhile a live hook applies every committed rmap change in those AGs
 *    to the in-memory copy when its owner has been scanned already (or is a
 *    metadata owner, collected in step 1) and ignores it otherwise -- the
 *    scan will see it when it gets there.
 *
 * A file with many mappings is not scanned in one go: its mappings are read
 * at once (a snapshot, consistent with the file at that moment), then added
 * piece by piece across slices; live updates arriving meanwhile wait in a
 * queue and are applied, in order, after the last piece -- so the in-memory
 * btree always equals "snapshot, then every later change".
 *
 * The old rmap btree's own blocks are left out: the repair replaces them
 * (the new btree's blocks are added when they are reserved).
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
import { Pacer } from '../fs/pacer';
import type { PacerOptions } from '../fs/pacer';
import type { Rmapfs } from '../fs/rmapfs';

const log = createDebug('rmapfs:repair');

export interface ScanProgress {
  inodesScanned: number;
  /** Inodes in use when the scan started (files created meanwhile make the count pass it). */
  inodesTotal: number;
}

export interface CollectOptions extends PacerOptions {
  /** Inodes per slice at most (tests use small numbers to force many slices). */
  sliceInodes?: number;
  /** Called between slices (tests use it to run foreground work there). */
  betweenSlices?: () => void | Promise<void>;
  /** Set to stop the scan at the next slice. */
  cancelled?: () => boolean;
  /** Told how far the scan got, after each slice. */
  onProgress?: (p: ScanProgress) => void;
}

export interface CollectResult {
  inodesScanned: number;
  hookUpdatesApplied: number;
  hookUpdatesIgnored: number;
  /** Live updates that waited for a large file's mappings to be added first. */
  hookUpdatesQueued: number;
  slices: number;
  /** Slices ended early because a FUSE request was waiting. */
  yieldsToForeground: number;
}

/** One mapping found by the scan, for the AG it lies in. */
interface Mapping {
  agno: number;
  record: RmapRecord;
}

/** A large file's mappings still to add; live updates wait in `queued` until they are. */
interface PendingInode {
  ino: number;
  mappings: Mapping[];
  next: number;
  queued: RmapUpdate[];
}

/** Files with more mappings than this are added across slices (snapshot + queue). */
const PIECE_MAPPINGS = 64;

export class RmapCollector {
  private readonly mems = new Map<number, MemBtree>();
  /** Inodes with a number up to this one have been scanned (-1: none yet). */
  private scannedUpTo = -1;
  private pending: PendingInode | null = null;
  private hookError: unknown = null;
  private readonly hook: RmapHook;
  private hooked = false;
  private applied = 0;
  private ignored = 0;
  private queued = 0;

  constructor(private readonly fsx: Rmapfs, agnos: number | readonly number[]) {
    for (const agno of typeof agnos === 'number' ? [agnos] : agnos) {
      fsx.fs.alloc.ag(agno); // throws for an AG that does not exist
      this.mems.set(agno, new MemBtree(rmapBtreeOps, { cacheBlocks: 1024 }));
    }
    this.hook = (u) => this.onUpdate(u);
  }

  /** The AGs collected (still held: not yet released). */
  get agnos(): number[] {
    return [...this.mems.keys()];
  }

  /** AG agno's in-memory rmap btree. */
  memOf(agno: number): MemBtree {
    const mem = this.mems.get(agno);
    if (mem === undefined) throw new RmapfsError('EINVAL', `AG ${agno} is not being collected`);
    return mem;
  }

  /** A failure of the live hook (the collection is then useless), or null. */
  get failure(): unknown {
    return this.hookError;
  }

  private map(agno: number, r: RmapRecord): void {
    rmapMap(this.memOf(agno).tree, r, `repair AG ${agno}`);
  }

  private apply(u: RmapUpdate): void {
    const r = { startblock: u.startblock, blockcount: u.blockcount, owner: u.owner, offset: u.offset, flags: u.flags };
    const tree = this.memOf(u.agno).tree;
    if (u.op === 'map') rmapMap(tree, r, `repair AG ${u.agno}`);
    else rmapUnmap(tree, r, `repair AG ${u.agno}`);
    this.applied++;
  }

  /** A committed rmap change in the live filesystem. */
  private onUpdate(u: RmapUpdate): void {
    // The "ag" owner's records are redone from the AG at commit time: never collected.
    if (!this.mems.has(u.agno) || this.hookError !== null || u.owner === OWN_AG) return;
    if (isInodeOwner(u.owner) && u.owner > this.scannedUpTo) {
      this.ignored++;
      return;
    }
    if (this.pending !== null) {
      // A file's snapshot is half added: later changes go after it, in order.
      this.pending.queued.push(u);
      this.queued++;
      return;
    }
    try {
      this.apply(u);
    } catch (e) {
      // A hook failure aborts the repair, never the user's operation.
      this.hookError = e;
    }
  }

  /** Step 1: an AG's own metadata, as it is now (hooked from the same moment). */
  private collectStatic(ag: AllocGroup): void {
    const geo = this.fsx.fs.geo;
    const owned: { start: number; len: number; owner: number }[] = [{ start: 0, len: 2, owner: OWN_FS }];
    if (ag.agno === 0) owned.push({ start: geo.logStart, len: geo.logBlocks, owner: OWN_LOG });
    ag.ino.visitBlocks((ptr) => owned.push({ start: ptr, len: 1, owner: OWN_INOBT }));
    ag.ino.forEach((b, off) => {
      owned.push({ start: decodeInobt(b, off).startino / INODES_PER_BLOCK, len: CHUNK_BLOCKS, owner: OWN_INODES });
    });
    owned.sort((a, b) => a.start - b.start);
    for (const o of owned) this.map(ag.agno, { startblock: o.start, blockcount: o.len, owner: o.owner, offset: 0, flags: 0 });
  }

  /**
   * The first inode in use with a number above `after`, or null: a lookup in
   * the inode btrees, so inodes created or freed between slices are seen as
   * they are now.
   */
  private nextInode(after: number): number | null {
    const geo = this.fsx.fs.geo;
    let agno = after < 0 ? 0 : geo.inoAgno(after);
    let from = after < 0 ? 0 : geo.inoAgino(after) + 1;
    const key = Buffer.alloc(4);
    for (; agno < geo.agCount; agno++, from = 0) {
      const cur = this.fsx.fs.alloc.ag(agno).ino.cursor();
      key.writeUInt32BE(from - (from % INODES_PER_CHUNK));
      let ok = cur.lookup(key, 0, 'ge');
      while (ok) {
        const r = decodeInobt(cur.record(), 0);
        for (let i = Math.max(0, from - r.startino); i < INODES_PER_CHUNK; i++) {
          if (!isInodeFree(r, i)) return geo.ino(agno, r.startino + i);
        }
        ok = cur.increment();
      }
    }
    return null;
  }

  /** Every mapping of one inode that lies in an AG being collected. */
  private mappingsOf(ino: number): Mapping[] {
    const fs = this.fsx.fs;
    const geo = fs.geo;
    const out: Mapping[] = [];
    const inode = this.fsx.inodes.handle(ino);
    if (inode.mode === 0) return out; // freed and not yet reused
    const add = (fsbno: number, len: number, offset: number, flags: number): void => {
      const agno = geo.agnoOf(fsbno);
      if (this.mems.has(agno)) out.push({ agno, record: { startblock: geo.agbnoOf(fsbno), blockcount: len, owner: ino, offset, flags } });
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
    return out;
  }

  /** Adds the pending file's next mappings; true when it is done (its queued updates applied). */
  private addPiece(pacer: Pacer): boolean {
    const p = this.pending!;
    while (p.next < p.mappings.length) {
      const m = p.mappings[p.next++]!;
      this.map(m.agno, m.record);
      if (p.next < p.mappings.length && pacer.due()) return false;
    }
    this.pending = null;
    for (const u of p.queued) this.apply(u);
    return true;
  }

  /** Runs steps 1-3; the in-memory btrees then hold what the AGs' rmaps should. */
  async collect(options: CollectOptions = {}): Promise<CollectResult> {
    const alloc = this.fsx.fs.alloc;
    const pacer = new Pacer({ ...options, maxUnits: options.sliceInodes });
    let inodesTotal = 0;
    for (const ag of alloc.ags) inodesTotal += ag.inodeCount - ag.freeInodes;
    for (const agno of this.mems.keys()) this.collectStatic(alloc.ag(agno));
    alloc.addRmapHook(this.hook);
    this.hooked = true;
    let inodesScanned = 0;
    const endSlice = async (): Promise<void> => {
      if (this.hookError !== null) throw this.hookError;
      await pacer.pause();
      await options.betweenSlices?.();
      if (this.hookError !== null) throw this.hookError;
      if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of AG ${this.agnos.join(', ')} cancelled before its commit`);
      options.onProgress?.({ inodesScanned, inodesTotal });
    };
    for (;;) {
      if (this.pending !== null) {
        if (!this.addPiece(pacer)) {
          await endSlice();
          continue;
        }
        inodesScanned++;
        if (pacer.due()) await endSlice();
        continue;
      }
      const ino = this.nextInode(this.scannedUpTo);
      if (ino === null) break;
      const mappings = this.mappingsOf(ino);
      this.scannedUpTo = ino;
      if (mappings.length > PIECE_MAPPINGS) {
        this.pending = { ino, mappings, next: 0, queued: [] };
        continue;
      }
      for (const m of mappings) this.map(m.agno, m.record);
      inodesScanned++;
      if (pacer.due()) await endSlice();
    }
    // Every inode number is scanned now, those of files created from here on included.
    this.scannedUpTo = Number.MAX_SAFE_INTEGER;
    if (this.hookError !== null) throw this.hookError;
    options.onProgress?.({ inodesScanned, inodesTotal });
    log('AG %s: collected from %d inodes in %d slices (%d ended for foreground requests; %d live updates applied, %d left to the scan)',
      this.agnos.join(','), inodesScanned, pacer.slices, pacer.yieldsToForeground, this.applied, this.ignored);
    return { inodesScanned, hookUpdatesApplied: this.applied, hookUpdatesIgnored: this.ignored, hookUpdatesQueued: this.queued,
      slices: pacer.slices,
      yieldsToForeground: pacer.yieldsToForeground };
  }

  /**
   * Stops keeping AG agno's copy up to date and frees it (its repair committed
   * or gave up). The hook stays for the other AGs until they are released too.
   */
  release(agno: number): void {
    this.mems.get(agno)?.close();
    this.mems.delete(agno);
    if (this.mems.size === 0 && this.hooked) {
      this.fsx.fs.alloc.removeRmapHook(this.hook);
      this.hooked = false;
    }
  }

  close(): void {
    for (const agno of [...this.mems.keys()]) this.release(agno);
    if (this.hooked) {
      this.fsx.fs.alloc.removeRmapHook(this.hook);
      this.hooked = false;
    }
  }
}
