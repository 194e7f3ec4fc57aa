/**
 * An open rmapfs: the device, its buffer cache, the journal, the AGs and
 * their allocator -- and the transaction discipline that ties them together.
 *
 * - `run(fn)` is one transaction: fn changes cached metadata blocks; if it
 *   throws, every block is put back as it was (nothing half-done survives);
 *   if it returns, its changes join the running log epoch and the rmap hooks
 *   hear of them.
 * - A log force (fsync, the commit interval, a filling log, unmount) writes
 *   the images of every block changed since the last force as one journal
 *   transaction: operations are atomic, and group-committed. File data is
 *   written in place and synced before the force that makes metadata point
 *   at it (ordered mode).
 * - A checkpoint writes logged blocks in place and moves the log tail.
 * - Mount replays the journal, so a crash loses at most the operations since
 *   the last force, never consistency.
 */
import createDebug from 'debug';
import { RmapfsError, isCorruption } from '../errors';
import { BufCache } from '../io/buf-cache';
import { Device } from '../io/device';
import type { DeviceInterposer } from '../io/device';
import { RecoveringTarget } from './recovering-target';
import { Allocator } from '../alloc/alloc';
import { Geometry } from '../format/geometry';
import {
  BLOCK_SIZE, STATE_CLEAN, STATE_DIRTY, decodeSuperblock, superblockBufOps, superblockMagicOk, superblockUuid,
} from '../format/superblock';
import type { Superblock } from '../format/superblock';
import { SUPERBLOCK_FIELDS } from '../format/superblock';
import { findField, writeField } from '../format/fields';
import { Journal } from '../log/journal';
import type { BufOps, CachedImage } from '../io/buf-cache';

const log = createDebug('rmapfs:fs');

export interface OpenOptions {
  readOnly?: boolean;
  /** Blocks of metadata the cache may hold (default 65536 = 256 MiB). */
  cacheBlocks?: number;
  /** Skip journal replay (db and check of a dirty log read the disk as it is). */
  noReplay?: boolean;
  /**
   * Hold the device's exclusive lock while open (default: when read-write).
   * `check` asks for it read-only too, so it never reads a filesystem a daemon is changing.
   */
  exclusive?: boolean;
  /** Test interposers put between the filesystem and its device before anything is read or written. */
  interposers?: readonly DeviceInterposer[];
  /**
   * Blocks a filesystem closed a moment ago held of this device (its cache's `cleanBlocks`): taken
   * unverified instead of read again, unless the log had to be replayed. What the offline repair's
   * closing check reads after the repair closed its filesystem.
   */
  warmBlocks?: readonly CachedImage[];
}

export interface ReplayInfo {
  transactions: number;
  blocks: number;
}

export class Filesystem {
  readonly path: string;
  readonly device: Device;
  readonly target: RecoveringTarget;
  readonly cache: BufCache;
  readonly geo: Geometry;
  readonly journal: Journal;
  readonly alloc: Allocator;
  readonly readOnly: boolean;
  readonly replayed: ReplayInfo;
  /** The superblock said "dirty" at open, or the journal had to be replayed: the last session did not end cleanly. */
  readonly wasUnclean: boolean;
  private readonly sbOps: BufOps;
  private dataDirty = false;
  /**
   * Most blocks one force may log: a third of what the log can hold, so a
   * force always fits once a checkpoint has made room for one.
   */
  private readonly maxTxImages: number;
  private closed = false;
  /** Remounted read-only (remountReadOnly): clean on disk, and nothing is written until remountReadWrite. */
  private remountedReadOnly = false;
  /** Why the filesystem stopped writing (a failed metadata write or flush), or null. */
  private shutdownReason: string | null = null;
  /** Told once when the filesystem shuts down (the daemon logs it). */
  onShutdown: ((why: string) => void) | null = null;

  private constructor(path: string, device: Device, options: OpenOptions) {
    this.path = path;
    this.device = device;
    this.readOnly = options.readOnly ?? false;
    this.target = new RecoveringTarget(device);
    const head = Buffer.alloc(BLOCK_SIZE);
    device.read(0, head, 0, BLOCK_SIZE);
    if (!superblockMagicOk(head)) throw new RmapfsError('EINVAL', `${path} is not an rmapfs filesystem (no superblock)`);
    const uuid = superblockUuid(head);
    this.sbOps = superblockBufOps(uuid);
    this.cache = new BufCache(this.target, { maxBlocks: options.cacheBlocks ?? 65536, trackLogging: true });
    const sb = decodeSuperblock(this.cache.read(0, this.sbOps).data);
    if (sb.totalBlocks * BLOCK_SIZE > device.size) {
      throw new RmapfsError('EFSCORRUPTED', `${path} is ${device.size} bytes, but its superblock says ${sb.totalBlocks} blocks`);
    }
    this.geo = new Geometry({ uuid, totalBlocks: sb.totalBlocks, agBlocks: sb.agBlocks, agCount: sb.agCount,
      logStart: sb.logStart, logBlocks: sb.logBlocks });
    this.journal = Journal.open(this.target, sb.logStart, sb.logBlocks, uuid);
    this.replayed = { transactions: 0, blocks: 0 };
    if (options.noReplay !== true) {
      // Recovery writes the logged images in place -- or, read-only, lays them over the device.
      const r = this.journal.replay((bno, image) => {
        if (this.readOnly) this.target.overlay(bno, image);
        else this.target.writeBlocks(bno, 1, image, 0);
      });
      this.replayed = { transactions: r.transactions, blocks: r.blocks };
      if (r.transactions > 0) {
        if (!this.readOnly) {
          this.device.sync();
          this.journal.advanceTail(this.journal.headLsn);
        }
        this.cache.discardAll();
        log('%s: replayed %d transactions (%d blocks)', path, r.transactions, r.blocks);
      }
    }
    if (options.warmBlocks !== undefined && this.replayed.transactions === 0) this.cache.adopt(options.warmBlocks);
    this.maxTxImages = Math.max(16, Math.floor(this.journal.maxImages() / 3));
    this.alloc = new Allocator(this.cache, this.geo);
    this.wasUnclean = sb.state !== STATE_CLEAN || this.replayed.transactions > 0;
  }

  static open(path: string, options: OpenOptions = {}): Filesystem {
    const device = new Device(path, { readOnly: options.readOnly });
    for (const i of options.interposers ?? []) device.interpose(i);
    try {
      if (options.exclusive ?? options.readOnly !== true) device.lock();
      const fs = new Filesystem(path, device, options);
      if (!fs.readOnly) fs.setState(STATE_DIRTY, true);
      return fs;
    } catch (e) {
      device.close();
      throw e;
    }
  }

  superblock(): Superblock {
    return decodeSuperblock(this.cache.read(0, this.sbOps).data);
  }

  get uuid(): Buffer {
    return this.geo.uuid;
  }

  private setState(state: number, countMount: boolean): void {
    this.run(() => {
      const buf = this.cache.read(0, this.sbOps);
      const b = buf.data;
      writeField(b, 0, findField(SUPERBLOCK_FIELDS, 'state', 'sb'), state);
      writeField(b, 0, findField(SUPERBLOCK_FIELDS, 'writtenSec', 'sb'), Math.floor(Date.now() / 1000));
      if (countMount) {
        const mc = findField(SUPERBLOCK_FIELDS, 'mountCount', 'sb');
        writeField(b, 0, mc, (b.readUInt32BE(mc.offset) + 1) >>> 0);
      }
      this.cache.markDirty(buf);
    });
    this.forceLog();
  }

  // ---- transactions ------------------------------------------------------------

  /**
   * Runs fn as one transaction: all of its metadata changes, or none. When it
   * fails for want of space while freed space waits to become reusable, the
   * log is checkpointed (which makes it reusable) and fn runs once more.
   * When it fails on damaged metadata that was not known to be damaged (a
   * verifier or cross-check failed, and the structure is now marked sick),
   * it runs again: the allocator now steps around that AG, so an operation
   * that only happened to land there succeeds elsewhere. Each such retry
   * needs a newly sick structure, so this ends.
   */
  run<T>(fn: () => T): T {
    if (this.cache.inTx) return this.runOnce(fn); // nested: the outermost run retries
    let checkpointed = false;
    for (;;) {
      const sickBefore = this.alloc.sickCount;
      try {
        return this.runOnce(fn);
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
        if (e.code === 'ENOSPC' && !checkpointed && this.alloc.busyCount() > 0) {
          this.checkpoint();
          checkpointed = true;
          continue;
        }
        if (isCorruption(e) && this.alloc.sickCount > sickBefore) {
          log('%s: %s; trying the operation again around the damaged structure', this.path, e.message);
          continue;
        }
        throw e;
      }
    }
  }

  private runOnce<T>(fn: () => T): T {
    this.checkWritable();
    if (this.cache.inTx) return fn(); // nested: part of the caller's transaction
    this.cache.beginTx();
    let result: T;
    try {
      result = fn();
      if (this.cache.unloggedCount > this.maxTxImages) {
        throw new RmapfsError('EFBIG', `an operation changing ${this.cache.unloggedCount} metadata blocks does not fit in the log`);
      }
    } catch (e) {
      this.cache.abortTx();
      this.alloc.dropUncommitted();
      throw e;
    }
    this.cache.commitTx();
    this.alloc.deliverCommitted();
    // Force before the next operation could push one force past what a journal transaction holds.
    if (this.cache.unloggedCount > this.maxTxImages * 0.8) this.forceLog();
    return result;
  }

  /** File data was written in place: the next force must sync it before logging metadata that points to it. */
  noteDataWritten(): void {
    this.dataDirty = true;
  }

  /**
   * Writes every metadata change since the last force to the journal as one
   * transaction (after syncing file data), making them durable.
   */
  forceLog(): void {
    // fsync on a read-only mount: everything is durable already (nothing can have changed).
    if (this.remountedReadOnly && this.shutdownReason === null && this.cache.unloggedCount === 0 && !this.dataDirty) return;
    this.checkWritable();
    this.guarded('log force', () => this.forceLogUnguarded());
  }

  private forceLogUnguarded(): void {
    if (this.cache.unloggedCount === 0) {
      if (this.dataDirty) this.syncData();
      return;
    }
    const started = process.hrtime.bigint();
    if (this.dataDirty) this.syncData();
    const blocks = this.cache.takeUnlogged();
    const lsn = this.journal.headLsn + 1;
    for (const buf of blocks) {
      if (buf.ops === null) continue;
      buf.ops.stampLsn?.(buf, lsn);
      buf.ops.prepareWrite(buf);
      buf.prepared = true; // the checkpoint writes this same image in place
    }
    this.journal.commit(blocks.map((b) => ({ bno: b.bno, data: b.data })));
    this.alloc.clearBusy(false);
    log('log force: %d blocks at lsn %d, %s ms', blocks.length, lsn, (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1));
    // Room for the largest next force, always: else write everything in place now.
    if (this.journal.freeBlocks() < this.journal.blocksNeeded(this.maxTxImages)) this.checkpointUnguarded();
  }

  /**
   * Forces the log, writes every logged block in place, syncs, and moves the
   * log tail up to the head: the journal is then empty.
   */
  checkpoint(): void {
    this.checkWritable();
    this.guarded('checkpoint', () => this.checkpointUnguarded());
  }

  private checkpointUnguarded(): void {
    const started = process.hrtime.bigint();
    this.forceLogUnguarded();
    const written = this.cache.flush();
    this.journal.advanceTail(this.journal.headLsn);
    this.alloc.clearBusy(true);
    log('checkpoint at lsn %d: %d blocks in place, %s ms', this.journal.headLsn, written, (Number(process.hrtime.bigint() - started) / 1e6).toFixed(1));
  }

  private syncData(): void {
    this.device.sync();
    this.dataDirty = false;
  }

  /**
   * Runs a step that writes metadata to the device. Should it fail (EIO from
   * the device, a failed flush), what is on disk is still consistent -- the
   * log holds every change it acknowledged, in-place writes are redone by
   * replay -- but what is in memory can no longer reach the disk in order:
   * the filesystem shuts down (every later change fails with EIO) rather than
   * risk writing anything inconsistent. The next mount replays the log.
   */
  private guarded(what: string, step: () => void): void {
    try {
      step();
    } catch (e) {
      const why = `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
      this.shutdown(why);
      throw new RmapfsError('EIO', `${this.path}: ${why}; the filesystem is shut down`);
    }
  }

  /** Stops all writing for good (see guarded). Idempotent. */
  shutdown(why: string): void {
    if (this.shutdownReason !== null) return;
    this.shutdownReason = why;
    log('%s: shut down: %s', this.path, why);
    this.onShutdown?.(why);
  }

  /** Why the filesystem shut down, or null while it works. */
  get shutdownWhy(): string | null {
    return this.shutdownReason;
  }

  /** Whether changes are refused with EROFS now: opened read-only, or remounted read-only since. */
  get readOnlyNow(): boolean {
    return this.readOnly || this.remountedReadOnly;
  }

  /**
   * remount,ro: makes everything durable and in place (the journal empty),
   * marks the filesystem clean, and refuses every change (EROFS) from then
   * on, as if it had been unmounted: the image is consistent as it stands.
   * `orphansLeft`: unlinked inodes still in use stay allocated; the
   * filesystem then stays marked dirty, so the next read-write mount frees them.
   */
  remountReadOnly(orphansLeft = false): void {
    if (this.readOnlyNow) return;
    this.setState(orphansLeft ? STATE_DIRTY : STATE_CLEAN, false);
    this.checkpoint();
    this.remountedReadOnly = true;
    log('%s: remounted read-only', this.path);
  }

  /** remount,rw after remountReadOnly. A filesystem opened read-only cannot: its device is open read-only. */
  remountReadWrite(): void {
    if (this.readOnly) {
      throw new RmapfsError('EROFS', `${this.path} was mounted read-only (its device is open read-only): unmount it and mount it rw`);
    }
    if (!this.remountedReadOnly) return;
    this.remountedReadOnly = false;
    this.setState(STATE_DIRTY, false);
    log('%s: remounted read-write', this.path);
  }

  /**
   * Checkpoints, marks the filesystem clean and closes the device (after a shutdown: closes, writing
   * nothing). keepDirty: leaves the superblock saying "dirty", so the next mount cleans up as after a
   * crash (orphans that could not be freed).
   */
  close(options: { keepDirty?: boolean } = {}): void {
    if (this.closed) return;
    try {
      if (!this.readOnlyNow && this.shutdownReason === null) {
        if (options.keepDirty !== true) this.setState(STATE_CLEAN, false);
        this.checkpoint();
      }
    } finally {
      this.device.close();
      this.closed = true;
      log('%s: closed', this.path);
    }
  }

  /** Closes without writing anything more: what a crash would leave (tests). */
  abandon(): void {
    if (this.closed) return;
    this.device.close();
    this.closed = true;
  }

  private checkWritable(): void {
    if (this.closed) throw new RmapfsError('EIO', `${this.path} is closed`);
    if (this.shutdownReason !== null) {
      throw new RmapfsError('EIO', `${this.path} is shut down after an I/O error (${this.shutdownReason}); unmount it and mount it again`);
    }
    if (this.readOnly) throw new RmapfsError('EROFS', `${this.path} is open read-only`);
    if (this.remountedReadOnly) throw new RmapfsError('EROFS', `${this.path} is remounted read-only`);
  }
}

