/**
 * The bulk loader: builds a btree bottom-up from a sorted stream of records
 * into blocks reserved beforehand, the way online repair builds a new btree.
 *
 * 1. `computeBulkLoadGeometry(tree, n, fill)` says exactly how many blocks a
 *    tree of n records takes at that fill factor, level by level, so a repair
 *    can reserve them all before it writes anything.
 * 2. `bulkLoad(tree, geometry, source, takeBlock)` fills leaves left to right
 *    with records from the source, and each level's blocks as the level
 *    below starts new blocks -- one pass, one block per level in hand. It
 *    returns the new root without installing it: committing it is the
 *    caller's (atomic) step.
 *
 * Records are spread evenly: every block of a level holds within one record
 * of the others, so no block falls under minrecs.
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { Buf } from '../io/buf-cache';
import type { Btree } from './btree';
import type { BtreeRootInfo } from './btree-ops';
import { NULL_PTR } from './btree-ops';
import { MAX_BTREE_HEIGHT, OFF_LEFTSIB, OFF_NUMRECS, OFF_RIGHTSIB, initHeader } from './btree-block';

const log = createDebug('rmapfs:bulkload');

export interface BulkLoadLevel {
  /** Entries at this level (records at level 0, child pointers above). */
  entries: number;
  blocks: number;
  /** Every block holds `perBlock` entries, the first `extra` blocks one more. */
  perBlock: number;
  extra: number;
}

export interface BulkLoadGeometry {
  records: number;
  fill: number;
  /** Index 0 is the leaf level. */
  levels: BulkLoadLevel[];
  height: number;
  totalBlocks: number;
}

/** Where the loader takes its records from, one at a time, in key order. */
export interface RecordSource {
  /** Writes the next record at dst[dstOff] (recSize bytes). Called exactly `records` times. */
  next(dst: Buffer, dstOff: number): void;
  /**
   * Optional, preferred when given: writes the next 1..max records from
   * dst[dstOff] on and says how many. A source whose records already sit in
   * the on-disk format copies them a run at a time (one memcpy, not a call
   * per record).
   */
  nextRun?(dst: Buffer, dstOff: number, max: number): number;
}

/**
 * Shape of a tree of `records` records with blocks filled to `fill` (0 < fill <= 1)
 * of their capacity (never below minrecs, never above maxrecs).
 */
export function computeBulkLoadGeometry(tree: Btree, records: number, fill = 1): BulkLoadGeometry {
  if (!(fill > 0 && fill <= 1)) throw new RmapfsError('EINVAL', `bulk load fill factor ${fill} is not in (0, 1]`);
  if (!Number.isInteger(records) || records < 0) throw new RmapfsError('EINVAL', `bad record count ${records}`);
  const { geo } = tree;
  const levels: BulkLoadLevel[] = [];
  let entries = records;
  for (let level = 0; ; level++) {
    const max = geo.maxRecs(level);
    const desired = Math.max(geo.minRecs(level), Math.min(max, Math.floor(max * fill)));
    let blocks = Math.max(1, Math.floor(entries / desired));
    while (Math.ceil(entries / blocks) > max) blocks++;
    levels.push({ entries, blocks, perBlock: Math.floor(entries / blocks), extra: entries % blocks });
    if (blocks === 1) break;
    if (level + 1 >= MAX_BTREE_HEIGHT) throw new RmapfsError('EFBIG', `${tree.ops.name}: too many records to bulk load`);
    entries = blocks;
  }
  const totalBlocks = levels.reduce((sum, l) => sum + l.blocks, 0);
  return { records, fill, levels, height: levels.length, totalBlocks };
}

interface LevelBuilder {
  /** Blocks started so far at this level. */
  started: number;
  ptr: number;
  buf: Buf | null;
  /** Entries the current block still takes. */
  room: number;
  /** Pointer reserved for the next block (so the current one can name its right sibling). */
  nextPtr: number;
}

/**
 * Where the loader builds blocks: in the tree's cache (the default: dirty
 * blocks of the caller's transaction), or -- `outside` -- in one private
 * buffer of geometry.totalBlocks blocks, handed back as Bufs (in the order
 * taken) for the caller to write in place itself: no cache traffic, one
 * allocation, for a repair's pause.
 */
export interface BulkLoadOptions {
  outside?: boolean;
  /**
   * With `outside`: the buffer to build in when it holds geometry.totalBlocks
   * blocks (memory the caller touched beforehand, so building takes no page
   * faults); else one is allocated.
   */
  arena?: Buffer;
}

export interface BulkLoadResult extends BtreeRootInfo {
  /** With `outside`: the blocks built, not in any cache, headers set, crc not yet computed. */
  blocks: Buf[];
}

/**
 * Loads `geometry.records` records from `source` into fresh blocks taken one
 * by one from `takeBlock` (exactly `geometry.totalBlocks` of them). Returns the
 * new root; the caller installs it (storage.setRoot) when it commits.
 */
export function bulkLoad(tree: Btree, geometry: BulkLoadGeometry, source: RecordSource,
  takeBlock: () => number, options: BulkLoadOptions = {}): BulkLoadResult {
  const steps = bulkLoadSteps(tree, geometry, source, takeBlock, options);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * bulkLoad in steps: pauses after each leaf it starts, so a repair can build
 * a big tree outside the cache in paced slices (its source must hold still:
 * dir-repair.ts's packed records).
 */
export function* bulkLoadSteps(tree: Btree, geometry: BulkLoadGeometry, source: RecordSource,
  takeBlock: () => number, options: BulkLoadOptions = {}): Generator<void, BulkLoadResult, void> {
  const { ops, geo, cache } = tree;
  const outside = options.outside === true;
  const built: Buf[] = [];
  const arenaBytes = geometry.totalBlocks * geo.blockSize;
  const given = options.arena;
  const arena = !outside ? null
    : given !== undefined && given.length >= arenaBytes ? given.subarray(0, arenaBytes).fill(0) : Buffer.alloc(arenaBytes);
  const newBlock = (ptr: number, level: number): Buf => {
    if (arena === null) return tree.formatBlock(ptr, level);
    const bno = tree.storage.bnoOf(ptr);
    const data = arena.subarray(built.length * geo.blockSize, (built.length + 1) * geo.blockSize);
    initHeader(data, ops.magic, level, bno, tree.storage.uuid, tree.storage.owner);
    const buf = new Buf(bno, data, tree.bufOps);
    built.push(buf);
    return buf;
  };
  let taken = 0;
  const take = (): number => {
    if (++taken > geometry.totalBlocks) {
      throw new RmapfsError('EFSCORRUPTED', `${ops.name}: bulk load needed more than the ${geometry.totalBlocks} blocks reserved`);
    }
    return takeBlock();
  };
  const builders: LevelBuilder[] = geometry.levels.map(() => ({
    started: 0, ptr: NULL_PTR, buf: null, room: 0, nextPtr: NULL_PTR,
  }));

  const finishBlock = (b: LevelBuilder): void => {
    if (b.buf !== null && !outside) cache.markDirty(b.buf);
  };

  /** Starts the next block of a level; returns its buffer. */
  const startBlock = (level: number): Buf => {
    const b = builders[level]!;
    const shape = geometry.levels[level]!;
    finishBlock(b);
    const prevPtr = b.ptr;
    b.ptr = b.started === 0 ? take() : b.nextPtr;
    b.nextPtr = b.started + 1 < shape.blocks ? take() : NULL_PTR;
    const buf = newBlock(b.ptr, level);
    buf.data.writeUInt32BE(prevPtr, OFF_LEFTSIB);
    buf.data.writeUInt32BE(b.nextPtr, OFF_RIGHTSIB);
    b.room = shape.perBlock + (b.started < shape.extra ? 1 : 0);
    b.started++;
    b.buf = buf;
    return buf;
  };

  /** Adds one child pointer (with its low key) to a node level. */
  const addPointer = (level: number, key: Buffer, ptr: number): void => {
    const b = builders[level]!;
    if (b.room === 0) startBlock(level);
    const buf = b.buf!;
    const d = buf.data;
    const n = d.readUInt16BE(OFF_NUMRECS);
    if (n === 0 && level + 1 < geometry.height) addPointer(level + 1, key, b.ptr);
    key.copy(d, geo.keyOffset(n), 0, ops.keySize);
    d.writeUInt32BE(ptr, geo.ptrOffset(n));
    d.writeUInt16BE(n + 1, OFF_NUMRECS);
    b.room--;
  };

  const leaf = builders[0]!;
  /** The previous record's key (types without compareRecs order records through it). */
  const leafKey = Buffer.alloc(ops.keySize);
  const lowKey = Buffer.alloc(ops.keySize);
  const compareRecs = ops.compareRecs;
  // The previous record, where it sits (its leaf's buffer stays valid while we hold it).
  let prev: Buffer | null = null;
  let prevOff = 0;
  const { recSize } = ops;
  if (geometry.records === 0) startBlock(0);
  for (let i = 0; i < geometry.records;) {
    if (leaf.room === 0) {
      if (i > 0) yield;
      startBlock(0);
    }
    const d = leaf.buf!.data;
    const n = d.readUInt16BE(OFF_NUMRECS);
    const max = Math.min(leaf.room, geometry.records - i);
    const got = source.nextRun !== undefined ? source.nextRun(d, geo.recOffset(n), max) : (source.next(d, geo.recOffset(n)), 1);
    if (!(Number.isInteger(got) && got >= 1 && got <= max)) {
      throw new RmapfsError('EINVAL', `${ops.name}: bulk load source gave ${got} records where 1 to ${max} were asked for`);
    }
    for (let k = 0, off = geo.recOffset(n); k < got; k++, off += recSize) {
      // Strictly increasing keys: from the two records when the type can, else through the previous key.
      const inOrder = i + k === 0 || (compareRecs !== undefined ? compareRecs(prev!, prevOff, d, off) < 0
        : ops.compareRecToKey(d, off, leafKey, 0) > 0);
      if (!inOrder) {
        throw new RmapfsError('EINVAL', `${ops.name}: bulk load records are not in strictly increasing key order (record ${i + k})`);
      }
      if (compareRecs === undefined) ops.keyFromRec(d, off, leafKey, 0);
      prev = d;
      prevOff = off;
    }
    // The leaf's low key (its first record's) goes up to its parent when the leaf gets its first records.
    if (n === 0 && geometry.height > 1) {
      ops.keyFromRec(d, geo.recOffset(0), lowKey, 0);
      addPointer(1, lowKey, leaf.ptr);
    }
    d.writeUInt16BE(n + got, OFF_NUMRECS);
    leaf.room -= got;
    i += got;
  }
  for (const b of builders) finishBlock(b);
  if (taken !== geometry.totalBlocks || builders.some((b, l) => b.started !== geometry.levels[l]!.blocks)) {
    throw new RmapfsError('EINVAL', `${ops.name}: bulk load used ${taken} of ${geometry.totalBlocks} blocks: the source gave the wrong number of records`);
  }
  const root = builders[geometry.height - 1]!.ptr;
  log('%s: loaded %d records into %d blocks, height %d', ops.name, geometry.records, taken, geometry.height);
  return { ptr: root, height: geometry.height, blocks: built };
}
