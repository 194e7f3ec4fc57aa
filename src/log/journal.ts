/**
 * The write-ahead journal: physical block logging with group commit.
 *
 * The log is a region of the target, blocks [start, start + size). Region
 * block 0 is the log superblock (geometry and the tail: where replay starts);
 * the other size - 1 blocks are a circular area of transactions, each one
 *
 *   header block(s) | n block images | commit block
 *
 * at consecutive circular positions. A transaction is durable once its
 * commit block (which carries a crc over its headers and images) is on disk;
 * replay applies, from the tail, every complete transaction whose lsn follows
 * the previous one, and stops at the first that is missing, torn or stale.
 * The journal knows nothing about the buffer cache: the caller hands it
 * block images to commit, writes them in place itself (checkpoint) and then
 * moves the tail. docs/log-format.md has the byte layout and the rules.
 */
import createDebug from 'debug';
import { RmapfsError, corruption } from '../errors';
import type { BufTarget } from '../io/buf-target';
import { native } from '../native';
import {
  MAX_LOG_BLOCKS, MIN_LOG_BLOCKS, OFF_HD_COUNT, OFF_HD_NIMAGES, UUID_SIZE, bnosPerHeader, commitProblem,
  decodeLogSuper, encodeCommit, encodeHeader, encodeLogSuper, headerBnos, headerProblem, headersFor,
} from './log-format';

const log = createDebug('rmapfs:log');

export interface LoggedBlock {
  bno: number;
  /** The block's current image; data.length === blockSize. */
  data: Buffer;
}

export interface ReplayResult {
  transactions: number;
  blocks: number;
  /** lsn of the first replayed transaction (0 if none). */
  firstLsn: number;
  /** lsn of the last replayed transaction (0 if none). */
  lastLsn: number;
}

/** One transaction between the tail and the head, for moving the tail past it. */
interface LiveTransaction {
  lsn: number;
  pos: number;
  len: number;
}

export class Journal {
  private readonly blockSize: number;
  /** Circular blocks: size - 1. */
  private readonly circular: number;
  private tail: { lsn: number; pos: number };
  private head: { lsn: number; pos: number };
  /** Circular blocks held by the transactions between tail and head. */
  private used = 0;
  /** Those transactions, oldest first (the tail can move only to their ends). */
  private live: LiveTransaction[] = [];
  private replayed = false;
  /** Set by an I/O error in commit/advanceTail: the journal refuses to go on. */
  private shutDown: string | null = null;
  /** Reused assembly buffer for commits. */
  private scratch: Buffer = Buffer.alloc(0);

  private constructor(private readonly target: BufTarget, readonly start: number, readonly size: number,
    private readonly uuid: Buffer, tailLsn: number, tailPos: number) {
    this.blockSize = target.blockSize;
    this.circular = size - 1;
    this.tail = { lsn: tailLsn, pos: tailPos };
    this.head = { lsn: tailLsn - 1, pos: tailPos };
  }

  /** mkfs: writes a fresh log superblock (tail = lsn 1, pos 0) and zeroes the first circular block. */
  static format(target: BufTarget, start: number, size: number, uuid: Buffer): void {
    const problem = geometryProblem(target, start, size, uuid);
    if (problem !== null) throw new RmapfsError('EINVAL', `${target.name}: cannot format the log: ${problem}`);
    const bs = target.blockSize;
    const b = Buffer.alloc(2 * bs);
    encodeLogSuper(b.subarray(0, bs), { blockSize: bs, start, size, tailLsn: 1, tailPos: 0, uuid });
    target.writeBlocks(start, 2, b, 0);
    target.flush();
    log('%s: formatted the log at %d+%d', target.name, start, size);
  }

  /** Opens the log: reads and verifies the log superblock (EFSCORRUPTED when it is not ours). Does not replay. */
  static open(target: BufTarget, start: number, size: number, uuid: Buffer): Journal {
    const problem = geometryProblem(target, start, size, uuid);
    if (problem !== null) throw corruption(`${target.name}: bad log geometry: ${problem}`);
    const b = Buffer.alloc(target.blockSize);
    target.readBlocks(start, 1, b, 0);
    const sb = decodeLogSuper(b, { blockSize: target.blockSize, start, size, uuid });
    if (typeof sb === 'string') throw corruption(`${target.name}: log superblock at block ${start}: ${sb}`);
    log('%s: opened the log at %d+%d, tail lsn %d at %d', target.name, start, size, sb.tailLsn, sb.tailPos);
    return new Journal(target, start, size, Buffer.from(uuid), sb.tailLsn, sb.tailPos);
  }

  /** lsn of the last committed transaction (0 if none since format). */
  get headLsn(): number {
    return this.head.lsn;
  }

  /** Oldest lsn replay would still consider. */
  get tailLsn(): number {
    return this.tail.lsn;
  }

  /** Blocks a commit of n images needs (headers + images + commit). */
  blocksNeeded(n: number): number {
    return headersFor(n, this.blockSize) + n + 1;
  }

  /** Free circular blocks now. */
  freeBlocks(): number {
    return this.circular - this.used;
  }

  /** Largest transaction (in images) that can ever fit. */
  maxImages(): number {
    const per = bnosPerHeader(this.blockSize);
    // Each header block carries up to `per` images; one commit block closes the lot.
    let n = this.circular - 1 - Math.ceil((this.circular - 1) / (per + 1));
    while (this.blocksNeeded(n + 1) <= this.circular) n++;
    while (n > 0 && this.blocksNeeded(n) > this.circular) n--;
    return n;
  }

  /**
   * Mount-time recovery: calls apply(bno, image) for every block of every
   * committed transaction from the tail, in log order, and puts the head after
   * the last good one. The images are fresh buffers the journal never reuses.
   */
  replay(apply: (bno: number, image: Buffer) => void): ReplayResult {
    this.checkUsable('replay');
    if (this.replayed) throw new RmapfsError('EINVAL', `${this.target.name}: the log was already replayed`);
    const bs = this.blockSize;
    const result: ReplayResult = { transactions: 0, blocks: 0, firstLsn: 0, lastLsn: 0 };
    const first = Buffer.alloc(bs);
    let lsn = this.tail.lsn;
    let pos = this.tail.pos;
    let used = 0;
    const live: LiveTransaction[] = [];
    let stop: string;
    for (;;) {
      if (this.circular - used < this.blocksNeeded(1)) {
        stop = 'the circular area is full';
        break;
      }
      this.target.readBlocks(this.blockAt(pos), 1, first, 0);
      const hp = headerProblem(first, { blkno: this.blockAt(pos), lsn, uuid: this.uuid, index: 0, count: null, nImages: null });
      if (hp !== null) {
        stop = hp;
        break;
      }
      const n = first.readUInt32BE(OFF_HD_NIMAGES);
      const headers = first.readUInt32BE(OFF_HD_COUNT);
      const len = headers + n + 1;
      if (len > this.circular - used) {
        stop = `a transaction of ${len} blocks would overrun the tail`;
        break;
      }
      const tx = Buffer.allocUnsafe(len * bs);
      first.copy(tx, 0);
      this.readCircular((pos + 1) % this.circular, len - 1, tx, bs);
      const bnos: number[] = [];
      headerBnos(first, bnos);
      let problem: string | null = null;
      for (let h = 1; h < headers && problem === null; h++) {
        const hb = tx.subarray(h * bs, (h + 1) * bs);
        problem = headerProblem(hb,
          { blkno: this.blockAt(pos + h), lsn, uuid: this.uuid, index: h, count: headers, nImages: n });
        if (problem === null) headerBnos(hb, bnos);
      }
      if (problem === null) {
        const bodyCrc = native.crc32c(tx, 0, (headers + n) * bs, 0);
        problem = commitProblem(tx.subarray((len - 1) * bs), this.blockAt(pos + len - 1), lsn, n, headers, bodyCrc,
          this.uuid);
      }
      if (problem === null) problem = this.bnosProblem(bnos);
      if (problem !== null) {
        stop = problem;
        break;
      }
      for (let i = 0; i < n; i++) apply(bnos[i], tx.subarray((headers + i) * bs, (headers + i + 1) * bs));
      live.push({ lsn, pos, len });
      if (result.transactions === 0) result.firstLsn = lsn;
      result.lastLsn = lsn;
      result.transactions++;
      result.blocks += n;
      used += len;
      pos = (pos + len) % this.circular;
      lsn++;
    }
    this.live = live;
    this.used = used;
    this.head = { lsn: lsn - 1, pos };
    this.replayed = true;
    log('%s: replayed %d transactions (%d blocks) from lsn %d; stopped at lsn %d, position %d: %s',
      this.target.name, result.transactions, result.blocks, this.tail.lsn, lsn, pos, stop);
    return result;
  }

  /**
   * Writes one transaction and makes it durable before returning its lsn.
   * Zero blocks: a no-op returning the last lsn. A bno given twice: the later
   * image is logged. ENOSPC when it does not fit in the free circular space.
   */
  commit(blocks: LoggedBlock[]): number {
    this.checkUsable('commit');
    if (!this.replayed) throw new RmapfsError('EINVAL', `${this.target.name}: log commit before replay`);
    if (blocks.length === 0) return this.head.lsn;
    const bs = this.blockSize;
    const images = new Map<number, Buffer>();
    for (const b of blocks) {
      if (b.data.length !== bs) {
        throw new RmapfsError('EINVAL', `${this.target.name}: log image of block ${b.bno} is ${b.data.length} bytes, not ${bs}`);
      }
      images.set(b.bno, b.data);
    }
    const bnos = [...images.keys()];
    const bad = this.bnosProblem(bnos);
    if (bad !== null) throw new RmapfsError('EINVAL', `${this.target.name}: cannot log ${bad}`);
    const n = bnos.length;
    const len = this.blocksNeeded(n);
    if (len > this.freeBlocks()) {
      throw new RmapfsError('ENOSPC', `${this.target.name}: log full: ${n} blocks need ${len} log blocks, `
        + `${this.freeBlocks()} of ${this.circular} free`);
    }
    const lsn = this.head.lsn + 1;
    const pos = this.head.pos;
    const headers = headersFor(n, bs);
    const buf = this.scratchFor(len);
    buf.fill(0, 0, headers * bs);
    for (let h = 0; h < headers; h++) {
      encodeHeader(buf.subarray(h * bs, (h + 1) * bs), this.blockAt(pos + h), lsn, h, headers, bnos, this.uuid);
    }
    let off = headers * bs;
    for (const data of images.values()) {
      data.copy(buf, off);
      off += bs;
    }
    const bodyCrc = native.crc32c(buf, 0, off, 0);
    const commitBlock = buf.subarray(off, off + bs);
    commitBlock.fill(0);
    encodeCommit(commitBlock, this.blockAt(pos + len - 1), lsn, n, headers, bodyCrc, this.uuid);
    this.guarded('commit', () => {
      this.writeCircular(pos, len, buf);
      this.target.flush();
    });
    this.head = { lsn, pos: (pos + len) % this.circular };
    this.used += len;
    this.live.push({ lsn, pos, len });
    log('%s: committed lsn %d: %d blocks at position %d+%d, %d free', this.target.name, lsn, n, pos, len,
      this.freeBlocks());
    return lsn;
  }

  /**
   * Everything with lsn <= `lsn` is in place and flushed: moves the tail past
   * it and persists the log superblock (then flushes). advanceTail(headLsn)
   * after a full checkpoint empties the log.
   */
  advanceTail(lsn: number): void {
    this.checkUsable('advanceTail');
    if (!this.replayed) throw new RmapfsError('EINVAL', `${this.target.name}: log tail moved before replay`);
    if (!Number.isSafeInteger(lsn) || lsn > this.head.lsn) {
      throw new RmapfsError('EINVAL', `${this.target.name}: cannot move the log tail past lsn ${lsn} (head is ${this.head.lsn})`);
    }
    if (lsn < this.tail.lsn) return;
    let drop = 0;
    let freed = 0;
    let pos = this.tail.pos;
    while (drop < this.live.length && this.live[drop].lsn <= lsn) {
      const tx = this.live[drop++];
      freed += tx.len;
      pos = (tx.pos + tx.len) % this.circular;
    }
    const b = Buffer.alloc(this.blockSize);
    encodeLogSuper(b, {
      blockSize: this.blockSize, start: this.start, size: this.size, tailLsn: lsn + 1, tailPos: pos, uuid: this.uuid,
    });
    this.guarded('advanceTail', () => {
      this.target.writeBlocks(this.start, 1, b, 0);
      this.target.flush();
    });
    this.live.splice(0, drop);
    this.used -= freed;
    this.tail = { lsn: lsn + 1, pos };
    log('%s: log tail at lsn %d, position %d; %d free', this.target.name, lsn + 1, pos, this.freeBlocks());
  }

  /** Absolute block number of circular position pos (taken modulo the circular size). */
  private blockAt(pos: number): number {
    return this.start + 1 + (pos % this.circular);
  }

  /** Why these bnos cannot be logged (null when they can). */
  private bnosProblem(bnos: readonly number[]): string | null {
    for (const bno of bnos) {
      if (!Number.isSafeInteger(bno) || bno < 0) return `block number ${bno}`;
      if (bno >= this.start && bno < this.start + this.size) return `block ${bno}: it is inside the log`;
    }
    return null;
  }

  /** Writes len blocks from buf at circular position pos: one call, or two when it wraps. */
  private writeCircular(pos: number, len: number, buf: Buffer): void {
    const firstRun = Math.min(len, this.circular - pos);
    this.target.writeBlocks(this.blockAt(pos), firstRun, buf, 0);
    if (firstRun < len) this.target.writeBlocks(this.blockAt(0), len - firstRun, buf, firstRun * this.blockSize);
  }

  private readCircular(pos: number, len: number, dst: Buffer, dstOffset: number): void {
    if (len === 0) return;
    const firstRun = Math.min(len, this.circular - pos);
    this.target.readBlocks(this.blockAt(pos), firstRun, dst, dstOffset);
    if (firstRun < len) {
      this.target.readBlocks(this.blockAt(0), len - firstRun, dst, dstOffset + firstRun * this.blockSize);
    }
  }

  private scratchFor(blocks: number): Buffer {
    const bytes = blocks * this.blockSize;
    if (this.scratch.length < bytes) this.scratch = Buffer.allocUnsafe(Math.max(bytes, 16 * this.blockSize));
    return this.scratch;
  }

  /**
   * Runs a write+flush. An I/O error shuts the journal down: after a failed
   * write or fdatasync nothing says what reached the disk, so no later commit
   * may pretend to follow it.
   */
  private guarded(what: string, io: () => void): void {
    try {
      io();
    } catch (e) {
      this.shutDown = `${what} failed: ${e instanceof Error ? e.message : String(e)}`;
      log('%s: log shut down: %s', this.target.name, this.shutDown);
      throw e;
    }
  }

  private checkUsable(what: string): void {
    if (this.shutDown !== null) {
      throw new RmapfsError('EIO', `${this.target.name}: log ${what} refused: the log is shut down after an earlier ${this.shutDown}`);
    }
  }
}

/** Why (target, start, size, uuid) cannot be a log (null when it can). */
function geometryProblem(target: BufTarget, start: number, size: number, uuid: Buffer): string | null {
  if (uuid.length !== UUID_SIZE) return `uuid of ${uuid.length} bytes, want ${UUID_SIZE}`;
  if (!Number.isSafeInteger(start) || start < 0) return `log start ${start}`;
  if (!Number.isSafeInteger(size) || size < MIN_LOG_BLOCKS || size > MAX_LOG_BLOCKS) {
    return `log of ${size} blocks (${MIN_LOG_BLOCKS} to ${MAX_LOG_BLOCKS})`;
  }
  if (target.blockSize < 512 || target.blockSize % 8 !== 0) return `block size ${target.blockSize}`;
  return null;
}
