/**
 * Inodes: allocation in chunks of 64 indexed by each AG's inode btree, and
 * access to one inode's fields. An `Inode` is a handle (inode number and
 * where it lives), not a copy: every read and write goes to the inode's
 * block in the buffer cache, so a transaction abort restores inodes too.
 */
import createDebug from 'debug';
import * as crypto from 'crypto';
import { RmapfsError, corruption } from '../errors';
import type { Buf, BufCache, BufOps } from '../io/buf-cache';
import { readI64, readU64, u64Text, writeI64, writeU64 } from '../io/meta-header';
import { native } from '../native';
import type { Allocator } from '../alloc/alloc';
import type { AllocGroup } from '../alloc/ag';
import type { AgStructure, InodeStructure } from '../alloc/health';
import { CHUNK_BLOCKS, INODE_SIZE, INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';
import { OWN_INODES } from '../format/owners';
import { INODES_PER_CHUNK, decodeInobt, encodeInobt, isInodeFree, setInodeFree } from '../alloc/inode-btree';
import type { InobtRecord } from '../alloc/inode-btree';
import {
  ATTR_FORK_OFFSET, DATA_FORK_OFFSET, OFF_I_AFORMAT, OFF_I_ALOCAL, OFF_I_AHEIGHT, OFF_I_AROOT, OFF_I_DHEIGHT,
  OFF_I_DROOT, OFF_I_FLAGS, OFF_I_FORMAT, OFF_I_GEN, OFF_I_GID, OFF_I_MODE, OFF_I_NBLOCKS, OFF_I_NEXTENTS,
  OFF_I_NLINK, OFF_I_NSEC, OFF_I_RDEV, OFF_I_ACOUNT, OFF_I_SIZE, OFF_I_TIMES, OFF_I_UID, S_IFDIR, S_IFMT, formatFreeInode,
  inodeBlockBufOps, inodeDamage,
} from './inode-format';
import type { InodeDamage, Timespec } from './inode-format';

const log = createDebug('rmapfs:inode');

export type TimeField = 'atime' | 'mtime' | 'ctime' | 'crtime';
const TIME_INDEX: Record<TimeField, number> = { atime: 0, mtime: 1, ctime: 2, crtime: 3 };

/** Wall-clock nanoseconds minus the monotonic clock's, set at the first reading and when the wall clock is stepped. */
let wallMinusMonoNs: bigint | null = null;
const CLOCK_RESYNC_NS = 2000000n;

/**
 * The time now, to the nanosecond, never going backwards while the wall
 * clock is not stepped: the monotonic clock (hrtime) placed on the wall
 * clock. Date.now()'s milliseconds with hrtime's sub-millisecond digits
 * pasted in (as this was once) go backwards within a millisecond about
 * half the time: a file's mtime could come out before its creation time,
 * and relatime then saw an atime after mtime and ctime.
 */
export function now(): Timespec {
  const mono = process.hrtime.bigint();
  const wall = BigInt(Date.now()) * 1000000n;
  const drift = wallMinusMonoNs === null ? 0n : wallMinusMonoNs + mono - wall;
  if (wallMinusMonoNs === null || drift > CLOCK_RESYNC_NS || drift < -CLOCK_RESYNC_NS) wallMinusMonoNs = wall - mono;
  const ns = wallMinusMonoNs + mono;
  return { sec: Number(ns / 1000000000n), nsec: Number(ns % 1000000000n) };
}

/**
 * The time now as the kernel stamps files (CLOCK_REALTIME_COARSE: up to a
 * tick behind now()). For the times the kernel will compare with its own:
 * a new inode's (the writeback cache then sends the kernel's mtime for its
 * first write, which must not come out before the atime set here, or
 * relatime would see a file never read) and an atime update.
 */
export function kernelNow(): Timespec {
  const [sec, nsec] = native.clockCoarse();
  return { sec, nsec };
}

export class Inode {
  constructor(readonly store: InodeStore, readonly ino: number, readonly fsbno: number, readonly offset: number) {}

  /** The inode's block (through the cache; re-read on every access, so never stale). */
  block(): Buf {
    return this.store.blockOf(this.ino, this.fsbno);
  }

  private u32(off: number): number {
    return this.block().data.readUInt32BE(this.offset + off);
  }

  private setU32(off: number, v: number): void {
    const buf = this.block();
    buf.data.writeUInt32BE(v >>> 0, this.offset + off);
    this.store.cache.markDirty(buf);
  }

  get mode(): number { return this.block().data.readUInt16BE(this.offset + OFF_I_MODE); }
  set mode(v: number) {
    const buf = this.block();
    buf.data.writeUInt16BE(v & 0xffff, this.offset + OFF_I_MODE);
    this.store.cache.markDirty(buf);
  }

  get type(): number { return this.mode & S_IFMT; }
  get isDir(): boolean { return this.type === S_IFDIR; }
  get format(): number { return this.block().data.readUInt8(this.offset + OFF_I_FORMAT); }
  set format(v: number) {
    const buf = this.block();
    buf.data.writeUInt8(v, this.offset + OFF_I_FORMAT);
    this.store.cache.markDirty(buf);
  }

  get nlink(): number { return this.u32(OFF_I_NLINK); }
  set nlink(v: number) { this.setU32(OFF_I_NLINK, v); }
  get uid(): number { return this.u32(OFF_I_UID); }
  set uid(v: number) { this.setU32(OFF_I_UID, v); }
  get gid(): number { return this.u32(OFF_I_GID); }
  set gid(v: number) { this.setU32(OFF_I_GID, v); }
  get flags(): number { return this.u32(OFF_I_FLAGS); }
  set flags(v: number) { this.setU32(OFF_I_FLAGS, v); }
  get rdev(): number { return this.u32(OFF_I_RDEV); }
  set rdev(v: number) { this.setU32(OFF_I_RDEV, v); }
  get generation(): number { return this.u32(OFF_I_GEN); }
  get nextents(): number { return this.u32(OFF_I_NEXTENTS); }
  set nextents(v: number) { this.setU32(OFF_I_NEXTENTS, v); }
  get dataRoot(): number { return this.u32(OFF_I_DROOT); }
  set dataRoot(v: number) { this.setU32(OFF_I_DROOT, v); }
  get dataHeight(): number { return this.u32(OFF_I_DHEIGHT); }
  set dataHeight(v: number) { this.setU32(OFF_I_DHEIGHT, v); }
  get attrFormat(): number { return this.block().data.readUInt8(this.offset + OFF_I_AFORMAT); }
  set attrFormat(v: number) {
    const buf = this.block();
    buf.data.writeUInt8(v, this.offset + OFF_I_AFORMAT);
    this.store.cache.markDirty(buf);
  }
  get attrLocalBytes(): number { return this.block().data.readUInt16BE(this.offset + OFF_I_ALOCAL); }
  set attrLocalBytes(v: number) {
    const buf = this.block();
    buf.data.writeUInt16BE(v, this.offset + OFF_I_ALOCAL);
    this.store.cache.markDirty(buf);
  }
  get attrRoot(): number { return this.u32(OFF_I_AROOT); }
  set attrRoot(v: number) { this.setU32(OFF_I_AROOT, v); }
  get attrHeight(): number { return this.u32(OFF_I_AHEIGHT); }
  set attrHeight(v: number) { this.setU32(OFF_I_AHEIGHT, v); }
  /** Records in the attr btree (kept like nextents for the data fork, so a lost record is noticed). */
  get attrCount(): number { return this.u32(OFF_I_ACOUNT); }
  set attrCount(v: number) { this.setU32(OFF_I_ACOUNT, v); }

  get size(): number { return readU64(this.block().data, this.offset + OFF_I_SIZE); }
  /** The size as the exact decimal of its 64 bits (`size` is a JS number, inexact past 2^53): for reports. */
  get sizeText(): string { return u64Text(this.block().data, this.offset + OFF_I_SIZE); }
  set size(v: number) {
    const buf = this.block();
    writeU64(buf.data, this.offset + OFF_I_SIZE, v);
    this.store.cache.markDirty(buf);
  }

  get nblocks(): number { return readU64(this.block().data, this.offset + OFF_I_NBLOCKS); }
  set nblocks(v: number) {
    const buf = this.block();
    writeU64(buf.data, this.offset + OFF_I_NBLOCKS, v);
    this.store.cache.markDirty(buf);
  }

  getTime(which: TimeField): Timespec {
    const b = this.block().data;
    const i = TIME_INDEX[which];
    return { sec: readI64(b, this.offset + OFF_I_TIMES + 8 * i), nsec: b.readUInt32BE(this.offset + OFF_I_NSEC + 4 * i) };
  }

  setTime(which: TimeField, t: Timespec): void {
    const buf = this.block();
    const i = TIME_INDEX[which];
    // Signed seconds: times before 1970 are kept as they are, like every Linux filesystem does.
    writeI64(buf.data, this.offset + OFF_I_TIMES + 8 * i, t.sec);
    buf.data.writeUInt32BE(t.nsec >>> 0, this.offset + OFF_I_NSEC + 4 * i);
    this.store.cache.markDirty(buf);
  }

  /** Sets the named times to now (one clock reading for all). */
  touch(...which: TimeField[]): void {
    this.stamp(now(), ...which);
  }

  /** Sets the named times to t. */
  stamp(t: Timespec, ...which: TimeField[]): void {
    for (const w of which) this.setTime(w, t);
  }

  /** The data fork's bytes (extents, or local data), as a view of the cached block. */
  dataFork(): { buf: Buf; offset: number } {
    return { buf: this.block(), offset: this.offset + DATA_FORK_OFFSET };
  }

  attrFork(): { buf: Buf; offset: number } {
    return { buf: this.block(), offset: this.offset + ATTR_FORK_OFFSET };
  }
}

/** What every inode allocation or free in an AG reads and changes. */
const INODE_STRUCTURES: readonly AgStructure[] = ['agh', 'inobt'];

/** A cross-check of the inode btree failed: it is marked sick (see alloc/health.ts). */
function inobtDamaged(ag: AllocGroup, message: string): RmapfsError {
  ag.markSick('inobt', message);
  return corruption(message);
}

export class InodeStore {
  readonly blockOps: BufOps;
  /** Per AG: a chunk that had free inodes (a hint only; the inobt is the truth). */
  private readonly freeHint = new Map<number, number>();
  private rotor = 0;

  constructor(readonly cache: BufCache, readonly geo: Geometry, readonly alloc: Allocator) {
    this.blockOps = inodeBlockBufOps(geo);
  }

  /**
   * The block of inode ino (at fsbno). A miss reads the inode's whole chunk in
   * one go, as XFS reads an inode cluster: scans go through a chunk's inodes
   * in order, and one read of eight blocks costs about what one of one does.
   */
  blockOf(ino: number, fsbno: number): Buf {
    const first = fsbno - Math.floor((this.geo.inoAgino(ino) % INODES_PER_CHUNK) / INODES_PER_BLOCK);
    return this.cache.readInRun(fsbno, this.blockOps, first, Math.min(CHUNK_BLOCKS, this.geo.totalBlocks - first));
  }

  /**
   * A handle on an inode in use, verified as XFS's iget verifies a dinode: a
   * damaged inode is EFSCORRUPTED / EFSBADCRC (its neighbours read on);
   * corruption too if the number is not one in use.
   */
  get(ino: number): Inode {
    if (!this.geo.isValidIno(ino)) throw new RmapfsError('EFSCORRUPTED', `inode number ${ino} is out of range`);
    const { fsbno, offset } = this.geo.inoLocation(ino);
    const inode = new Inode(this, ino, fsbno, offset);
    const damage = this.damage(inode);
    if (damage !== null) throw this.damaged(ino, 'inode', `inode ${ino} (block ${fsbno}): ${damage.what}`, damage.code);
    if (inode.mode === 0) throw new RmapfsError('EFSCORRUPTED', `inode ${ino} is free but still referenced`);
    return inode;
  }

  /**
   * Whether `ino` names an inode in use, by the inode btree alone (as XFS's
   * iget checks an untrusted number, e.g. from an NFS file handle): nothing
   * is read from where the number points, which may be a free inode, a
   * freed chunk now holding file data, or past the AG's end.
   */
  inUse(ino: number): boolean {
    if (!Number.isSafeInteger(ino) || ino < 0 || !this.geo.isValidIno(ino)) return false;
    const agino = this.geo.inoAgino(ino);
    const startino = agino - (agino % INODES_PER_CHUNK);
    const cur = this.alloc.ag(this.geo.inoAgno(ino)).ino.opCursor();
    const key = Buffer.alloc(4);
    key.writeUInt32BE(startino, 0);
    if (!cur.lookup(key, 0, 'eq')) return false;
    const { block, offset } = cur.recordAt();
    return !isInodeFree(decodeInobt(block, offset), agino - startino);
  }

  /**
   * The one place an inode's structure found damaged in use is marked sick
   * (alloc/health.ts, as XFS's xfs_inode_mark_sick): the core's verifier
   * (`get`), its fork btrees' (ForkBtreeStorage.noteCorruption), the block
   * map's, directory's and attributes' own checks. Returns the error to throw.
   */
  damaged(ino: number, structure: InodeStructure, message: string, code: 'EFSCORRUPTED' | 'EFSBADCRC' = 'EFSCORRUPTED'): RmapfsError {
    const health = this.alloc.inodeHealth;
    if (!health.isSick(ino, structure)) log('inode %d: %s is damaged (%s): %s', ino, structure, health.activity, message);
    health.markSick(ino, structure, 'verifier', message);
    return new RmapfsError(code, message);
  }

  /** What makes the inode unusable (inode-format.ts `inodeDamage`), or null. */
  damage(inode: Inode): InodeDamage | null {
    const buf = inode.block();
    const slot = inode.offset / INODE_SIZE;
    return inodeDamage(buf.data, inode.offset, inode.ino, this.geo.uuid, (buf.damagedParts & (1 << slot)) !== 0);
  }

  /** A handle without checking the inode is in use (for the scrubbers and db). */
  handle(ino: number): Inode {
    const { fsbno, offset } = this.geo.inoLocation(ino);
    return new Inode(this, ino, fsbno, offset);
  }

  /**
   * Allocates an inode near `nearIno` (same AG; new directories spread over
   * the AGs) and initialises it. Must run inside a transaction.
   */
  allocate(mode: number, uid: number, gid: number, nearIno: number | null): Inode {
    const spread = nearIno === null || (mode & S_IFMT) === S_IFDIR;
    const firstAg = spread ? this.rotor++ % this.geo.agCount : this.geo.inoAgno(nearIno);
    for (let i = 0; i < this.geo.agCount; i++) {
      const ag = this.alloc.ag((firstAg + i) % this.geo.agCount);
      // An AG whose inode btree or header is known damaged gets no new inodes (chunks also need its free space).
      if (ag.health.anySick(INODE_STRUCTURES)) continue;
      const agino = this.takeFreeInode(ag);
      if (agino === null) continue;
      const ino = this.geo.ino(ag.agno, agino);
      const inode = this.handle(ino);
      const buf = inode.block();
      const gen = buf.data.readUInt32BE(inode.offset + OFF_I_GEN);
      formatFreeInode(buf.data, inode.offset, ino, this.geo.uuid);
      buf.data.writeUInt32BE((gen + 1) >>> 0, inode.offset + OFF_I_GEN);
      // Written whole: a bad crc it had is gone with what it covered.
      buf.damagedParts &= ~(1 << (inode.offset / INODE_SIZE));
      this.cache.markDirty(buf);
      inode.mode = mode;
      inode.uid = uid;
      inode.gid = gid;
      inode.nlink = 0;
      inode.stamp(kernelNow(), 'atime', 'mtime', 'ctime', 'crtime');
      // A new file on this number: what was known of the old one's structures is not known of it.
      this.alloc.inodeHealth.forget(ino);
      log('allocated inode %d mode %o', ino, mode);
      return inode;
    }
    throw new RmapfsError('ENOSPC', 'no space for a new inode');
  }

  /** Releases an inode whose last link and last data are gone. */
  release(inode: Inode): void {
    const ag = this.alloc.ag(this.geo.inoAgno(inode.ino));
    if (ag.health.anySick(INODE_STRUCTURES)) {
      throw new RmapfsError('EFSCORRUPTED', `cannot free inode ${inode.ino}: the inode btree or header of AG ${ag.agno} is damaged`);
    }
    const agino = this.geo.inoAgino(inode.ino);
    const startino = agino - (agino % INODES_PER_CHUNK);
    const cur = ag.ino.cursor();
    const key = Buffer.alloc(4);
    key.writeUInt32BE(startino, 0);
    if (!cur.lookup(key, 0, 'eq')) throw inobtDamaged(ag, `inode ${inode.ino}: its chunk is not in the inode btree`);
    const rec = decodeInobt(cur.record(), 0);
    if (isInodeFree(rec, agino - startino)) throw inobtDamaged(ag, `inode ${inode.ino} is freed twice`);
    const buf = inode.block();
    const gen = buf.data.readUInt32BE(inode.offset + OFF_I_GEN);
    formatFreeInode(buf.data, inode.offset, inode.ino, this.geo.uuid);
    buf.data.writeUInt32BE(gen, inode.offset + OFF_I_GEN);
    buf.damagedParts &= ~(1 << (inode.offset / INODE_SIZE));
    this.cache.markDirty(buf);
    setInodeFree(rec, agino - startino, true);
    rec.freecount++;
    ag.adjustInodeCounts(0, 1);
    this.alloc.noteInodeUpdate({ op: 'free', agno: ag.agno, agino });
    if (rec.freecount === INODES_PER_CHUNK) {
      // The whole chunk is free: give its blocks back.
      cur.delete();
      ag.adjustInodeCounts(-INODES_PER_CHUNK, -INODES_PER_CHUNK);
      this.alloc.noteInodeUpdate({ op: 'chunk-free', agno: ag.agno, agino: startino });
      const chunkFsbno = this.geo.fsbno(ag.agno, startino / INODES_PER_BLOCK);
      for (let i = 0; i < CHUNK_BLOCKS; i++) this.cache.invalidate(chunkFsbno + i);
      this.alloc.free(chunkFsbno, CHUNK_BLOCKS, OWN_INODES);
      this.freeHint.delete(ag.agno);
    } else {
      this.updateRecord(cur, rec);
      this.freeHint.set(ag.agno, startino);
    }
  }

  /** Marks one free inode of the AG used (allocating a chunk if needed); its AG inode number, or null. */
  private takeFreeInode(ag: AllocGroup): number | null {
    let rec: InobtRecord | null = null;
    const cur = ag.ino.cursor();
    if (ag.freeInodes > 0) {
      const hint = this.freeHint.get(ag.agno);
      const key = Buffer.alloc(4);
      key.writeUInt32BE(hint ?? 0, 0);
      let ok = cur.lookup(key, 0, 'ge');
      for (let pass = 0; pass < 2 && rec === null; pass++) {
        for (; ok; ok = cur.increment()) {
          const r = decodeInobt(cur.record(), 0);
          if (r.freecount > 0) {
            rec = r;
            break;
          }
        }
        if (rec === null) ok = cur.first();
      }
      if (rec === null) throw inobtDamaged(ag, `AG ${ag.agno}: the header counts free inodes the inode btree does not have`);
    } else {
      rec = this.newChunk(ag);
      if (rec === null) return null;
      const key = Buffer.alloc(4);
      key.writeUInt32BE(rec.startino, 0);
      if (!cur.lookup(key, 0, 'eq')) throw inobtDamaged(ag, `AG ${ag.agno}: new inode chunk vanished`);
    }
    let slot = 0;
    while (slot < INODES_PER_CHUNK && !isInodeFree(rec, slot)) slot++;
    if (slot === INODES_PER_CHUNK) {
      throw inobtDamaged(ag, `AG ${ag.agno}: chunk ${rec.startino} counts ${rec.freecount} free inodes, its mask none`);
    }
    // The inode btree calls it free: its core must agree before it is handed out (as XFS's
    // xfs_dialloc_check_ino), or a damaged mask would give a new file an inode in use.
    const ino = this.geo.ino(ag.agno, rec.startino + slot);
    if (this.handle(ino).mode !== 0) throw inobtDamaged(ag, `inode ${ino} is in use, the inode btree says it is free`);
    setInodeFree(rec, slot, false);
    rec.freecount--;
    this.updateRecord(cur, rec);
    ag.adjustInodeCounts(0, -1);
    this.alloc.noteInodeUpdate({ op: 'use', agno: ag.agno, agino: rec.startino + slot });
    this.freeHint.set(ag.agno, rec.startino);
    return rec.startino + slot;
  }

  private updateRecord(cur: ReturnType<AllocGroup['ino']['cursor']>, rec: InobtRecord): void {
    const b = Buffer.alloc(16);
    encodeInobt(rec, b);
    cur.update(b);
  }

  /** Allocates and formats a chunk of 64 free inodes; null when the AG has no room. */
  private newChunk(ag: AllocGroup): InobtRecord | null {
    // No room, or its space metadata is known damaged: the caller tries another AG.
    if (this.alloc.spaceSick(ag) || ag.longestFree < CHUNK_BLOCKS) return null;
    let got;
    try {
      got = this.alloc.alloc({ owner: OWN_INODES, minLen: CHUNK_BLOCKS, maxLen: CHUNK_BLOCKS, agno: ag.agno, align: CHUNK_BLOCKS });
    } catch (e) {
      if (e instanceof RmapfsError && e.code === 'ENOSPC') return null;
      throw e;
    }
    const startino = got.agbno * INODES_PER_BLOCK;
    // A random first generation, as XFS gives a new chunk: these inode numbers may have been used
    // before (a chunk freed and allocated again), and counting from 0 again would hand a reused
    // number the generation its old file had -- an NFS handle of the old file would open the new one.
    const generation = crypto.randomBytes(4).readUInt32BE(0);
    for (let i = 0; i < CHUNK_BLOCKS; i++) {
      const buf = this.cache.get(got.fsbno + i, this.blockOps);
      for (let j = 0; j < INODES_PER_BLOCK; j++) {
        formatFreeInode(buf.data, j * INODE_SIZE, this.geo.ino(ag.agno, startino + i * INODES_PER_BLOCK + j), this.geo.uuid);
        buf.data.writeUInt32BE(generation, j * INODE_SIZE + OFF_I_GEN);
      }
      this.cache.markDirty(buf);
    }
    const rec: InobtRecord = { startino, freecount: INODES_PER_CHUNK, freeLo: 0xffffffff, freeHi: 0xffffffff };
    const b = Buffer.alloc(16);
    encodeInobt(rec, b);
    ag.ino.insert(b);
    ag.adjustInodeCounts(INODES_PER_CHUNK, INODES_PER_CHUNK);
    this.alloc.noteInodeUpdate({ op: 'chunk-alloc', agno: ag.agno, agino: startino });
    log('AG %d: new inode chunk at %d', ag.agno, startino);
    return rec;
  }
}
