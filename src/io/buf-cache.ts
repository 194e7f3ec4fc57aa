/**
 * The buffer cache: whole blocks of one target held in memory, looked up by
 * block number.
 *
 * - `read` loads a block on a miss and runs the caller's verifier (magic,
 *   own block number, crc32c ...) before anyone sees it; `get` hands out a
 *   zeroed block for one that is about to be written from scratch.
 * - Memory is bounded: past `maxBlocks`, the least recently used clean blocks
 *   are dropped. Dirty blocks stay until written back -- unless the target
 *   allows write-back on eviction (an xfile does; the data device does not,
 *   because there the journal decides when metadata may reach the disk).
 * - Protocol for writers: modify the block, then `markDirty` it. A buffer that
 *   was evicted while a caller still held it is re-adopted by `markDirty`, so
 *   a write can never be lost to eviction.
 * - Transactions: between `beginTx` and `commitTx`, the first access to each
 *   block keeps a copy of it as it was (its pre-image). `abortTx` puts every
 *   block back -- an operation that fails halfway (ENOSPC, corruption found,
 *   a bug) leaves no half-done change behind. Blocks touched by the open
 *   transaction are never evicted.
 * - Logging: with `trackLogging`, every block dirtied since the last
 *   `takeUnlogged` is remembered; the journal takes them at a log force, and
 *   a block whose current contents are not yet in the log may not be written
 *   in place (write-ahead logging).
 * - Snapshots: `openSnapshot` freezes what the blocks hold at that moment.
 *   From then on every committed transaction hands the snapshot the
 *   pre-image of each block it changed, so the snapshot can always tell what
 *   a block held when it opened, however the cache moved on -- a reader that
 *   works in slices between foreground transactions (online scrub) sees one
 *   consistent filesystem.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { BufTarget } from './buf-target';

const log = createDebug('rmapfs:bufcache');

/** What to do with a block's bytes on their way in from, and out to, the target. */
export interface BufOps {
  readonly name: string;
  /** Throws an RmapfsError (EFSCORRUPTED / EFSBADCRC) when the block read is not valid. */
  verifyRead(buf: Buf): void;
  /** Last touches before the block goes out (e.g. compute its crc32c). */
  prepareWrite(buf: Buf): void;
  /** Records the log sequence number of the change being logged (wherever this block type keeps it). */
  stampLsn?(buf: Buf, lsn: number): void;
}

export class Buf {
  dirty = false;
  /**
   * prepareWrite has run since the last change (the log force does it for the
   * image it logs): write-back need not compute the crc again.
   */
  prepared = false;
  /** Whether the cache's index holds this object (false once evicted or invalidated). */
  cached = true;
  /**
   * Parts of a block that holds several self-checked records (bit i: record
   * i) whose own crc was bad when read: prepareWrite must not make them a
   * good one until they are repaired (a neighbour's change would hide the
   * damage). Set by the ops' verifyRead, cleared by the repairer; kept with
   * pre-images and snapshot images like the data.
   */
  damagedParts = 0;
  /** LRU links (most recent at the head). */
  prev: Buf | null = null;
  next: Buf | null = null;

  constructor(readonly bno: number, readonly data: Buffer, public ops: BufOps | null) {}
}

/** A block's bytes as its target holds them, handed from one cache to the next (BufCache.adopt). */
export interface CachedImage {
  bno: number;
  data: Buffer;
}

/** A copy of a block's image to make its crc on, with what was known damaged in it. */
function imageBuf(bno: number, data: Buffer, ops: BufOps, damagedParts: number): Buf {
  const buf = new Buf(bno, data, ops);
  buf.damagedParts = damagedParts;
  return buf;
}

export interface BufCacheOptions {
  /** Upper bound on cached blocks (clean ones are evicted past it). */
  maxBlocks?: number;
  /** Write dirty blocks back when evicting them (only for targets with no ordering rules). */
  writeBackOnEvict?: boolean;
  /** Remember blocks dirtied since the last log force, and refuse to write those in place. */
  trackLogging?: boolean;
}

/** A block as it was before the open transaction first touched it. */
interface PreImage {
  /** null when the block was not cached at all (a new block: aborting forgets it). */
  data: Buffer | null;
  dirty: boolean;
  unlogged: boolean;
  /** The block's type then (a snapshot may need to make its crc: a dirty image's is stale). */
  ops: BufOps | null;
  damagedParts: number;
}

/** What a snapshot keeps of a block changed after it opened. */
interface SnapshotImage {
  data: Buffer;
  /** The crc in data is stale (the block was dirty): stamp it with ops before handing it out. */
  stale: boolean;
  ops: BufOps | null;
  /** Buf.damagedParts then: a stale image's crc is made as write-back would make it. */
  damagedParts: number;
}

/**
 * The blocks of a cache as they were when the snapshot opened (see
 * BufCache.openSnapshot). It holds only the blocks changed since; every other
 * block is read as it is now (from the cache, else the target), which is the
 * same thing. Close it when done: while it is open, every transaction's
 * changed blocks are copied into it.
 */
export class CacheSnapshot {
  private readonly images = new Map<number, SnapshotImage>();
  /**
   * Why the snapshot stopped being one moment's view (a block changed in a way it
   * could not record, or it grew past maxImages), or null while it is exact.
   */
  spoiled: string | null = null;
  private closed = false;

  constructor(private readonly cache: BufCache, readonly maxImages: number) {}

  /** Blocks changed since the snapshot opened (held as copies). */
  get imageCount(): number {
    return this.images.size;
  }

  /** Whether the snapshot already holds block bno's image. */
  has(bno: number): boolean {
    return this.images.has(bno);
  }

  /**
   * Block bno as it was when the snapshot opened, into dst at dstOffset, with a
   * valid crc (dirty blocks get theirs made here, as write-back would).
   */
  readBlock(bno: number, dst: Buffer, dstOffset: number): void {
    const bs = this.cache.blockSize;
    const out = dst.subarray(dstOffset, dstOffset + bs);
    const image = this.images.get(bno);
    if (image !== undefined) {
      image.data.copy(out);
      if (image.stale && image.ops !== null) image.ops.prepareWrite(imageBuf(bno, out, image.ops, image.damagedParts));
      return;
    }
    const buf = this.cache.peek(bno);
    if (buf === undefined) {
      this.cache.target.readBlocks(bno, 1, dst, dstOffset);
      return;
    }
    buf.data.copy(out);
    if (buf.dirty && !buf.prepared && buf.ops !== null) buf.ops.prepareWrite(imageBuf(bno, out, buf.ops, buf.damagedParts));
  }

  /**
   * `count` blocks from bno as readBlock gives each, every run that neither
   * the snapshot nor the cache holds read from the target in one go (a
   * repair salvaging thousands of mostly adjacent blocks).
   */
  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    const bs = this.cache.blockSize;
    for (let i = 0; i < count;) {
      let j = i;
      while (j < count && !this.images.has(bno + j) && this.cache.peek(bno + j) === undefined) j++;
      if (j > i) {
        this.cache.target.readBlocks(bno + i, j - i, dst, dstOffset + i * bs);
        i = j;
      } else {
        this.readBlock(bno + i, dst, dstOffset + i * bs);
        i++;
      }
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.images.clear();
    this.cache.dropSnapshot(this);
  }

  /** Keeps block bno's image as of the snapshot (the first one offered wins: it is the oldest). */
  keep(bno: number, data: Buffer, stale: boolean, ops: BufOps | null, damagedParts = 0): void {
    if (this.spoiled !== null || this.images.has(bno)) return;
    if (this.images.size >= this.maxImages) {
      this.spoil(`more than ${this.maxImages} blocks changed while it was open`);
      return;
    }
    this.images.set(bno, { data: Buffer.from(data), stale, ops, damagedParts });
  }

  spoil(why: string): void {
    if (this.spoiled !== null) return;
    this.spoiled = why;
    this.images.clear(); // nothing it holds can be trusted to complete a view any more
    log('%s: snapshot spoiled: %s', this.cache.target.name, why);
  }
}

export interface BufCacheStats {
  hits: number;
  misses: number;
  blocksRead: number;
  blocksWritten: number;
  evictions: number;
  cachedBlocks: number;
  dirtyBlocks: number;
  cachedBytes: number;
}

/** Fewest blocks a cache may hold: one btree operation touches a few per level. */
export const MIN_CACHE_BLOCKS = 64;

export class BufCache {
  readonly target: BufTarget;
  readonly blockSize: number;
  readonly maxBlocks: number;
  readonly writeBackOnEvict: boolean;
  private readonly index = new Map<number, Buf>();
  private head: Buf | null = null;
  private tail: Buf | null = null;
  private dirtyCount = 0;
  readonly trackLogging: boolean;
  private readonly unlogged = new Set<Buf>();
  /** The open transaction's pre-images, or null outside a transaction. */
  private tx: Map<Buf, PreImage> | null = null;
  private readonly spareImages: Buffer[] = [];
  private readonly snapshots = new Set<CacheSnapshot>();
  private readonly counters = { hits: 0, misses: 0, blocksRead: 0, blocksWritten: 0, evictions: 0 };

  constructor(target: BufTarget, options: BufCacheOptions = {}) {
    this.target = target;
    this.blockSize = target.blockSize;
    this.maxBlocks = Math.max(MIN_CACHE_BLOCKS, options.maxBlocks ?? 8192);
    this.writeBackOnEvict = options.writeBackOnEvict ?? false;
    this.trackLogging = options.trackLogging ?? false;
  }

  // ---- transactions --------------------------------------------------------

  get inTx(): boolean {
    return this.tx !== null;
  }

  beginTx(): void {
    if (this.tx !== null) throw new RmapfsError('EINVAL', `${this.target.name}: a transaction is already open`);
    this.tx = new Map();
  }

  /** Keeps the changes; the pre-images are dropped. Returns the blocks the transaction touched. */
  commitTx(): number {
    const tx = this.requireTx();
    if (this.snapshots.size > 0) this.offerPreImages(tx);
    for (const pre of tx.values()) if (pre.data !== null) this.spareImages.push(pre.data);
    this.tx = null;
    return tx.size;
  }

  // ---- snapshots ----------------------------------------------------------

  /**
   * Freezes the blocks as they are now (between transactions): the snapshot
   * answers what any block held at this moment until it is closed. It keeps
   * a copy of each block changed meanwhile, up to maxImages (then it is
   * spoiled, as it is by a change made outside a transaction).
   */
  openSnapshot(maxImages = 16384): CacheSnapshot {
    if (this.tx !== null) throw new RmapfsError('EINVAL', `${this.target.name}: a snapshot cannot open inside a transaction`);
    const snap = new CacheSnapshot(this, maxImages);
    this.snapshots.add(snap);
    return snap;
  }

  /** @internal (CacheSnapshot.close) */
  dropSnapshot(snap: CacheSnapshot): void {
    this.snapshots.delete(snap);
  }

  get openSnapshots(): number {
    return this.snapshots.size;
  }

  /** The transaction commits: the snapshots keep what it changed, as it was before. */
  private offerPreImages(tx: Map<Buf, PreImage>): void {
    for (const [buf, pre] of tx) {
      if (pre.data === null) {
        // Not cached before (a new block written whole): what the snapshot saw is still on the target
        // (unless written around the cache: writeAround offered it before overwriting it).
        this.offerTargetBlock(buf.bno);
        continue;
      }
      const changed = !buf.cached || this.index.get(buf.bno) !== buf || !pre.data.equals(buf.data);
      if (!changed) continue;
      for (const snap of this.snapshots) snap.keep(buf.bno, pre.data, pre.dirty, pre.ops, pre.damagedParts);
    }
  }

  /** Open snapshots that have no image of bno yet keep what the target holds there now. */
  private offerTargetBlock(bno: number): void {
    let want = false;
    for (const snap of this.snapshots) want ||= !snap.has(bno);
    if (!want) return;
    const old = this.spareImages.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
    this.target.readBlocks(bno, 1, old, 0);
    for (const snap of this.snapshots) snap.keep(bno, old, false, null);
    this.spareImages.push(old);
  }

  private spoilSnapshots(why: string): void {
    for (const snap of this.snapshots) snap.spoil(why);
  }

  /** Puts every block the transaction touched back as it was. */
  abortTx(): void {
    const tx = this.requireTx();
    this.tx = null;
    for (const [buf, pre] of tx) {
      if (pre.data === null) {
        // The block was not cached before: forget whatever the transaction made of it.
        if (buf.cached && this.index.get(buf.bno) === buf) this.remove(buf);
        this.unlogged.delete(buf);
        continue;
      }
      pre.data.copy(buf.data);
      buf.prepared = false;
      buf.damagedParts = pre.damagedParts;
      this.spareImages.push(pre.data);
      if (!buf.cached) this.insert(buf);
      if (buf.dirty !== pre.dirty) {
        buf.dirty = pre.dirty;
        this.dirtyCount += pre.dirty ? 1 : -1;
      }
      if (pre.unlogged) this.unlogged.add(buf);
      else this.unlogged.delete(buf);
    }
    log('%s: transaction aborted, %d blocks restored', this.target.name, tx.size);
  }

  private requireTx(): Map<Buf, PreImage> {
    if (this.tx === null) throw new RmapfsError('EINVAL', `${this.target.name}: no transaction is open`);
    return this.tx;
  }

  /** First touch of a block in the open transaction: keep its pre-image. */
  private remember(buf: Buf, existed: boolean): void {
    const tx = this.tx!;
    if (tx.has(buf)) return;
    let data: Buffer | null = null;
    if (existed) {
      data = this.spareImages.pop() ?? Buffer.allocUnsafeSlow(this.blockSize);
      buf.data.copy(data);
    }
    tx.set(buf, { data, dirty: buf.dirty, unlogged: this.unlogged.has(buf), ops: buf.ops, damagedParts: buf.damagedParts });
  }

  // ---- logging -------------------------------------------------------------

  /** The blocks dirtied since the last call, in block order; they count as logged from now on. */
  takeUnlogged(): Buf[] {
    const out = [...this.unlogged].filter((b) => b.dirty && b.cached);
    this.unlogged.clear();
    out.sort((a, b) => a.bno - b.bno);
    return out;
  }

  get unloggedCount(): number {
    return this.unlogged.size;
  }

  // ---- blocks --------------------------------------------------------------

  /** The block, read from the target (and verified) if it is not cached. */
  read(bno: number, ops: BufOps | null): Buf {
    let buf = this.index.get(bno);
    if (buf !== undefined) {
      this.counters.hits++;
      this.touch(buf);
      if (ops !== null && buf.ops !== ops) {
        // First read with these ops of a block cached with others (or none). A dirty
        // block's crc is only made on its way out, so only a clean one can be checked.
        if (!buf.dirty) ops.verifyRead(buf);
        buf.ops = ops;
      }
      if (this.tx !== null) this.remember(buf, true);
      return buf;
    }
    this.counters.misses++;
    const data = Buffer.allocUnsafeSlow(this.blockSize);
    this.target.readBlocks(bno, 1, data, 0);
    this.counters.blocksRead++;
    buf = new Buf(bno, data, ops);
    if (ops !== null) ops.verifyRead(buf); // throws before a bad block enters the cache
    this.insert(buf);
    if (this.tx !== null) this.remember(buf, true);
    return buf;
  }

  /**
   * read(), but a miss (outside a transaction) first reads the whole run
   * [runStart, runStart + runCount) it lies in, in one target read (see
   * readAhead): for blocks read as a unit -- an inode chunk, as XFS reads
   * inode clusters -- where a scan will want the neighbours next.
   */
  readInRun(bno: number, ops: BufOps, runStart: number, runCount: number): Buf {
    if (this.tx === null && !this.index.has(bno)) this.readAhead(runStart, runCount, ops);
    return this.read(bno, ops);
  }

  /** A zeroed buffer for a block about to be written whole (no read). */
  get(bno: number, ops: BufOps | null): Buf {
    let buf = this.index.get(bno);
    if (buf !== undefined) {
      this.counters.hits++;
      this.touch(buf);
      if (this.tx !== null) this.remember(buf, true);
      buf.data.fill(0);
      buf.prepared = false;
      buf.damagedParts = 0;
      buf.ops = ops;
      return buf;
    }
    buf = new Buf(bno, Buffer.alloc(this.blockSize), ops);
    this.insert(buf);
    if (this.tx !== null) this.remember(buf, false);
    return buf;
  }

  /** The cached buffer for bno, or undefined; never reads. */
  peek(bno: number): Buf | undefined {
    return this.index.get(bno);
  }

  /**
   * Reads ahead: every block of [bno, bno + count) not cached goes into the
   * cache, clean and verified with `ops`, each run of them in ONE target
   * read (a block that fails verification stays out: its own read reports
   * it). A scan that will read every block of a run soon pays one read, not
   * one per block. Outside transactions only (a no-op inside one).
   */
  readAhead(bno: number, count: number, ops: BufOps): void {
    if (this.tx !== null) return;
    const bs = this.blockSize;
    for (let i = 0; i < count;) {
      if (this.index.has(bno + i)) {
        i++;
        continue;
      }
      let j = i + 1;
      while (j < count && !this.index.has(bno + j)) j++;
      const run = Buffer.allocUnsafeSlow((j - i) * bs);
      this.target.readBlocks(bno + i, j - i, run, 0);
      for (let k = i; k < j; k++) {
        // The blocks share the run's memory (no allocation and copy per block): a run is a few blocks
        // read together, so one kept in the cache holds at most that few others' memory.
        const buf = new Buf(bno + k, run.subarray((k - i) * bs, (k - i + 1) * bs), ops);
        try {
          ops.verifyRead(buf);
        } catch {
          continue;
        }
        this.counters.blocksRead++;
        this.insert(buf);
      }
      i = j;
    }
  }

  markDirty(buf: Buf): void {
    if (!buf.cached) this.readopt(buf);
    if (this.tx !== null && !this.tx.has(buf)) {
      // Dirtied without a read or get in this transaction (a buffer kept from before):
      // too late for a faithful pre-image, so refuse rather than risk a bad rollback.
      throw new RmapfsError('EIO', `${this.target.name}: block ${buf.bno} changed outside its transaction`);
    }
    // Changed with no transaction to keep its pre-image: no snapshot can say what it held.
    if (this.tx === null && this.snapshots.size > 0) this.spoilSnapshots(`block ${buf.bno} changed outside a transaction`);
    if (!buf.dirty) {
      buf.dirty = true;
      this.dirtyCount++;
    }
    buf.prepared = false;
    if (this.trackLogging) this.unlogged.add(buf);
  }

  /** Writes one dirty buffer to the target. */
  writeBack(buf: Buf): void {
    if (!buf.dirty) return;
    if (this.trackLogging && this.unlogged.has(buf)) {
      throw new RmapfsError('EIO', `${this.target.name}: block ${buf.bno} would reach the disk before the log`);
    }
    if (buf.ops !== null && !buf.prepared) buf.ops.prepareWrite(buf);
    this.target.writeBlocks(buf.bno, 1, buf.data, 0);
    this.counters.blocksWritten++;
    buf.dirty = false;
    if (buf.cached) this.dirtyCount--;
  }

  /**
   * Writes blocks built outside the cache (a bulk load's, see BulkLoadOptions)
   * straight to their place on the target, in runs of neighbours, and forgets
   * any cached copy of those blocks (in a transaction, an abort brings the old
   * copies back). They are not logged: this is for a new structure built in
   * space that was free in every state the log can recover (never busy), and
   * the caller must have the target synced before the log records what makes
   * them reachable (Filesystem.noteDataWritten does that, as for file data).
   */
  writeAround(bufs: readonly Buf[]): void {
    const sorted = [...bufs].sort((a, b) => a.bno - b.bno);
    for (let i = 0; i < sorted.length;) {
      const start = sorted[i]!.bno;
      let n = 0;
      while (i + n < sorted.length && sorted[i + n]!.bno === start + n) {
        const buf = sorted[i + n]!;
        if (buf.ops !== null && !buf.prepared) buf.ops.prepareWrite(buf);
        buf.prepared = true;
        // Open snapshots keep what the block held: a cached copy's image comes with the commit (the
        // invalidation below remembers it); an uncached block's must be read before it is overwritten.
        if (this.snapshots.size > 0 && !this.index.has(buf.bno)) this.offerTargetBlock(buf.bno);
        this.invalidate(buf.bno);
        n++;
      }
      // Neighbours on the target are usually neighbours in memory too (one arena): one write for the run.
      const first = sorted[i]!.data;
      let contiguous = true;
      for (let k = 1; k < n && contiguous; k++) {
        const d = sorted[i + k]!.data;
        contiguous = d.buffer === first.buffer && d.byteOffset === first.byteOffset + k * this.blockSize;
      }
      if (contiguous) {
        this.target.writeBlocks(start, n, Buffer.from(first.buffer, first.byteOffset, n * this.blockSize), 0);
      } else {
        for (let k = 0; k < n; k++) this.target.writeBlocks(start + k, 1, sorted[i + k]!.data, 0);
      }
      this.counters.blocksWritten += n;
      i += n;
    }
  }

  /** The dirty blocks, in block order (for writing them back a few at a time: see writeBack). */
  dirtyBlocks(): Buf[] {
    const dirty: Buf[] = [];
    if (this.dirtyCount > 0) for (const buf of this.index.values()) if (buf.dirty) dirty.push(buf);
    return dirty.sort((a, b) => a.bno - b.bno);
  }

  /** Writes every dirty block back in block order, then flushes the target. */
  /** Writes every dirty block in place and flushes the target; returns how many it wrote. */
  flush(): number {
    let written = 0;
    for (const buf of this.dirtyBlocks()) {
      this.writeBack(buf);
      written++;
    }
    this.target.flush();
    return written;
  }

  /** Forgets a block (freed, or to be re-read): dirty contents are discarded. */
  invalidate(bno: number): void {
    const buf = this.index.get(bno);
    if (buf === undefined) {
      // A block freed while not cached: its last contents are on the target, and it may be reused
      // for file data (written around the cache) before a snapshot reader gets to it.
      if (this.snapshots.size > 0) this.offerTargetBlock(bno);
      return;
    }
    if (this.tx !== null) this.remember(buf, true);
    // Outside a transaction nothing else keeps what the block held (inside, the commit does).
    else for (const snap of this.snapshots) snap.keep(bno, buf.data, buf.dirty && !buf.prepared, buf.ops);
    this.unlogged.delete(buf);
    this.remove(buf);
  }

  /** Drops every block, dirty ones included (the target's contents are being thrown away). */
  discardAll(): void {
    if (this.snapshots.size > 0) this.spoilSnapshots('the cache was discarded');
    for (const buf of [...this.index.values()]) this.remove(buf);
    this.unlogged.clear();
  }

  /**
   * The clean blocks, least recently used first: what a later cache of the same device, opened after
   * this one's owner closed it (every dirty block written), may `adopt` instead of reading them again.
   */
  cleanBlocks(): CachedImage[] {
    const out: CachedImage[] = [];
    for (let buf = this.tail; buf !== null; buf = buf.prev) if (!buf.dirty) out.push({ bno: buf.bno, data: buf.data });
    return out;
  }

  /**
   * Takes blocks another cache held of this target, exactly as the target holds them (`cleanBlocks`
   * after a close): cached with no type, so the first read of each runs its verifier as a miss would.
   * Blocks already cached here are kept as they are; past maxBlocks the oldest go first.
   */
  adopt(images: readonly CachedImage[]): void {
    if (this.tx !== null) throw new RmapfsError('EINVAL', `${this.target.name}: blocks cannot be adopted inside a transaction`);
    for (const { bno, data } of images) {
      if (this.index.has(bno) || data.length !== this.blockSize) continue;
      this.insert(new Buf(bno, data, null));
    }
  }

  /** Drops every clean block (dirty ones stay). */
  purgeClean(): void {
    for (const buf of [...this.index.values()]) if (!buf.dirty) this.remove(buf);
  }

  stats(): BufCacheStats {
    return {
      ...this.counters,
      cachedBlocks: this.index.size,
      dirtyBlocks: this.dirtyCount,
      cachedBytes: this.index.size * this.blockSize,
    };
  }

  private insert(buf: Buf): void {
    this.index.set(buf.bno, buf);
    buf.cached = true;
    this.linkHead(buf);
    // Never the block being inserted: its caller is about to use (and maybe dirty) it.
    if (this.index.size > this.maxBlocks) this.evict(buf);
  }

  private readopt(buf: Buf): void {
    const other = this.index.get(buf.bno);
    if (other !== undefined) {
      // Two live copies of one block: a caller kept a buffer across too many others.
      throw new RmapfsError('EIO', `${this.target.name}: block ${buf.bno} was modified through a stale buffer`);
    }
    this.insert(buf);
    if (buf.dirty) this.dirtyCount++;
  }

  private evict(keep: Buf): void {
    let buf = this.tail;
    while (buf !== null && this.index.size > this.maxBlocks) {
      const prev = buf.prev;
      if (buf === keep || (this.tx !== null && this.tx.has(buf))) {
        buf = prev;
        continue;
      }
      if (buf.dirty && this.writeBackOnEvict) this.writeBack(buf);
      if (!buf.dirty) {
        this.remove(buf);
        this.counters.evictions++;
      }
      buf = prev;
    }
    if (this.index.size > this.maxBlocks * 2 && this.dirtyCount > this.maxBlocks) {
      log('%s: %d dirty blocks exceed the cache bound of %d', this.target.name, this.dirtyCount, this.maxBlocks);
    }
  }

  private remove(buf: Buf): void {
    this.index.delete(buf.bno);
    buf.cached = false;
    if (buf.dirty) {
      buf.dirty = false;
      this.dirtyCount--;
    }
    this.unlink(buf);
  }

  private touch(buf: Buf): void {
    if (this.head === buf) return;
    this.unlink(buf);
    this.linkHead(buf);
  }

  private linkHead(buf: Buf): void {
    buf.prev = null;
    buf.next = this.head;
    if (this.head !== null) this.head.prev = buf;
    this.head = buf;
    if (this.tail === null) this.tail = buf;
  }

  private unlink(buf: Buf): void {
    if (buf.prev !== null) buf.prev.next = buf.next;
    else if (this.head === buf) this.head = buf.next;
    if (buf.next !== null) buf.next.prev = buf.prev;
    else if (this.tail === buf) this.tail = buf.prev;
    buf.prev = buf.next = null;
  }
}
