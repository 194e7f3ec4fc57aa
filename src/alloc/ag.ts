/**
 * One allocation group: its header, its four btrees (free space by block and
 * by size, rmap, inodes), its free list (AGFL), and the free-space
 * primitives the allocator builds on. Everything an AG knows lives in its
 * blocks (read through the cache on every use), so a transaction abort puts
 * all of it back.
 */
import createDebug from 'debug';
import { RmapfsError, corruption, isCorruption } from '../errors';
import type { Buf, BufCache, BufOps } from '../io/buf-cache';
import { Btree } from '../btree/btree';
import type { BtreeCursor } from '../btree/btree';
import type { BtreeOps, BtreeRootInfo, BtreeStorage } from '../btree/btree-ops';
import {
  AGFL_SIZE, AGH_AGBNO, OFF_AGFL, OFF_AGFL_COUNT, OFF_FREE_BLOCKS, OFF_FREE_EXTENTS, OFF_FREE_INODES,
  OFF_INODE_COUNT, OFF_LONGEST, SLOT_BLOCKS, SLOT_HEIGHT, SLOT_RECORDS, SLOT_ROOT, agHeaderBufOps, slotOffset,
} from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import type { Geometry } from '../format/geometry';
import { OWN_AG } from '../format/owners';
import { rmapBtreeOps } from '../rmap/rmap-btree';
import { rmapMap, rmapUnmap } from '../rmap/rmap';
import { inoBtreeOps } from './inode-btree';
import { bnoBtreeOps, bnoKey, cntBtreeOps, cntKey, decodeFreeExtent, encodeFreeExtent } from './alloc-btree';
import type { FreeExtent } from './alloc-btree';
import { HealthRecord, structureLabel } from './health';
import type { HealthBus } from './health';
import type { AgStructure } from './health';

const log = createDebug('rmapfs:alloc');

/** How the inode btree gets and gives back its blocks (through the allocator, with rmap updates). */
export interface InobtBlockSource {
  allocInobtBlock(ag: AllocGroup, hint: number): number;
  freeInobtBlock(ag: AllocGroup, agbno: number): void;
}

/** The health record's name of each AG btree. */
const TREE_STRUCTURE: Record<AgBtreeName, AgStructure> = { bno: 'bnobt', cnt: 'cntbt', rmap: 'rmapbt', ino: 'inobt' };

/** A btree of this AG: root and counts in the AG header, blocks AG-relative. */
class AgBtreeStorage implements BtreeStorage {
  readonly cache: BufCache;
  readonly uuid: Buffer;
  readonly owner: number;
  private readonly slot: number;
  private readonly structure: AgStructure;

  constructor(private readonly ag: AllocGroup, tree: AgBtreeName,
    private readonly alloc: (hint: number) => number, private readonly free: (agbno: number) => void) {
    this.cache = ag.cache;
    this.uuid = ag.geo.uuid;
    this.owner = ag.agno;
    this.slot = slotOffset(tree);
    this.structure = TREE_STRUCTURE[tree];
  }

  noteCorruption(error: RmapfsError): void {
    this.ag.markSick(this.structure, error.message);
  }

  bnoOf(ptr: number): number {
    return this.ag.start + ptr;
  }

  isValidPtr(ptr: number): boolean {
    return ptr >= 2 && ptr < this.ag.length;
  }

  blockLimit(): number {
    return this.ag.length;
  }

  allocBlock(hint: number): number {
    const agbno = this.alloc(hint);
    this.bump(SLOT_BLOCKS, 1);
    return agbno;
  }

  freeBlock(ptr: number): void {
    this.free(ptr);
    this.bump(SLOT_BLOCKS, -1);
  }

  getRoot(): BtreeRootInfo {
    const h = this.ag.header().data;
    return { ptr: h.readUInt32BE(this.slot + SLOT_ROOT), height: h.readUInt32BE(this.slot + SLOT_HEIGHT) };
  }

  setRoot(root: BtreeRootInfo): void {
    const hdr = this.ag.header();
    hdr.data.writeUInt32BE(root.ptr, this.slot + SLOT_ROOT);
    hdr.data.writeUInt32BE(root.height, this.slot + SLOT_HEIGHT);
    this.cache.markDirty(hdr);
  }

  adjustRecords(delta: number): void {
    this.bump(SLOT_RECORDS, delta);
  }

  private bump(field: number, delta: number): void {
    const hdr = this.ag.header();
    const at = this.slot + field;
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(at) + delta, at);
    this.cache.markDirty(hdr);
  }
}

export interface FreeSearch {
  minLen: number;
  maxLen: number;
  /** AG block to allocate at or near; null for best fit anywhere. */
  goal: number | null;
  /** Only at goal exactly. */
  exact?: boolean;
  /** Start must be a multiple of this (inode chunks). */
  align?: number;
}

export class AllocGroup {
  readonly agno: number;
  readonly start: number;
  readonly length: number;
  readonly bno: Btree;
  readonly cnt: Btree;
  readonly rmap: Btree;
  readonly ino: Btree;
  /**
   * Extents freed recently, not to be reused yet: file data until the log
   * force that records the free (else a crash could show the old owner
   * someone else's data); metadata until the next checkpoint (else replaying
   * an older logged image of the block would overwrite whatever data reused it).
   */
  /** Freed extents not to be reused yet, and free extents a repair has reserved (`reserved`: kept until released). */
  private busy: (FreeExtent & { untilCheckpoint: boolean; reserved?: boolean })[] = [];
  private readonly hdrOps: BufOps;
  /** What is known about the health of this AG's structures (see health.ts). */
  readonly health: HealthRecord<AgStructure>;
  /**
   * What the filesystem is doing in this AG ("allocating", "freeing"...): said
   * in the health record when a structure fails its checks meanwhile.
   */
  activity = 'using it';
  private readonly key = Buffer.alloc(8);
  private readonly rec = Buffer.alloc(8);

  constructor(readonly cache: BufCache, readonly geo: Geometry, agno: number, inobtBlocks: InobtBlockSource,
    onNewSick: (agno: number, structure: AgStructure) => void = () => undefined,
    private readonly noteAgOwned: (op: 'map' | 'unmap', agno: number, startblock: number, blockcount: number) => void = () => undefined,
    healthEvents: HealthBus | null = null) {
    this.agno = agno;
    this.health = new HealthRecord<AgStructure>({ kind: 'ag', agno }, healthEvents, (structure) => onNewSick(agno, structure));
    this.start = geo.agStart(agno);
    this.length = geo.agLength(agno);
    this.hdrOps = agHeaderBufOps(geo.uuid, agno, this.length);
    const fromFreelist = (): number => this.agflPop();
    const toFreelist = (agbno: number): void => this.agflPush(agbno);
    const make = (ops: BtreeOps, name: AgBtreeName, alloc: (h: number) => number, free: (b: number) => void): Btree =>
      new Btree(ops, new AgBtreeStorage(this, name, alloc, free));
    this.bno = make(bnoBtreeOps, 'bno', fromFreelist, toFreelist);
    this.cnt = make(cntBtreeOps, 'cnt', fromFreelist, toFreelist);
    this.rmap = make(rmapBtreeOps, 'rmap', fromFreelist, toFreelist);
    this.ino = make(inoBtreeOps, 'ino', (hint) => inobtBlocks.allocInobtBlock(this, hint),
      (agbno) => inobtBlocks.freeInobtBlock(this, agbno));
  }

  header(): Buf {
    try {
      return this.cache.read(this.start + AGH_AGBNO, this.hdrOps);
    } catch (e) {
      if (isCorruption(e)) this.markSick('agh', e.message);
      throw e;
    }
  }

  /** A structure of this AG failed a verifier or a cross-check while in use. */
  markSick(structure: AgStructure, what: string): void {
    if (!this.health.isSick(structure)) log('AG %d: %s is damaged (%s): %s', this.agno, structureLabel(structure), this.activity, what);
    this.health.markSick(structure, 'verifier', what, this.activity);
  }

  /** A corruption error found by a cross-check, the structures it implicates marked sick first. */
  private damaged(structures: readonly AgStructure[], message: string): RmapfsError {
    for (const s of structures) this.markSick(s, message);
    return corruption(message);
  }

  private headerU32(off: number): number {
    return this.header().data.readUInt32BE(off);
  }

  private addHeaderU32(off: number, delta: number): void {
    const hdr = this.header();
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(off) + delta, off);
    this.cache.markDirty(hdr);
  }

  get freeBlocks(): number {
    return this.headerU32(OFF_FREE_BLOCKS);
  }

  get longestFree(): number {
    return this.headerU32(OFF_LONGEST);
  }

  get inodeCount(): number {
    return this.headerU32(OFF_INODE_COUNT);
  }

  get freeInodes(): number {
    return this.headerU32(OFF_FREE_INODES);
  }

  adjustInodeCounts(count: number, free: number): void {
    this.addHeaderU32(OFF_INODE_COUNT, count);
    this.addHeaderU32(OFF_FREE_INODES, free);
  }

  // ---- the AG free list ----------------------------------------------------

  get agflCount(): number {
    return this.headerU32(OFF_AGFL_COUNT);
  }

  agflBlocks(): number[] {
    const h = this.header().data;
    const n = h.readUInt32BE(OFF_AGFL_COUNT);
    const out: number[] = [];
    for (let i = 0; i < n; i++) out.push(h.readUInt32BE(OFF_AGFL + 4 * i));
    return out;
  }

  private agflPop(): number {
    const hdr = this.header();
    const n = hdr.data.readUInt32BE(OFF_AGFL_COUNT);
    if (n === 0) throw new RmapfsError('ENOSPC', `AG ${this.agno}: the free list ran dry`);
    const agbno = hdr.data.readUInt32BE(OFF_AGFL + 4 * (n - 1));
    hdr.data.writeUInt32BE(0, OFF_AGFL + 4 * (n - 1));
    hdr.data.writeUInt32BE(n - 1, OFF_AGFL_COUNT);
    this.cache.markDirty(hdr);
    return agbno;
  }

  private agflPush(agbno: number): void {
    const hdr = this.header();
    const n = hdr.data.readUInt32BE(OFF_AGFL_COUNT);
    if (n >= AGFL_SIZE) throw this.damaged(['agfl'], `AG ${this.agno}: the free list overflowed`);
    hdr.data.writeUInt32BE(agbno, OFF_AGFL + 4 * n);
    hdr.data.writeUInt32BE(n + 1, OFF_AGFL_COUNT);
    this.cache.markDirty(hdr);
  }

  /** Blocks the free list must hold before an operation: enough for full-height splits of all three trees, twice. */
  freelistNeed(): number {
    return 2 * (this.bno.height + this.cnt.height + this.rmap.height) + 6;
  }

  /**
   * Fills the free list up to freelistNeed() (taking space, owned by "ag" in
   * the rmap) or trims it back; run at the start of every allocation or free.
   * With `slack` (a batch of frees: Allocator.freeOwnedRuns) it fills that
   * many blocks more and trims only above that much more, so a batch whose
   * free-space btrees grow by many records refills it rarely. Whether it
   * changed anything (the rmap among them: a cursor kept on the rmap across
   * calls must look again).
   */
  fixFreelist(slack = 0): boolean {
    const need = this.freelistNeed();
    const countBefore = this.agflCount;
    this.fillFreelist(need, need + 4 + slack);
    while (this.agflCount > need + 16 + slack) {
      const agbno = this.agflPop();
      rmapUnmap(this.rmap, { startblock: agbno, blockcount: 1, owner: OWN_AG, offset: 0, flags: 0 }, `AG ${this.agno} rmap`);
      this.noteAgOwned('unmap', this.agno, agbno, 1);
      this.giveFree(agbno, 1);
      this.markBusy(agbno, 1, true); // it may have been a btree block with images in the log
    }
    return this.agflCount !== countBefore;
  }

  /**
   * The slack for fixFreelist in a batch of frees: as much as leaves room
   * for one operation's worth of freed btree blocks (freelistNeed) below
   * the free list's capacity when it is full to its trim mark.
   */
  batchFreelistSlack(): number {
    return Math.max(0, AGFL_SIZE - 16 - 2 * this.freelistNeed());
  }

  /**
   * Before a batch of frees, while few extents are busy (each free space
   * candidate is checked against every busy extent): fills the free list to
   * fixFreelist(slack)'s mark. Whether it changed anything.
   */
  topUpFreelist(slack: number): boolean {
    const countBefore = this.agflCount;
    const target = this.freelistNeed() + 4 + slack;
    this.fillFreelist(target, target);
    return this.agflCount !== countBefore;
  }

  /** Takes free space into the free list while it holds fewer than `low` blocks, up to `target` at a time. */
  private fillFreelist(low: number, target: number): void {
    let guard = 0;
    while (this.agflCount < low) {
      if (++guard > 64) throw this.damaged(['agfl'], `AG ${this.agno}: the free list will not fill`);
      const want = Math.min(target - this.agflCount, AGFL_SIZE - this.agflCount);
      const found = this.findFree({ minLen: 1, maxLen: want, goal: 0 });
      if (found === null) {
        if (this.agflCount > 0) return; // low, but the operation may still fit: ENOSPC comes from where it must
        throw new RmapfsError('ENOSPC', `AG ${this.agno} has no space left for its own metadata`);
      }
      this.takeFree(found.startblock, found.blockcount);
      rmapMap(this.rmap, { startblock: found.startblock, blockcount: found.blockcount, owner: OWN_AG, offset: 0, flags: 0 },
        `AG ${this.agno} rmap`);
      // The live rmap hooks hear of the free list's space too: a free-space repair counts it as used.
      this.noteAgOwned('map', this.agno, found.startblock, found.blockcount);
      for (let i = 0; i < found.blockcount && this.agflCount < AGFL_SIZE; i++) this.agflPush(found.startblock + i);
    }
  }

  // ---- free space ------------------------------------------------------------

  /** The log was forced (data frees are safe now), or a checkpoint emptied the log (everything is). */
  clearBusy(checkpointed: boolean): void {
    this.busy = this.busy.filter((b) => b.reserved === true || (!checkpointed && b.untilCheckpoint));
  }

  /**
   * Keeps a free extent from every allocation (in memory only: after a
   * crash it is simply free) until `unreserve`: a repair writes a new
   * structure there in place before its commit claims it (dir-repair.ts).
   */
  reserve(startblock: number, blockcount: number): void {
    this.busy.push({ startblock, blockcount, untilCheckpoint: true, reserved: true });
  }

  unreserve(startblock: number, blockcount: number): void {
    this.busy = this.busy.filter((b) => !(b.reserved === true && b.startblock === startblock && b.blockcount === blockcount));
  }

  markBusy(startblock: number, blockcount: number, untilCheckpoint: boolean): void {
    this.busy.push({ startblock, blockcount, untilCheckpoint });
  }

  get busyCount(): number {
    return this.busy.length;
  }

  /** Blocks in busy extents (free, not reusable yet; reservations included). */
  get busyBlocks(): number {
    return this.busy.reduce((n, b) => n + b.blockcount, 0);
  }

  /** The busy extents (not to be reused yet), for a repair that picks free blocks itself. */
  busyExtents(): FreeExtent[] {
    return this.busy.map((b) => ({ startblock: b.startblock, blockcount: b.blockcount }));
  }

  /**
   * The part of free extent [s, s+len) usable for a request: outside busy
   * extents, aligned, at least minLen long (the first such piece), or null.
   */
  private usablePiece(s: number, len: number, minLen: number, maxLen: number, align: number): FreeExtent | null {
    const end = s + len;
    let at = s;
    while (at < end) {
      if (align > 1) at = Math.ceil(at / align) * align;
      let pieceEnd = Math.min(end, at + maxLen);
      for (const b of this.busy) {
        const bEnd = b.startblock + b.blockcount;
        if (b.startblock < pieceEnd && bEnd > at) {
          if (b.startblock <= at) {
            at = bEnd;
            pieceEnd = -1;
            break;
          }
          pieceEnd = b.startblock;
        }
      }
      if (pieceEnd < 0) continue;
      if (pieceEnd - at >= minLen) return { startblock: at, blockcount: pieceEnd - at };
      if (pieceEnd >= end) return null;
      at = pieceEnd;
    }
    return null;
  }

  /**
   * Finds free space for a request: exactly at the goal, near it (the free
   * extent holding it, else the closest ones on either side), or best fit by
   * size. Returns the chosen piece; nothing is changed.
   */
  findFree(req: FreeSearch): FreeExtent | null {
    const align = req.align ?? 1;
    const minLen = Math.max(1, req.minLen);
    const maxLen = Math.max(minLen, req.maxLen);
    if (req.goal !== null) {
      const cur = this.bno.cursor();
      if (cur.lookup(bnoKey(req.goal, this.key), 0, 'le')) {
        const e = decodeFreeExtent(cur.record(), 0);
        if (e.startblock + e.blockcount > req.goal) {
          const piece = this.usablePiece(req.goal, e.startblock + e.blockcount - req.goal, req.exact ? minLen : minLen, maxLen, align);
          if (piece !== null && (!req.exact || piece.startblock === req.goal)) return piece;
        }
      }
      if (req.exact) return null;
      // Near: the closest usable extents after and before the goal (a bounded look either way).
      let best: FreeExtent | null = null;
      let bestDist = Infinity;
      const right = this.bno.cursor();
      let ok = right.lookup(bnoKey(req.goal, this.key), 0, 'ge');
      for (let i = 0; ok && i < 32; i++, ok = right.increment()) {
        const e = decodeFreeExtent(right.record(), 0);
        if (e.startblock - req.goal > bestDist) break;
        const p = this.usablePiece(e.startblock, e.blockcount, minLen, maxLen, align);
        if (p !== null) {
          best = p;
          bestDist = p.startblock - req.goal;
          break;
        }
      }
      const left = this.bno.cursor();
      ok = left.lookup(bnoKey(req.goal, this.key), 0, 'le');
      for (let i = 0; ok && i < 32; i++, ok = left.decrement()) {
        const e = decodeFreeExtent(left.record(), 0);
        if (req.goal - (e.startblock + e.blockcount) > bestDist) break;
        if (e.blockcount < minLen) continue;
        // Take the end of a free extent left of the goal, nearest to it.
        const start = Math.max(e.startblock, e.startblock + e.blockcount - maxLen);
        const p = this.usablePiece(start, e.startblock + e.blockcount - start, minLen, maxLen, align);
        if (p !== null && req.goal - p.startblock < bestDist) {
          best = p;
          bestDist = req.goal - p.startblock;
          break;
        }
      }
      if (best !== null) return best;
    }
    // Best fit by size: the smallest extent that holds maxLen, else the largest that holds minLen.
    const cur = this.cnt.cursor();
    let ok = cur.lookup(cntKey(maxLen, 0, this.key), 0, 'ge');
    for (let i = 0; ok && i < 64; i++, ok = cur.increment()) {
      const e = decodeFreeExtent(cur.record(), 0);
      const p = this.usablePiece(e.startblock, e.blockcount, minLen, maxLen, align);
      if (p !== null) return p;
    }
    ok = cur.last();
    for (let i = 0; ok && i < 256; i++, ok = cur.decrement()) {
      const e = decodeFreeExtent(cur.record(), 0);
      if (e.blockcount < minLen) break;
      const p = this.usablePiece(e.startblock, e.blockcount, minLen, maxLen, align);
      if (p !== null) return p;
    }
    return null;
  }

  /** Removes [agbno, agbno+len) from free space; it must lie inside one free extent. */
  takeFree(agbno: number, len: number): void {
    const cur = this.bno.cursor();
    if (!cur.lookup(bnoKey(agbno, this.key), 0, 'le')) {
      throw this.damaged(['bnobt'], `AG ${this.agno}: allocating ${agbno}+${len}, which is not free`);
    }
    const e = decodeFreeExtent(cur.record(), 0);
    const eEnd = e.startblock + e.blockcount;
    if (agbno + len > eEnd) throw this.damaged(['bnobt'], `AG ${this.agno}: allocating ${agbno}+${len}, but free space there is only ${e.startblock}+${e.blockcount}`);
    this.deleteFree(e);
    if (agbno > e.startblock) this.insertFree(e.startblock, agbno - e.startblock);
    if (agbno + len < eEnd) this.insertFree(agbno + len, eEnd - (agbno + len));
    this.addHeaderU32(OFF_FREE_BLOCKS, -len);
    this.updateLongest(e.blockcount, [agbno > e.startblock ? e.startblock : -1, agbno + len < eEnd ? agbno + len : -1]);
    log('AG %d: took %d+%d', this.agno, agbno, len);
  }

  /** Returns [agbno, agbno+len) to free space, merging with free neighbours; overlap is corruption. */
  giveFree(agbno: number, len: number): void {
    if (agbno < 2 || agbno + len > this.length) throw this.damaged(['bnobt'], `AG ${this.agno}: freeing ${agbno}+${len}, outside the AG`);
    let start = agbno;
    let count = len;
    // The longest of the extents merged away: the header's longest counted them.
    let mergedLongest = 0;
    // Both neighbours with one look-up: the right one is the record after the left one.
    const cur = this.bno.opCursor();
    let left: FreeExtent | null = null;
    let right: FreeExtent | null = null;
    if (cur.lookup(bnoKey(agbno, this.key), 0, 'le')) {
      left = decodeFreeExtent(cur.record(), 0);
      if (cur.increment()) right = decodeFreeExtent(cur.record(), 0);
    } else if (cur.lookup(bnoKey(agbno, this.key), 0, 'ge')) {
      right = decodeFreeExtent(cur.record(), 0);
    }
    if (left !== null) {
      if (left.startblock + left.blockcount > agbno) {
        throw this.damaged(['bnobt'], `AG ${this.agno}: freeing ${agbno}+${len}, which overlaps free extent ${left.startblock}+${left.blockcount}`);
      }
      if (left.startblock + left.blockcount === agbno) {
        this.deleteFree(left);
        mergedLongest = left.blockcount;
        start = left.startblock;
        count += left.blockcount;
      }
    }
    if (right !== null) {
      if (right.startblock < agbno + len) {
        throw this.damaged(['bnobt'], `AG ${this.agno}: freeing ${agbno}+${len}, which overlaps free extent ${right.startblock}+${right.blockcount}`);
      }
      if (right.startblock === agbno + len) {
        this.deleteFree(right);
        mergedLongest = Math.max(mergedLongest, right.blockcount);
        count += right.blockcount;
      }
    }
    // Joined with neither: the bnobt is unchanged since the look-up, whose cursor stands on the right
    // neighbour, where the new record goes (one descent fewer).
    this.insertFree(start, count, start === agbno && count === len && right !== null ? cur : null);
    this.addHeaderU32(OFF_FREE_BLOCKS, len);
    this.updateLongest(mergedLongest, [start]);
    log('AG %d: gave back %d+%d', this.agno, agbno, len);
  }

  /** `bnoAt`: a bnobt cursor standing where the record goes (Btree.insertAtCursor), or null to look it up. */
  private insertFree(startblock: number, blockcount: number, bnoAt: BtreeCursor | null = null): void {
    encodeFreeExtent(startblock, blockcount, this.rec);
    if (bnoAt === null) this.bno.insert(this.rec);
    else this.bno.insertAtCursor(bnoAt, this.rec);
    this.cnt.insert(this.rec);
    this.addHeaderU32(OFF_FREE_EXTENTS, 1);
  }

  private deleteFree(e: FreeExtent): void {
    // The two trees must hold the same extents: when they do not, which one is wrong is not known here.
    if (!this.bno.delete(bnoKey(e.startblock, this.key))) {
      throw this.damaged(['bnobt', 'cntbt'], `AG ${this.agno}: free extent ${e.startblock}+${e.blockcount} is in the cntbt but not the bnobt`);
    }
    if (!this.cnt.delete(cntKey(e.blockcount, e.startblock, this.key))) {
      throw this.damaged(['bnobt', 'cntbt'], `AG ${this.agno}: free extent ${e.startblock}+${e.blockcount} is in the bnobt but not the cntbt`);
    }
    this.addHeaderU32(OFF_FREE_EXTENTS, -1);
  }

  /**
   * Checks the header's longest free extent against the cntbt's last record
   * (a descent of the rightmost path: only where the allocator would pass
   * the AG over as full, never on the way to an allocation). A header that
   * lies is marked sick and is EFSCORRUPTED.
   */
  confirmLongestFree(): void {
    const cur = this.cnt.cursor();
    const longest = cur.last() ? decodeFreeExtent(cur.record(), 0).blockcount : 0;
    const was = this.longestFree;
    if (was !== longest) throw this.damaged(['agh'], `AG ${this.agno}: the header's longest free extent is ${was}, but the free space btree's is ${longest}`);
  }

  /**
   * Sets the header's longest free extent from the cntbt after a change that
   * removed extents (the longest of them: removedLongest) and added the ones
   * starting at `added`. First it checks the old value: it must be the
   * longest of what the change removed and of the extents it left alone --
   * the cntbt's last record that the change did not add. A header that lied
   * would have steered allocations (an AG with room skipped as full) until
   * this very update silently overwrote the lie.
   */
  private updateLongest(removedLongest: number, added: readonly number[]): void {
    const cur = this.cnt.opCursor();
    let last = cur.last() ? decodeFreeExtent(cur.record(), 0) : null;
    const longest = last?.blockcount ?? 0;
    while (last !== null && added.includes(last.startblock)) last = cur.decrement() ? decodeFreeExtent(cur.record(), 0) : null;
    const untouchedLongest = last?.blockcount ?? 0;
    const hdr = this.header();
    const was = hdr.data.readUInt32BE(OFF_LONGEST);
    if (was !== Math.max(untouchedLongest, removedLongest)) {
      throw this.damaged(['agh'], `AG ${this.agno}: the header's longest free extent is ${was}, but the free space btree's was ${Math.max(untouchedLongest, removedLongest)}`);
    }
    if (was !== longest) {
      hdr.data.writeUInt32BE(longest, OFF_LONGEST);
      this.cache.markDirty(hdr);
    }
  }
}
