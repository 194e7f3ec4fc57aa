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
 * A file whose block map is a btree (thousands of extents, maybe) is not
 * scanned in one go, which would hold up foreground requests for a
 * millisecond or more: its metadata blocks are taken at once, its data
 * extents a piece at a time in file order, across slices. A cursor in the
 * file (`dataCursor`) splits it: the in-memory btree holds the file's data
 * mappings below the cursor, exactly, as they are now -- live updates below it
 * apply, those at or past it are the scan's to see, and one that straddles it
 * is cut there. Each piece reads the extents from the cursor on (cutting one
 * that starts before it) and moves the cursor to the end of the last.
 * An inode with many metadata blocks (a large directory) is taken as a
 * snapshot, added a few blocks per unit, with every live update queued
 * behind it until its last block is in (PendingSnapshot).
 *
 * The old rmap btree's own blocks are left out: the repair replaces them
 * (the new btree's blocks are added when they are reserved).
 *
 * A forward-map extent that cannot be right -- over an AG's fixed metadata,
 * outside the filesystem or across an AG's end, or on blocks already given
 * to another owner (the static owners come first, then inodes in number
 * order) -- is left out rather than failing the whole rebuild: the inode's
 * fork is sick (`sickForks`, in the repair's report), its block map is the
 * one to repair (from the rebuilt rmap), as xfs_repair leaves a bad extent
 * out and clears the fork.
 */
import createDebug from 'debug';
import { RmapfsError, isCorruption } from '../errors';
import { MemBtree } from '../btree/mem-btree';
import type { AllocGroup } from '../alloc/ag';
import type { RmapHook, RmapUpdate } from '../alloc/alloc';
import { isInodeOwner, OWN_AG } from '../format/owners';
import { impossibleFileExtent, staticOwners } from '../alloc/ag-owners';
import { InodeScanCursor } from '../inode/iscan';
import { FORK_LOCAL } from '../inode/inode-format';
import { BlockMap } from '../file/bmap';
import { attrForkOwned, dataForkOwned, hasBtreeData, PAUSE, rmapFlagsOf } from '../file/owned';
import type { OwnedSteps } from '../file/owned';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_REC_SIZE, RMAP_UNWRITTEN, decodeRmap, encodeRmap, rmapBtreeOps } from '../rmap/rmap-btree';
import { MappingDigest } from '../rmap/rmap-digest';
import type { RmapBuilt } from '../rmap/rmap-digest';
import type { RmapRecord } from '../rmap/rmap-btree';
import { rmapContinues, rmapMap, rmapUnmap } from '../rmap/rmap';
import { Pacer } from '../io/pacer';
import type { PacerOptions } from '../io/pacer';
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
  /**
   * Nothing else changes the filesystem (the offline repair): the mappings
   * are gathered per AG in scan order, sorted by block at the end and bulk
   * loaded into the in-memory btree -- as xfs_repair builds its rmap -- not
   * inserted one by one (a descent and an insert each, all over the xfile:
   * most of the scan's time at 1M records). Same tree, same mappings left
   * out: an AG whose mappings overlap, or a live update after all, goes the
   * one-by-one way, in scan order.
   */
  unmounted?: boolean;
}

/** A fork of one inode holding a mapping the rebuilt rmap leaves out (see the module note). */
export interface SickFork {
  ino: number;
  fork: 'data' | 'attr';
  /** One line: the mapping and why it was left out. */
  what: string;
}

export interface CollectResult {
  inodesScanned: number;
  hookUpdatesApplied: number;
  hookUpdatesIgnored: number;
  /** Live updates of a file being read in pieces that straddled its data cursor (cut there). */
  hookUpdatesClipped: number;
  /** Live updates that waited for an inode's snapshot (many metadata mappings) to be added first. */
  hookUpdatesQueued: number;
  slices: number;
  /** Slices ended early because a FUSE request was waiting. */
  yieldsToForeground: number;
  /** The forks whose impossible mappings were left out. */
  sickForks: SickFork[];
}

/** One mapping found by the scan: the rmap record, and the AG it lies in. */
interface Mapping extends RmapRecord {
  agno: number;
}

/** Doubles per gathered mapping: startblock, blockcount, owner, offset, flags, and its place in the scan. */
const GATHERED_FIELDS = 6;

/** One AG's mappings in scan order (CollectOptions.unmounted), numbers only: a million objects would outlive the scavenger. */
class GatheredMappings {
  private fields = new Float64Array(GATHERED_FIELDS * 4096);
  count = 0;

  push(r: RmapRecord, seq: number): void {
    if ((this.count + 1) * GATHERED_FIELDS > this.fields.length) {
      const grown = new Float64Array(this.fields.length * 2);
      grown.set(this.fields);
      this.fields = grown;
    }
    const f = this.fields;
    const at = this.count++ * GATHERED_FIELDS;
    f[at] = r.startblock;
    f[at + 1] = r.blockcount;
    f[at + 2] = r.owner;
    f[at + 3] = r.offset;
    f[at + 4] = r.flags;
    f[at + 5] = seq;
  }

  record(i: number): RmapRecord {
    const f = this.fields;
    const at = i * GATHERED_FIELDS;
    return { startblock: f[at]!, blockcount: f[at + 1]!, owner: f[at + 2]!, offset: f[at + 3]!, flags: f[at + 4]! };
  }

  seq(i: number): number {
    return this.fields[i * GATHERED_FIELDS + 5]!;
  }

  /** The file owners' mappings, digested (rmap-digest.ts): what the check's walk of the forks finds again. */
  filesDigest(): MappingDigest {
    const d = new MappingDigest();
    const f = this.fields;
    for (let at = 0; at < this.count * GATHERED_FIELDS; at += GATHERED_FIELDS) {
      if (isInodeOwner(f[at + 2]!)) d.add(f[at + 2]!, f[at]!, f[at + 1]!, f[at + 3]!, f[at + 4]!);
    }
    return d;
  }

  /**
   * The mappings' places in block order (ties in scan order). As one number
   * each -- startblock * count + place, exact below 2^53 -- a numeric sort
   * does it without a comparator call per comparison (1M records: ~3x less).
   */
  private blockOrder(): Uint32Array {
    const f = this.fields;
    const n = this.count;
    const order = new Uint32Array(n);
    let maxStart = 0;
    let minStart = 0;
    for (let i = 0; i < n; i++) {
      const start = f[i * GATHERED_FIELDS]!;
      if (start > maxStart) maxStart = start;
      if (start < minStart) minStart = start;
    }
    if (minStart < 0 || (maxStart + 1) * n > Number.MAX_SAFE_INTEGER) {
      for (let i = 0; i < n; i++) order[i] = i;
      return order.sort((a, b) => f[a * GATHERED_FIELDS]! - f[b * GATHERED_FIELDS]! || a - b);
    }
    const keys = new Float64Array(n);
    for (let i = 0; i < n; i++) keys[i] = f[i * GATHERED_FIELDS]! * n + i;
    keys.sort();
    for (let i = 0; i < n; i++) order[i] = keys[i]! % n;
    return order;
  }

  /**
   * The records merged (rmapContinues) in block order, encoded, or null when
   * two overlap or one maps no blocks (then only inserts in scan order say
   * which claim is left out, or fail as they always did).
   */
  sortedRecords(): { data: Buffer; records: number } | null {
    const order = this.blockOrder();
    const data = Buffer.allocUnsafe(this.count * RMAP_REC_SIZE);
    let records = 0;
    let cur: RmapRecord | null = null;
    for (let k = 0; k < order.length; k++) {
      const r = this.record(order[k]!);
      if (r.blockcount <= 0) return null;
      if (cur !== null && r.startblock < cur.startblock + cur.blockcount) return null;
      if (cur !== null && rmapContinues(cur, r)) {
        cur.blockcount += r.blockcount;
        continue;
      }
      if (cur !== null) encodeRmap(cur, data, RMAP_REC_SIZE * records++);
      cur = r;
    }
    if (cur !== null) encodeRmap(cur, data, RMAP_REC_SIZE * records++);
    return { data, records };
  }
}

/** The file owners' records among `records` encoded records, digested (rmap-digest.ts): what the check's walk of the rmap finds again. */
function filesRecordsDigest(data: Buffer, records: number): MappingDigest {
  const d = new MappingDigest();
  for (let i = 0; i < records; i++) {
    const r = decodeRmap(data, i * RMAP_REC_SIZE);
    if (isInodeOwner(r.owner)) d.add(r.owner, r.startblock, r.blockcount, r.offset, r.flags);
  }
  return d;
}

/** A file being read a piece at a time: its data extents from file block `dataCursor` on are still to add. */
interface PendingInode {
  ino: number;
  dataCursor: number;
}

/**
 * An inode with many metadata mappings (a directory of a thousand names has
 * ~100 blocks): they are read at once -- a snapshot -- and added a few per
 * unit of work; live updates meanwhile (of every owner: one of them may take
 * a block this inode gives up) wait in `queued` and are applied in order
 * after the last, so the in-memory btree is "snapshot, then every change
 * since".
 */
interface PendingSnapshot {
  ino: number;
  mappings: Mapping[];
  next: number;
  queued: RmapUpdate[];
}

/** Inodes with more metadata mappings than this are added across units (a snapshot). */
const SNAPSHOT_PIECE = 16;

/** Xfile pages cached for all the AGs of one collection together (64 MiB). */
const COLLECT_CACHE_PAGES = 16384;

/** Data extents read and added per unit of work for a file whose block map is a btree. */
const PIECE_EXTENTS = 8;

/**
 * The same offline (CollectOptions.unmounted): nothing waits on the scan, and
 * each piece is a descent of the block-map btree from its root -- at 8 a
 * piece, 1M records were ~125k descents (test/repair/rmap-gather.test.ts
 * has a file of 300 extents: two pieces).
 */
const PIECE_EXTENTS_UNMOUNTED = 256;

export class RmapCollector {
  private readonly mems = new Map<number, MemBtree>();
  /** Inodes with a number up to this one have been scanned (-1: none yet). */
  private scannedUpTo = -1;
  private pending: PendingInode | null = null;
  private snapshot: PendingSnapshot | null = null;
  private hookError: unknown = null;
  private readonly hook: RmapHook;
  private hooked = false;
  private applied = 0;
  private ignored = 0;
  /** Live updates of a file being read in pieces that straddled its data cursor (cut there). */
  private clipped = 0;
  /** Live updates that waited for an inode's snapshot to be added first. */
  private queued = 0;
  /** Where the scan finds the next inode in use. */
  private readonly iscan: InodeScanCursor;
  private readonly where = new Map<number, string>();
  /** Forks with a mapping left out, by "ino fork" (the first mapping named: `seq` is its place in the scan). */
  private readonly sick = new Map<string, SickFork & { seq: number }>();
  /** Mappings the scan has handed to map() so far (their places in the scan). */
  private mapped = 0;
  /** Per AG bulk loaded from what it gathered (offline), what it built (see builtOf). */
  private readonly built = new Map<number, RmapBuilt>();
  /** Per AG, the mappings gathered to be sorted (CollectOptions.unmounted); null: inserted as they come. */
  private gathered: Map<number, GatheredMappings> | null = null;
  /** Data extents per piece of a file read in pieces (more when unmounted). */
  private pieceExtents = PIECE_EXTENTS;

  constructor(private readonly fsx: Rmapfs, agnos: number | readonly number[]) {
    const list = typeof agnos === 'number' ? [agnos] : agnos;
    this.iscan = new InodeScanCursor(fsx.fs.alloc, fsx.fs.geo);
    // The xfile pages the buffer caches keep, shared out among the AGs: a bounded window on the xfiles (the
    // records themselves live there), but wide enough for the pages that inserts all over the key space
    // touch -- ~2,400 per AG at 250k records. Each page that falls out costs a read, a fresh buffer and a
    // write-back the next time an insert lands there: with 1,024 pages an AG, 120k of them in a 1M scan.
    const cacheBlocks = Math.max(1024, Math.floor(COLLECT_CACHE_PAGES / Math.max(1, list.length)));
    for (const agno of list) {
      fsx.fs.alloc.ag(agno); // throws for an AG that does not exist
      this.mems.set(agno, new MemBtree(rmapBtreeOps, { cacheBlocks }));
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

  /**
   * Where the scan is: the last inode it reached, and -- while that file's
   * data is read in pieces -- the file block its data cursor is at.
   */
  get position(): { ino: number; dataCursor: number | null } {
    return { ino: this.scannedUpTo, dataCursor: this.pending?.dataCursor ?? null };
  }

  /**
   * A failure of the live hook, or null: the in-memory copy missed a committed
   * change, so the collection is useless and the repair must not commit it.
   * The error the repair fails with (the cause's errno, EIO for a bug).
   */
  get failure(): RmapfsError | null {
    if (this.hookError === null) return null;
    const e = this.hookError;
    const why = e instanceof Error ? e.message : String(e);
    return new RmapfsError(e instanceof RmapfsError ? e.code : 'EIO',
      `repair of AG ${this.agnos.join(', ')}: the live update hook failed: ${why}; the old rmap is kept`, { cause: e });
  }

  /**
   * The scan is aborted (the hook threw, or failed to apply an update): from
   * here on the hook ignores updates, and the scan stops at its next step.
   */
  private abort(e: unknown): void {
    if (this.hookError !== null) return;
    this.hookError = e;
    log('AG %s: live update hook failed, repair aborted: %s', this.agnos.join(','), e instanceof Error ? e.message : String(e));
  }

  private map(agno: number, r: RmapRecord): void {
    const seq = this.mapped++;
    const gathered = this.gathered?.get(agno);
    if (gathered !== undefined) gathered.push(r, seq);
    else this.insert(agno, r, seq);
  }

  /** Puts one mapping into the AG's in-memory btree; a block another owner has already is left out. */
  private insert(agno: number, r: RmapRecord, seq: number): void {
    if (!isInodeOwner(r.owner)) {
      rmapMap(this.memOf(agno).tree, r, this.whereOf(agno));
      return;
    }
    try {
      rmapMap(this.memOf(agno).tree, r, this.whereOf(agno));
    } catch (e) {
      // A block someone else owns already: this file's claim to it is the one left out.
      if (!(e instanceof RmapfsError) || e.code !== 'EFSCORRUPTED') throw e;
      this.leaveOut(r.owner, r.flags, `${this.describe(agno, r)} is another owner's too`, seq);
    }
  }

  /** "data extent at FSBNO+N (file block F)" or "attr-fork block(s) ...": a mapping, for reports. */
  private describe(agno: number, r: RmapRecord): string {
    return describeMapping(this.fsx.fs.geo.fsbno(agno, r.startblock), r.blockcount, r.offset, r.flags);
  }

  /** A mapping of inode ino left out of the rebuilt rmap: its fork is sick. */
  private leaveOut(ino: number, flags: number, why: string, seq: number): void {
    const fork = (flags & RMAP_ATTR_FORK) !== 0 ? 'attr' : 'data';
    const key = `${ino} ${fork}`;
    // The first in scan order is named: gathered mappings' overlaps are found after the scan.
    const known = this.sick.get(key);
    if (known === undefined || seq < known.seq) {
      this.sick.set(key, { ino, fork, what: `inode ${ino}: ${why}: left out of the rebuilt rmap, the ${fork} fork is sick`, seq });
    }
    log('inode %d: %s fork mapping left out: %s', ino, fork, why);
  }

  /** The forks with a mapping left out so far, in inode order. */
  get sickForks(): SickFork[] {
    return [...this.sick.values()].sort((a, b) => a.ino - b.ino || a.fork.localeCompare(b.fork))
      .map(({ ino, fork, what }) => ({ ino, fork, what }));
  }

  /** Whether a mapping the inode's forks claim is impossible by itself (then left out, and noted). */
  private impossible(ino: number, fsbno: number, blockcount: number, fileoff: number, flags: number): boolean {
    const why = blockcount <= 0 ? 'has no blocks' : impossibleFileExtent(this.fsx.fs.geo, fsbno, blockcount);
    if (why === null) return false;
    // Found before the mapping it would have been (seq mapped - 0.5: ahead of the next map()).
    this.leaveOut(ino, flags, `${describeMapping(fsbno, blockcount, fileoff, flags)} ${why}`, this.mapped - 0.5);
    return true;
  }

  /** "repair AG n", made once per AG (the scan names it in every one of a million calls). */
  private whereOf(agno: number): string {
    let w = this.where.get(agno);
    if (w === undefined) this.where.set(agno, (w = `repair AG ${agno}`));
    return w;
  }

  private apply(u: RmapUpdate): void {
    const r = { startblock: u.startblock, blockcount: u.blockcount, owner: u.owner, offset: u.offset, flags: u.flags };
    const tree = this.memOf(u.agno).tree;
    if (u.op === 'map') rmapMap(tree, r, this.whereOf(u.agno));
    else rmapUnmap(tree, r, this.whereOf(u.agno));
    this.applied++;
  }

  /** A committed rmap change in the live filesystem. */
  private onUpdate(u: RmapUpdate): void {
    // The "ag" owner's records are redone from the AG at commit time: never collected.
    if (!this.mems.has(u.agno) || this.hookError !== null || u.owner === OWN_AG) return;
    // A live update after all: the trees must hold what was gathered before it applies.
    if (this.gathered !== null) this.insertGathered();
    if (isInodeOwner(u.owner) && u.owner > this.scannedUpTo) {
      this.ignored++;
      return;
    }
    if (this.snapshot !== null) {
      // An inode's snapshot is half added: later changes go after it, in order.
      this.snapshot.queued.push(u);
      this.queued++;
      return;
    }
    this.applyLive(u);
  }

  /** Applies a live update to the in-memory btree, cut at the data cursor of a file being read in pieces. */
  private applyLive(u: RmapUpdate): void {
    const p = this.pending;
    let update = u;
    if (p !== null && u.owner === p.ino && (u.flags & (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK)) === 0) {
      // File data of the file being read in pieces: only what lies below its cursor is collected yet.
      if (u.offset >= p.dataCursor) {
        this.ignored++;
        return;
      }
      if (u.offset + u.blockcount > p.dataCursor) {
        update = { ...u, blockcount: p.dataCursor - u.offset };
        this.clipped++;
      }
    }
    // A failure here (the in-memory btree cannot take the change) throws to the allocator, which
    // unregisters the hook and tells abort(): the repair fails, never the user's operation.
    this.apply(update);
  }

  /** Step 1: an AG's own metadata, as it is now (the caller hooks from the same moment). */
  private collectStatic(ag: AllocGroup, into: Mapping[]): void {
    for (const o of staticOwners(ag, this.fsx.fs.geo)) {
      into.push({ agno: ag.agno, startblock: o.start, blockcount: o.len, owner: o.owner, offset: 0, flags: 0 });
    }
  }

  /** The first inode in use with a number above `after`, or null (see InodeScanCursor). */
  private nextInode(after: number): number | null {
    return this.iscan.next(after);
  }

  /**
   * Every mapping of one inode that lies in an AG being collected -- but of a
   * file whose block map is a btree only the metadata (block-map btree blocks,
   * attribute fork): `dataInPieces` then says its data is to be read by
   * addPiece.
   */
  private mappingsOf(ino: number): { mappings: Mapping[]; dataInPieces: boolean } {
    const fs = this.fsx.fs;
    const geo = fs.geo;
    const out: Mapping[] = [];
    const inode = this.fsx.inodes.handle(ino);
    if (inode.mode === 0) return { mappings: out, dataInPieces: false }; // freed and not yet reused
    const ctx = { device: fs.device, alloc: fs.alloc, geo, noteDataWritten: () => undefined };
    // What the inode owns (file/owned.ts, the walk the inode scrub makes too), tree blocks from node
    // pointers only; a block-map btree's data is left to addPiece, behind the data cursor.
    // A fork that cannot be walked to the end (a block of its tree fails its verifier: heavy damage, the
    // rmap and a file's tree at once) keeps what the walk reached; what hangs below the damaged block is
    // left out of the new rmap (free space), the fork is sick, and its repair salvages the rest.
    const walk = { readBlocks: false, skipBtreeData: true };
    let dataInPieces = hasBtreeData(inode, fs.alloc, geo);
    const forks: [number, OwnedSteps][] = [[0, dataForkOwned(inode, fs.alloc, geo, walk)], [RMAP_ATTR_FORK, attrForkOwned(inode, ctx, walk)]];
    for (const [forkFlags, steps] of forks) {
      try {
        for (const o of steps) {
          if (o === PAUSE) continue;
          if (this.impossible(ino, o.fsbno, o.blockcount, o.fileoff, rmapFlagsOf(o))) continue;
          const agno = geo.agnoOf(o.fsbno);
          if (!this.mems.has(agno)) continue;
          out.push({ agno, startblock: geo.agbnoOf(o.fsbno), blockcount: o.blockcount, owner: ino, offset: o.fileoff, flags: rmapFlagsOf(o) });
        }
      } catch (e) {
        if (!isCorruption(e)) throw e;
        this.leaveOut(ino, forkFlags, `the fork's walk stopped (${e.message}), what lies below that block`, this.mapped - 0.5);
        if (forkFlags === 0) dataInPieces = false;
      }
    }
    return { mappings: out, dataInPieces };
  }

  /**
   * Adds the next few of the snapshot's mappings; when the last is in,
   * applies the live updates queued meanwhile and says true.
   */
  private addSnapshotPiece(pacer: Pacer): boolean {
    const s = this.snapshot!;
    while (s.next < s.mappings.length) {
      const m = s.mappings[s.next++]!;
      this.map(m.agno, m);
      if (s.next < s.mappings.length && pacer.due()) return false;
    }
    this.snapshot = null;
    for (const u of s.queued) this.applyLive(u);
    return true;
  }

  /**
   * Adds the next piece of the pending file's data (the extents from its data
   * cursor on, the first cut at the cursor), moving the cursor past each one
   * added; stops early when the slice is over (the extents read but not added
   * are read again next time). True when the file is done.
   */
  private addPiece(pacer: Pacer): boolean {
    const p = this.pending!;
    const fs = this.fsx.fs;
    const geo = fs.geo;
    // Freed since the last piece (its chunk too, maybe: ask the inode btree before reading the inode), or
    // reused for something without a block map: whatever it maps now came through the hook.
    const inUse = this.nextInode(p.ino - 1) === p.ino;
    const inode = inUse ? this.fsx.inodes.handle(p.ino) : null;
    let pieces: ReturnType<BlockMap['extentsFrom']> = [];
    try {
      pieces = inode === null || inode.mode === 0 || inode.isDir || inode.format === FORK_LOCAL ? []
        : new BlockMap(inode, fs.alloc, geo).extentsFrom(p.dataCursor, this.pieceExtents);
    } catch (e) {
      if (!isCorruption(e)) throw e;
      // A block-map leaf that fails its verifier: the extents from here on are lost (see mappingsOf).
      this.leaveOut(p.ino, 0, `its block map unreadable from file block ${p.dataCursor} (${e.message})`, this.mapped - 0.5);
    }
    for (let i = 0; i < pieces.length; i++) {
      const e = pieces[i]!;
      const skip = Math.max(0, p.dataCursor - e.fileoff);
      const agno = geo.agnoOf(e.fsbno);
      const flags = e.unwritten ? RMAP_UNWRITTEN : 0;
      if (!this.impossible(p.ino, e.fsbno, e.blockcount, e.fileoff, flags) && this.mems.has(agno)) {
        this.map(agno, { startblock: geo.agbnoOf(e.fsbno) + skip, blockcount: e.blockcount - skip, owner: p.ino,
          offset: e.fileoff + skip, flags });
      }
      p.dataCursor = e.fileoff + e.blockcount;
      if (i + 1 < pieces.length && pacer.due()) return false;
    }
    if (pieces.length < this.pieceExtents) {
      this.pending = null;
      return true;
    }
    return false;
  }

  /** Runs steps 1-3; the in-memory btrees then hold what the AGs' rmaps should. */
  async collect(options: CollectOptions = {}): Promise<CollectResult> {
    const alloc = this.fsx.fs.alloc;
    const pacer = new Pacer({ ...options, maxUnits: options.sliceInodes });
    let inodesTotal = 0;
    for (const ag of alloc.ags) inodesTotal += ag.inodeCount - ag.freeInodes;
    // The static owners are read at once and hooked from that moment, then added like any snapshot: a
    // few per unit (thousands of inode chunks at 1M records), the live updates queued behind them.
    if (options.unmounted === true) {
      this.gathered = new Map([...this.mems.keys()].map((agno) => [agno, new GatheredMappings()]));
      this.pieceExtents = PIECE_EXTENTS_UNMOUNTED;
    }
    const statics: Mapping[] = [];
    for (const agno of this.mems.keys()) this.collectStatic(alloc.ag(agno), statics);
    alloc.addRmapHook(this.hook, (e) => this.abort(e));
    this.hooked = true;
    this.snapshot = { ino: -1, mappings: statics, next: 0, queued: [] };
    let inodesScanned = 0;
    const endSlice = async (): Promise<void> => {
      this.throwIfAborted();
      await pacer.pause();
      this.iscan.forget(); // inodes came and went meanwhile
      await options.betweenSlices?.();
      this.throwIfAborted();
      if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair of AG ${this.agnos.join(', ')} cancelled before its commit`);
      options.onProgress?.({ inodesScanned, inodesTotal });
    };
    for (;;) {
      // An inode is done when its snapshot (if any) and then its data pieces (if any) are.
      if (this.snapshot !== null) {
        const { ino } = this.snapshot; // -1: the static owners'
        if (this.addSnapshotPiece(pacer) && this.pending === null && ino >= 0) inodesScanned++;
        if (pacer.due()) await endSlice();
        continue;
      }
      if (this.pending !== null) {
        if (this.addPiece(pacer)) inodesScanned++;
        if (pacer.due()) await endSlice();
        continue;
      }
      const ino = this.nextInode(this.scannedUpTo);
      if (ino === null) break;
      const { mappings, dataInPieces } = this.mappingsOf(ino);
      this.scannedUpTo = ino;
      if (dataInPieces) this.pending = { ino, dataCursor: 0 };
      if (mappings.length > SNAPSHOT_PIECE) {
        this.snapshot = { ino, mappings, next: 0, queued: [] };
      } else {
        for (const m of mappings) this.map(m.agno, m);
        if (!dataInPieces) inodesScanned++;
      }
      if (pacer.due()) await endSlice();
    }
    // Every inode number is scanned now, those of files created from here on included.
    this.scannedUpTo = Number.MAX_SAFE_INTEGER;
    this.throwIfAborted();
    this.loadGathered();
    options.onProgress?.({ inodesScanned, inodesTotal });
    log('AG %s: collected from %d inodes in %d slices (%d ended for foreground requests; %d live updates applied (%d cut at a file\'s data cursor), %d left to the scan)',
      this.agnos.join(','), inodesScanned, pacer.slices, pacer.yieldsToForeground, this.applied, this.clipped, this.ignored);
    return { inodesScanned, hookUpdatesApplied: this.applied, hookUpdatesIgnored: this.ignored, hookUpdatesClipped: this.clipped,
      hookUpdatesQueued: this.queued,
      slices: pacer.slices,
      yieldsToForeground: pacer.yieldsToForeground,
      sickForks: this.sickForks };
  }

  /** Each AG's gathered mappings into its tree, sorted and bulk loaded (or inserted in scan order: sortedRecords). */
  private loadGathered(): void {
    const gathered = this.gathered;
    if (gathered === null) return;
    this.gathered = null;
    for (const [agno, g] of gathered) {
      const sorted = g.sortedRecords();
      if (sorted === null) {
        log('AG %d: gathered mappings overlap: inserted one by one', agno);
        for (let i = 0; i < g.count; i++) this.insert(agno, g.record(i), g.seq(i));
        continue;
      }
      let at = 0;
      const { data, records } = sorted;
      this.built.set(agno, { files: g.filesDigest(), records: filesRecordsDigest(data, records) });
      this.memOf(agno).load(records, {
        next: (dst, off) => {
          data.copy(dst, off, RMAP_REC_SIZE * at, RMAP_REC_SIZE * ++at);
        },
        nextRun: (dst, off, max) => {
          const n = Math.min(max, records - at);
          data.copy(dst, off, RMAP_REC_SIZE * at, RMAP_REC_SIZE * (at + n));
          at += n;
          return n;
        },
      });
      log('AG %d: %d mappings gathered, %d records bulk loaded', agno, g.count, records);
    }
  }

  /**
   * What AG agno's collection was built from and holds (rmap-digest.ts), when
   * it was gathered and bulk loaded in one go (offline, nothing left out as
   * overlapping); null otherwise -- then nothing vouches for it.
   */
  builtOf(agno: number): RmapBuilt | null {
    return this.built.get(agno) ?? null;
  }

  /** A live update came while gathering: everything gathered goes in, in scan order, and from here on as it comes. */
  private insertGathered(): void {
    const gathered = this.gathered!;
    this.gathered = null;
    for (const [agno, g] of gathered) for (let i = 0; i < g.count; i++) this.insert(agno, g.record(i), g.seq(i));
  }

  /** The scan's check at each step: a failed hook ends it with the failure. */
  throwIfAborted(): void {
    const failure = this.failure;
    if (failure !== null) throw failure;
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

/** A forward-map mapping as reports name it: "data extent at 1057+1 (file block 2)", "btree block at 980". */
function describeMapping(fsbno: number, blockcount: number, fileoff: number, flags: number): string {
  const what = (flags & RMAP_BMBT_BLOCK) !== 0 ? `${(flags & RMAP_ATTR_FORK) !== 0 ? 'attr ' : ''}btree block`
    : (flags & RMAP_ATTR_FORK) !== 0 ? 'attr value' : 'data extent';
  return `${what} at ${fsbno}+${blockcount}${what === 'data extent' ? ` (file block ${fileoff})` : ''}`;
}
