/**
 * The extent allocator. Every allocation and free changes the free-space
 * btrees and the rmap together, in the caller's transaction, and then tells
 * the registered rmap hooks -- the seam online repair uses to keep its
 * in-memory rmap current while foreground operations go on. The inode
 * allocator's hooks (inode and chunk allocations and frees) are kept here
 * too, beside them, so that one place delivers both when a transaction
 * commits (`deliverCommitted`) and drops both when it aborts
 * (commit-hooks.ts).
 *
 * An AG whose space metadata (header, free list, free-space btrees, rmap) is
 * known sick (health.ts) is stepped around for new allocations, as a full
 * one is, and frees there are refused with EUCLEAN before anything is
 * changed: a damaged btree is never built on. The first failure in an AG
 * comes in the middle of an operation; its transaction rolls back, and the
 * transaction runner tries it again (Filesystem.run), now avoiding the AG.
 */
import { RmapfsError, corruption, isCorruption } from '../errors';
import type { BufCache } from '../io/buf-cache';
import type { Geometry } from '../format/geometry';
import { OWN_AG, OWN_INOBT, isInodeOwner, ownerName } from '../format/owners';
import { RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from '../rmap/rmap-btree';
import { RmapRunRemover, rmapFind, rmapMap, rmapUnmap } from '../rmap/rmap';
import { AllocGroup } from './ag';
import type { InobtBlockSource } from './ag';
import type { FreeExtent } from './alloc-btree';
import { CommitHooks } from './commit-hooks';
import type { HookFailure } from './commit-hooks';
import { HealthBus, HealthRecord, InodeHealthTable, SPACE_STRUCTURES, structureLabel } from './health';
import type { AgStructure, FsStructure } from './health';

export interface RmapUpdate {
  op: 'map' | 'unmap';
  agno: number;
  startblock: number;
  blockcount: number;
  owner: number;
  offset: number;
  flags: number;
}

export type RmapHook = (update: RmapUpdate) => void;

/** Told that the hook threw (and was unregistered): the owner's view is no longer complete. */
export type RmapHookFailure = HookFailure;

/**
 * A change of the inode allocator, in AG inode numbers: a chunk of 64 free
 * inodes allocated (`chunk-alloc`, agino = its first inode) or freed whole
 * (`chunk-free`), one inode taken (`use`) or given back (`free`).
 */
export interface InodeUpdate {
  op: 'chunk-alloc' | 'chunk-free' | 'use' | 'free';
  agno: number;
  agino: number;
}

export type InodeHook = (update: InodeUpdate) => void;

/**
 * A directory entry added or removed (a replace is both, remove first): what
 * directory salvage and the link-count scan keep current while they run. The
 * directory code notes them; they live here, beside the other hooks, because
 * the transaction runner delivers every kind at commit through the allocator.
 */
export interface DirentUpdate {
  op: 'add' | 'remove';
  /** The directory's inode number. */
  dir: number;
  /** The entry's name (a copy: hooks may keep it); ".." is an entry like any other. */
  name: Buffer;
  ino: number;
  ftype: number;
}

export type DirentHook = (update: DirentUpdate) => void;

export interface AllocRequest {
  owner: number;
  /** File offset (blocks) of the first block, for file data. */
  offset?: number;
  flags?: number;
  minLen: number;
  maxLen: number;
  /** Filesystem block to allocate at or near (e.g. right after the file's last extent). */
  goal?: number | null;
  /** Only this AG. */
  agno?: number;
  /** Only at the goal itself. */
  exact?: boolean;
  /** The start must be a multiple of this (AG-relative). */
  align?: number;
  /**
   * May take blocks of the reserve pool (`Allocator.reservePool`): only
   * metadata that changes to space already granted need: a file's block-map
   * btree blocks (a write into preallocated space, a punch). Everything else
   * (data, inode chunks, directory and attribute blocks, repairs' new
   * structures) must leave the pool free.
   */
  useReserve?: boolean;
}

/**
 * The reserve pool's default size, as XFS's (`xfs_default_resblks`): 5% of
 * the filesystem, at most 8,192 blocks.
 */
export function defaultReservePool(totalBlocks: number): number {
  return Math.min(Math.floor(totalBlocks / 20), 8192);
}

export interface AllocatedExtent {
  fsbno: number;
  agno: number;
  agbno: number;
  len: number;
}

export class Allocator implements InobtBlockSource {
  readonly ags: AllocGroup[] = [];
  private readonly rmapHooks = new CommitHooks<RmapUpdate>('rmap');
  private readonly inodeHooks = new CommitHooks<InodeUpdate>('inode');
  private readonly direntHooks = new CommitHooks<DirentUpdate>('directory entry');
  /** Next AG to try first for allocations without a goal (spreads new files). */
  private rotor = 0;
  /**
   * Counts structures found sick since the mount: a transaction that failed
   * with corruption after this moved may succeed when run again, around them.
   */
  sickCount = 0;
  /**
   * The health of the structures outside the AGs (superblock, summary
   * counters, link counts) and of each inode's (bounded: health.ts): kept
   * here, beside the AGs', because every layer that marks or reads health
   * holds the allocator. Every change is told on `healthEvents`.
   */
  readonly fsHealth: HealthRecord<FsStructure>;
  /**
   * Free blocks ordinary allocations leave alone (in memory only, as XFS's
   * m_resblks): a write into preallocated space, a punch or a truncate may
   * split block-map extents and need btree blocks on a full filesystem, and
   * must not fail with ENOSPC for it. statfs does not count them as free.
   */
  reservePool: number;
  readonly inodeHealth: InodeHealthTable;
  readonly healthEvents = new HealthBus();

  constructor(readonly cache: BufCache, readonly geo: Geometry) {
    this.reservePool = defaultReservePool(geo.totalBlocks);
    const onNewSick = (): void => { this.sickCount++; };
    this.fsHealth = new HealthRecord<FsStructure>({ kind: 'filesystem' }, this.healthEvents, onNewSick);
    // An inode found sick does not count in sickCount: no transaction runs around a damaged inode.
    this.inodeHealth = new InodeHealthTable((ino) => geo.inoAgno(ino), this.healthEvents);
    const noteAgOwned = (op: 'map' | 'unmap', agno: number, startblock: number, blockcount: number): void => {
      this.note({ op, agno, startblock, blockcount, owner: OWN_AG, offset: 0, flags: 0 });
    };
    for (let agno = 0; agno < geo.agCount; agno++) this.ags.push(new AllocGroup(cache, geo, agno, this, onNewSick, noteAgOwned, this.healthEvents));
  }

  /** Whether new allocations must avoid the AG: some structure every allocation there changes is known damaged. */
  spaceSick(ag: AllocGroup): boolean {
    return ag.health.anySick(SPACE_STRUCTURES);
  }

  /** The refusal of a change that would have to touch an AG's known-damaged structures. */
  private sickRefusal(ag: AllocGroup, what: string, structures: readonly AgStructure[] = SPACE_STRUCTURES): RmapfsError {
    const sick = structures.filter((s) => ag.health.isSick(s));
    const names = sick.map((s) => structureLabel(s)).join(' and ');
    const first = sick.length > 0 ? ag.health.note(sick[0]!)?.what : undefined;
    return new RmapfsError('EFSCORRUPTED', `${what} in AG ${ag.agno}: its ${names} ${sick.length === 1 ? 'is' : 'are'} damaged`
      + (first !== undefined ? ` (${first})` : ''));
  }

  ag(agno: number): AllocGroup {
    const ag = this.ags[agno];
    if (ag === undefined) throw new RmapfsError('EFSCORRUPTED', `AG ${agno} does not exist`);
    return ag;
  }

  // ---- hooks ---------------------------------------------------------------

  /** Registers a hook; should it ever throw, it is unregistered and `onFailure` hears the error. */
  addRmapHook(hook: RmapHook, onFailure: RmapHookFailure): void {
    this.rmapHooks.add(hook, onFailure);
  }

  removeRmapHook(hook: RmapHook): void {
    this.rmapHooks.remove(hook);
  }

  /** Registers an inode allocation hook (the inode btree repair's); failures as for rmap hooks. */
  addInodeHook(hook: InodeHook, onFailure: HookFailure): void {
    this.inodeHooks.add(hook, onFailure);
  }

  removeInodeHook(hook: InodeHook): void {
    this.inodeHooks.remove(hook);
  }

  /** The inode allocator changed the inode btree (called inside its transaction). */
  noteInodeUpdate(u: InodeUpdate): void {
    this.inodeHooks.note(u);
  }

  /** Registers a directory entry hook (directory salvage, the link-count scan); failures as for rmap hooks. */
  addDirentHook(hook: DirentHook, onFailure: HookFailure): void {
    this.direntHooks.add(hook, onFailure);
  }

  removeDirentHook(hook: DirentHook): void {
    this.direntHooks.remove(hook);
  }

  /** Whether any directory entry hook listens (the directory code copies the name only then). */
  get direntHooked(): boolean {
    return this.direntHooks.listening;
  }

  /** A directory changed an entry (called inside its transaction). */
  noteDirentUpdate(u: DirentUpdate): void {
    this.direntHooks.note(u);
  }

  /** The transaction committed: tell the hooks what it changed, in order. */
  deliverCommitted(): void {
    this.rmapHooks.deliver();
    this.inodeHooks.deliver();
    this.direntHooks.deliver();
  }

  /** The transaction aborted: its changes never happened. */
  dropUncommitted(): void {
    this.rmapHooks.drop();
    this.inodeHooks.drop();
    this.direntHooks.drop();
  }

  private note(u: RmapUpdate): void {
    this.rmapHooks.note(u);
  }

  // ---- allocation ------------------------------------------------------------

  /** Allocates one extent of minLen..maxLen blocks for an owner; ENOSPC when no AG has one. */
  alloc(req: AllocRequest): AllocatedExtent {
    if (!(req.minLen >= 1 && req.maxLen >= req.minLen)) {
      throw new RmapfsError('EINVAL', `allocation of ${req.minLen}..${req.maxLen} blocks`);
    }
    let maxLen = req.maxLen;
    if (req.useReserve !== true) {
      const free = this.usableFree(() => 0);
      const usable = free.blocks - this.reservePool;
      if (usable < req.minLen) {
        // A damaged AG that was not counted may be what was needed: its refusal says more than ENOSPC.
        if (req.agno !== undefined && this.spaceSick(this.ag(req.agno))) throw this.sickRefusal(this.ag(req.agno), 'cannot allocate');
        if (free.failure !== null) throw free.failure;
        throw this.noSpace(req.minLen, ` outside the reserve pool (${this.reservePool} blocks)`, this.ags.filter((ag) => this.spaceSick(ag)));
      }
      maxLen = Math.min(maxLen, usable);
    }
    const goal = req.goal ?? null;
    const first = req.agno ?? (goal !== null ? this.geo.agnoOf(goal) : this.rotor);
    const order = req.agno !== undefined ? [req.agno] : this.ags.map((_, i) => (first + i) % this.ags.length);
    const avoided: AllocGroup[] = [];
    for (const agno of order) {
      const ag = this.ag(agno);
      // Known damaged: stepped around like a full AG (the rotor moves past it too).
      if (this.spaceSick(ag)) {
        // Only this AG would do: say why it will not.
        if (req.agno !== undefined) throw this.sickRefusal(ag, 'cannot allocate');
        avoided.push(ag);
        continue;
      }
      // Cheap early out: the header knows the longest free extent (confirmed from the cntbt before
      // the AG is passed over, so a header that lies cannot make an AG with room look full).
      if (ag.longestFree < req.minLen) {
        this.inAg(ag, 'allocating', () => ag.confirmLongestFree());
        continue;
      }
      const found = this.inAg(ag, 'allocating', () => {
        ag.fixFreelist();
        const agGoal = goal !== null && agno === this.geo.agnoOf(goal) ? this.geo.agbnoOf(goal) : null;
        if (req.exact && agGoal === null) return null;
        const piece = ag.findFree({
          minLen: req.minLen, maxLen, goal: agGoal, exact: req.exact, align: req.align,
        });
        if (piece !== null) this.claim(ag, piece.startblock, piece.blockcount, req.owner, req.offset ?? 0, req.flags ?? 0);
        return piece;
      });
      if (found === null) continue;
      if (goal === null && req.agno === undefined) this.rotor = (agno + 1) % this.ags.length;
      return { fsbno: this.geo.fsbno(agno, found.startblock), agno, agbno: found.startblock, len: found.blockcount };
    }
    // ENOSPC all the same when damaged AGs were skipped: the caller may try elsewhere (an inode chunk in another AG).
    throw this.noSpace(req.minLen, this.busyCount() > 0 ? ' (some freed space is not reusable until a checkpoint)' : '', avoided);
  }

  /** The ENOSPC of an allocation of `minLen` blocks: why (`why`), and the damaged AGs it did not use. */
  private noSpace(minLen: number, why: string, avoided: readonly AllocGroup[]): RmapfsError {
    const damaged = avoided.length === 0 ? '' : `; AG ${avoided.map((a) => a.agno).join(', ')} ${avoided.length === 1 ? 'is' : 'are'} not used (damaged metadata)`;
    return new RmapfsError('ENOSPC', `no free extent of ${minLen} block${minLen === 1 ? '' : 's'}${why}${damaged}`);
  }

  /**
   * Free extents of `count` blocks in all, near `goal`, reserved (outside any
   * transaction: nothing changes but the AGs' in-memory reservations) for a
   * repair to write in place and claim at its commit (`claimReserved`), or
   * null when there is not enough usable free space (nothing is then kept).
   */
  reserveFree(count: number, goal: number): AllocatedExtent[] | null {
    if (this.repairBudget() < count) return null;
    const out: AllocatedExtent[] = [];
    let have = 0;
    const first = this.geo.agnoOf(goal);
    for (let i = 0; i < this.ags.length && have < count; i++) {
      const ag = this.ags[(first + i) % this.ags.length]!;
      if (this.spaceSick(ag)) continue;
      for (;;) {
        const piece = ag.findFree({ minLen: 1, maxLen: count - have, goal: i === 0 ? this.geo.agbnoOf(goal) : null });
        if (piece === null) break;
        ag.reserve(piece.startblock, piece.blockcount);
        out.push({ fsbno: this.geo.fsbno(ag.agno, piece.startblock), agno: ag.agno, agbno: piece.startblock, len: piece.blockcount });
        have += piece.blockcount;
        if (have >= count) break;
      }
    }
    if (have >= count) return out;
    this.releaseReserved(out);
    return null;
  }

  releaseReserved(extents: readonly AllocatedExtent[]): void {
    for (const e of extents) this.ag(e.agno).unreserve(e.agbno, e.len);
  }

  /** Inside a transaction: reserved extents become an owner's (rmap and free space), their reservations released. */
  claimReserved(extents: readonly AllocatedExtent[], owner: number, flags: number): void {
    for (const e of extents) {
      const ag = this.ag(e.agno);
      if (this.spaceSick(ag)) throw this.sickRefusal(ag, 'cannot allocate');
      this.inAg(ag, 'allocating', () => {
        ag.fixFreelist(); // while the extent is still reserved: the free list must not take it
        ag.unreserve(e.agbno, e.len);
        this.claim(ag, e.agbno, e.len, owner, 0, flags);
      });
    }
  }

  /**
   * Runs fn on an AG's structures, saying what for: a structure that fails
   * its checks meanwhile is marked sick with it (AllocGroup.markSick, from
   * the btree storages and the cross-checks).
   */
  private inAg<T>(ag: AllocGroup, activity: string, fn: () => T): T {
    const before = ag.activity;
    ag.activity = activity;
    try {
      return fn();
    } finally {
      ag.activity = before;
    }
  }

  /**
   * The AG an extent to free (or to mark written or unwritten) lies in, refused when it crosses the AG's
   * end or the AG's free space is damaged.
   */
  private agToFree(fsbno: number, len: number, verb = 'free'): { ag: AllocGroup; agno: number; agbno: number } {
    const agno = this.geo.agnoOf(fsbno);
    const agbno = this.geo.agbnoOf(fsbno);
    const ag = this.ag(agno);
    if (agbno + len > ag.length) throw new RmapfsError('EFSCORRUPTED', `${verb}ing ${fsbno}+${len}, which crosses the end of AG ${agno}`);
    // Refused before anything changes: giving space back to a damaged btree could make it worse.
    if (this.spaceSick(ag)) throw this.sickRefusal(ag, `cannot ${verb} blocks ${fsbno}+${len}`);
    return { ag, agno, agbno };
  }

  /**
   * Marks file data an owner holds written or unwritten (a write into
   * preallocated space, a zero-range over written data): the rmap record
   * changes state, no space is allocated or freed. The range must lie in one
   * record of the owner at that offset (a block-map extent always does: the
   * rmap merges whatever the block map merges). Live hooks hear an unmap in
   * the old state and a map in the new one, so a repair's copy changes too.
   */
  setUnwritten(fsbno: number, len: number, owner: number, offset: number, unwritten: boolean): void {
    const { ag, agbno } = this.agToFree(fsbno, len, 'convert');
    const from = unwritten ? 0 : RMAP_UNWRITTEN;
    const to = unwritten ? RMAP_UNWRITTEN : 0;
    this.inAg(ag, 'converting', () => {
      ag.fixFreelist(); // splitting a record may split rmap blocks
      this.unmapOwned(ag, agbno, len, owner, offset, from);
      const rec = { startblock: agbno, blockcount: len, owner, offset, flags: to };
      try {
        rmapMap(ag.rmap, rec, `AG ${ag.agno} rmap`);
      } catch (e) {
        if (isCorruption(e)) ag.markSick('rmapbt', e.message);
        throw e;
      }
      this.note({ op: 'map', agno: ag.agno, ...rec });
    });
  }

  /** Frees an extent an owner held (it must be mapped to that owner at that offset). */
  free(fsbno: number, len: number, owner: number, offset = 0, flags = 0): void {
    const { ag, agbno } = this.agToFree(fsbno, len);
    this.inAg(ag, 'freeing', () => {
      ag.fixFreelist();
      this.release(ag, agbno, len, owner, offset, flags);
    });
  }

  /** Blocks free in all AGs (the free lists count as used: they belong to the AG's metadata). */
  freeBlocks(): number {
    return this.ags.reduce((sum, ag) => sum + ag.freeBlocks, 0);
  }

  /** Free blocks an ordinary allocation may take: all but the reserve pool (what statfs reports free). */
  availableBlocks(): number {
    return Math.max(0, this.usableFree(() => 0).blocks - this.reservePool);
  }

  /**
   * Free blocks (less `held(ag)`) in the AGs allocations may use: an AG known damaged, or whose
   * header fails to read (which marks it so), counts nothing -- it is stepped around anyway.
   * `failure`: the first such read error, for a caller that cannot go on without that AG.
   * `withSick`: count AGs known damaged too (a repair's budget).
   */
  private usableFree(held: (ag: AllocGroup) => number, withSick = false): { blocks: number; failure: RmapfsError | null } {
    let blocks = 0;
    let failure: RmapfsError | null = null;
    for (const ag of this.ags) {
      if (!withSick && this.spaceSick(ag)) continue;
      try {
        blocks += this.inAg(ag, 'counting free space', () => ag.freeBlocks - held(ag));
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        failure ??= e;
      }
    }
    return { blocks, failure };
  }

  /**
   * What a repair may take for a new structure now: free blocks that are
   * not busy, less the reserve pool (a repair's new btree must not eat the
   * space a write into preallocated space may need, as XFS's repairs reserve
   * from ordinary free space). Damaged AGs count: a repair rebuilds in the
   * AG it repairs, whose structure being repaired is what makes it sick.
   */
  repairBudget(): number {
    return Math.max(0, this.usableFree((ag) => ag.busyBlocks, true).blocks - this.reservePool);
  }

  /** Freed extents waiting for a log force before they may be reused. */
  busyCount(): number {
    return this.ags.reduce((sum, ag) => sum + ag.busyCount, 0);
  }

  /** The log was forced (freed file data may be reused), or checkpointed (freed metadata too). */
  clearBusy(checkpointed: boolean): void {
    for (const ag of this.ags) ag.clearBusy(checkpointed);
  }

  private claim(ag: AllocGroup, agbno: number, len: number, owner: number, offset: number, flags: number): void {
    ag.takeFree(agbno, len);
    try {
      rmapMap(ag.rmap, { startblock: agbno, blockcount: len, owner, offset, flags }, `AG ${ag.agno} rmap`);
    } catch (e) {
      // Free space said free what the rmap says is owned: they disagree, and which is wrong is not known here.
      if (isCorruption(e)) for (const s of ['rmapbt', 'bnobt'] as const) ag.markSick(s, e.message);
      throw e;
    }
    this.note({ op: 'map', agno: ag.agno, startblock: agbno, blockcount: len, owner, offset, flags });
  }

  private release(ag: AllocGroup, agbno: number, len: number, owner: number, offset: number, flags: number): void {
    this.unmapOwned(ag, agbno, len, owner, offset, flags);
    this.giveBack(ag, agbno, len, owner, flags);
  }

  private unmapOwned(ag: AllocGroup, agbno: number, len: number, owner: number, offset: number, flags: number): void {
    try {
      rmapUnmap(ag.rmap, { startblock: agbno, blockcount: len, owner, offset, flags }, `AG ${ag.agno} rmap`);
    } catch (e) {
      if (isCorruption(e)) ag.markSick('rmapbt', e.message);
      throw e;
    }
    this.note({ op: 'unmap', agno: ag.agno, startblock: agbno, blockcount: len, owner, offset, flags });
  }

  private giveBack(ag: AllocGroup, agbno: number, len: number, owner: number, flags: number): void {
    ag.giveFree(agbno, len);
    // Metadata (special owners, and the btree blocks of files) has images in the log; file data and attribute values do not.
    const metadata = !isInodeOwner(owner) || (flags & RMAP_BMBT_BLOCK) !== 0;
    ag.markBusy(agbno, len, metadata);
  }

  /**
   * Frees a run of blocks an owner holds as several rmap records (an
   * inode's btree blocks are one record each): every record unmapped, the
   * space given back once -- a repair reaping a directory of thousands of
   * blocks in its commit pays one free-space update per run, not per block.
   */
  freeOwnedRun(fsbno: number, len: number, owner: number, flags: number): void {
    const agno = this.geo.agnoOf(fsbno);
    this.freeOwnedRuns(agno, [{ startblock: this.geo.agbnoOf(fsbno), blockcount: len }], owner, flags);
  }

  /**
   * freeOwnedRun for many runs of one AG, in ascending block order (a
   * repair's reap): the rmap records of a run are found by stepping on from
   * the previous run's (RmapRunRemover), not by a look-up from the root each.
   * Each run is still its own free-list fix, rmap delete and free-space
   * update, in the same order, so the blocks written are the same.
   */
  freeOwnedRuns(agno: number, runs: readonly FreeExtent[], owner: number, flags: number): RmapRunRemover {
    const ag = this.ag(agno);
    const remover = new RmapRunRemover(ag.rmap);
    // One run's free needs no more than the usual free list; many runs grow the free-space btrees by up to
    // two records each, so the free list is filled deeper first, while few extents are busy.
    const slack = runs.length > 1 ? ag.batchFreelistSlack() : 0;
    for (const run of runs) {
      const { agbno } = this.agToFree(this.geo.fsbno(agno, run.startblock), run.blockcount);
      this.inAg(ag, 'freeing', () => {
        if (run === runs[0] && slack > 0) ag.topUpFreelist(slack);
        this.freeOwnedRunIn(ag, agbno, run.blockcount, owner, flags, slack, remover);
      });
    }
    // Back to the usual depth: what the batch did not use goes back to free space.
    if (slack > 0) this.inAg(ag, 'freeing', () => ag.fixFreelist());
    return remover;
  }

  private freeOwnedRunIn(ag: AllocGroup, agbno: number, len: number, owner: number, flags: number, slack: number,
    remover: RmapRunRemover): void {
    const agno = ag.agno;
    if (ag.fixFreelist(slack)) remover.forget();
    for (let at = agbno; at < agbno + len;) {
      const reached = remover.remove(at, agbno + len, owner, (whole) => {
        this.note({ op: 'unmap', agno, startblock: whole.startblock, blockcount: whole.blockcount, owner, offset: whole.offset, flags: whole.flags });
      });
      if (reached > at) {
        at = reached;
        continue;
      }
      remover.forget();
      const r = rmapFind(ag.rmap, at);
      if (r === null || r.owner !== owner) {
        const e = corruption(`AG ${agno} rmap: freeing block ${at} of owner ${owner}, but the rmap has ${r === null ? 'nothing there' : `owner ${r.owner}`}`);
        ag.markSick('rmapbt', e.message);
        throw e;
      }
      const n = Math.min(agbno + len, r.startblock + r.blockcount) - at;
      const offset = (r.flags & RMAP_BMBT_BLOCK) !== 0 ? r.offset : r.offset + (at - r.startblock);
      this.unmapOwned(ag, at, n, owner, offset, flags);
      at += n;
    }
    this.giveBack(ag, agbno, len, owner, flags);
  }

  // ---- inode btree blocks (called from inside inobt splits and merges) ------

  allocInobtBlock(ag: AllocGroup, hint: number): number {
    if (this.spaceSick(ag)) throw this.sickRefusal(ag, 'cannot grow the inode btree');
    return this.allocRepairBlock(ag, hint, OWN_INOBT);
  }

  /**
   * One free block (never a busy one) near `hint`, mapped to `owner` in the
   * rmap: for a repair's new btree. Not refused while the AG's space metadata
   * is known sick: the repair runs because something there is, trusting what
   * it rebuilds from (the inode btree's repair runs while the rmap is blamed
   * for the inode chunks the damaged inode btree names).
   */
  allocRepairBlock(ag: AllocGroup, hint: number, owner: number): number {
    const found = ag.findFree({ minLen: 1, maxLen: 1, goal: hint });
    if (found === null) throw new RmapfsError('ENOSPC', `AG ${ag.agno}: no free block for a new ${ownerName(owner)} btree block`);
    this.claim(ag, found.startblock, 1, owner, 0, 0);
    return found.startblock;
  }

  freeInobtBlock(ag: AllocGroup, agbno: number): void {
    this.release(ag, agbno, 1, OWN_INOBT, 0, 0);
  }
}
