/**
 * The one generic btree engine. Every btree in rmapfs -- on the device or in
 * an xfile -- is an instance of `Btree`: a type (BtreeOps: record layout and
 * order) on a storage (BtreeStorage: target, pointers, allocation, root).
 *
 * Keys in a node are the lowest key of the subtree below each pointer.
 * Non-root blocks hold between minrecs and maxrecs entries; inserts split a
 * full block in two, deletes that leave a block under minrecs borrow an entry
 * from, or merge with, a sibling under the same parent. The root grows a new
 * level when it splits and loses one when it is a node with one child. An
 * empty tree is a root leaf with no records.
 *
 * Writers follow the buffer cache protocol: change a block, then mark it
 * dirty. All of one operation happens within one synchronous call, so no
 * other operation can observe a half-done split or merge.
 */
import createDebug from 'debug';
import { RmapfsError, corruption, isCorruption } from '../errors';
import type { Buf, BufCache, BufOps } from '../io/buf-cache';
import type { BtreeOps, BtreeStorage } from './btree-ops';
import { NULL_PTR } from './btree-ops';
import {
  BTREE_HDR_SIZE, BtreeGeometry, MAX_BTREE_HEIGHT, OFF_LEFTSIB, OFF_LEVEL, OFF_NUMRECS, OFF_RIGHTSIB,
  btreeBufOps, initHeader,
} from './btree-block';

const log = createDebug('rmapfs:btree');

export type LookupMode = 'eq' | 'le' | 'ge';

/** Called with a record in place (valid only during the call); return false to stop. */
export type RecordVisitor = (block: Buffer, recOffset: number) => boolean | void;

export class Btree {
  readonly ops: BtreeOps;
  readonly storage: BtreeStorage;
  readonly cache: BufCache;
  readonly geo: BtreeGeometry;
  readonly bufOps: BufOps;
  /**
   * One scratch key per level, so a split's key for level L+1 survives work at
   * L+2. Shared by all trees of a type (trees are built per operation, and an
   * operation on one tree never runs inside another of the same type).
   */
  private readonly keyScratch: Buffer[];
  /** The key a parent holds for the child being read (childOf, checkChildKey). */
  private readonly descentKey: Buffer;
  private cursorForSearch: BtreeCursor | null = null;
  private cursorForOps: BtreeCursor | null = null;

  constructor(ops: BtreeOps, storage: BtreeStorage) {
    this.ops = ops;
    this.storage = storage;
    this.cache = storage.cache;
    this.geo = new BtreeGeometry(ops, storage.cache.blockSize);
    this.bufOps = btreeBufOps(ops, this.geo, storage.uuid, storage.owner, storage.cache.target.checksummed);
    this.keyScratch = scratchKeysFor(ops);
    this.descentKey = this.keyScratch[MAX_BTREE_HEIGHT + 1]!;
  }

  private get searchCursor(): BtreeCursor {
    this.cursorForSearch ??= new BtreeCursor(this);
    return this.cursorForSearch;
  }

  /** Formats an empty tree (one root leaf) and records its root in the storage. */
  static create(ops: BtreeOps, storage: BtreeStorage, hint = 0): Btree {
    const tree = new Btree(ops, storage);
    const ptr = tree.newBlock(0, hint).ptr;
    storage.setRoot({ ptr, height: 1 });
    return tree;
  }

  get height(): number {
    return this.storage.getRoot().height;
  }

  cursor(): BtreeCursor {
    return new BtreeCursor(this);
  }

  /**
   * A cursor the tree keeps for short operations that position it and are
   * done with it before they change the tree (rmap map/unmap: look at the
   * neighbours, then insert/update/delete). Repositioned by every such
   * operation, so never hold it across a call that may use it too. Saves a
   * cursor per operation: the repair's scan makes a million of them.
   */
  opCursor(): BtreeCursor {
    this.cursorForOps ??= new BtreeCursor(this);
    return this.cursorForOps;
  }

  // ---- single-record conveniences -------------------------------------

  /** Inserts a record; a record with the same key already there is EEXIST. */
  insert(rec: Buffer, recOff = 0): void {
    const key = this.keyScratch[0]!;
    this.ops.keyFromRec(rec, recOff, key, 0);
    const cur = this.searchCursor;
    if (cur.descend(key, 0)) {
      throw new RmapfsError('EEXIST', `${this.ops.name} btree: a record with this key exists`);
    }
    this.insertAt(cur, 0, rec, recOff, NULL_PTR);
    cur.invalidate();
    this.storage.adjustRecords?.(1);
  }

  /**
   * Inserts a record where `cur` stands: the caller has found that its key
   * goes right there, before the record under the cursor, or past the last
   * one of the cursor's leaf (rmapMap: its look-up of the neighbours put the
   * cursor on the record after the new one) -- one descent fewer than insert.
   * Nothing checks the order: a wrong position corrupts the tree.
   */
  insertAtCursor(cur: BtreeCursor, rec: Buffer, recOff = 0): void {
    this.insertAt(cur, 0, rec, recOff, NULL_PTR);
    cur.invalidate();
    this.storage.adjustRecords?.(1);
  }

  /** Deletes the record with this key; false when there is none. */
  delete(key: Buffer, keyOff = 0): boolean {
    const cur = this.searchCursor;
    if (!cur.lookup(key, keyOff, 'eq')) return false;
    cur.delete();
    return true;
  }

  /** Copies the record with exactly this key into dst; false when there is none. */
  get(key: Buffer, dst: Buffer, dstOff = 0, keyOff = 0): boolean {
    const cur = this.searchCursor;
    if (!cur.lookup(key, keyOff, 'eq')) return false;
    cur.copyRecord(dst, dstOff);
    return true;
  }

  /**
   * Visits, in key order, every record whose key lies in [low, high]
   * (either bound null for open). The visitor must not change the tree.
   */
  query(low: Buffer | null, high: Buffer | null, visit: RecordVisitor): void {
    const cur = this.cursor();
    const ok = low === null ? cur.first() : cur.lookup(low, 0, 'ge');
    if (!ok) return;
    const { ops, geo } = this;
    let ptr = cur.ptrs[0]!;
    let i = cur.idx[0]!;
    for (;;) {
      const b = this.readBlock(ptr, 0).data;
      const n = b.readUInt16BE(OFF_NUMRECS);
      for (; i < n; i++) {
        const off = geo.recOffset(i);
        if (high !== null && ops.compareRecToKey(b, off, high, 0) > 0) return;
        if (visit(b, off) === false) return;
      }
      ptr = b.readUInt32BE(OFF_RIGHTSIB);
      if (ptr === NULL_PTR) return;
      i = 0;
    }
  }

  /** Visits every record in key order. */
  forEach(visit: RecordVisitor): void {
    this.query(null, null, visit);
  }

  /** Number of records (walks the leaves). */
  count(): number {
    let total = 0;
    this.visitBlocks((_ptr, level, block) => {
      if (level === 0) total += block.readUInt16BE(OFF_NUMRECS);
    });
    return total;
  }

  /**
   * Visits every block, level by level from the root, left to right along the
   * sibling pointers. Bounded by the storage's size, so a sibling loop in a
   * corrupt tree ends in an error rather than forever.
   */
  visitBlocks(visit: (ptr: number, level: number, block: Buffer) => void): void {
    const walk = this.walkBlocks(visit);
    while (walk.next().done !== true) { /* to the end */ }
  }

  /**
   * Visits the pointer of every block of the tree -- reading only the nodes:
   * a leaf's pointer comes from its parent. For whoever needs to know which
   * blocks the tree owns, not what they hold (the repair's scan: a directory
   * of a thousand names is ~100 blocks, of which one or two are nodes).
   * Bounded like visitBlocks.
   */
  visitPointers(visit: (ptr: number, level: number) => void): void {
    const { ptr: rootPtr, height } = this.storage.getRoot();
    visit(rootPtr, height - 1);
    let level = height - 1;
    let leftmost = rootPtr;
    let budget = this.storage.blockLimit() + 1;
    for (; level > 0; level--) {
      let ptr = leftmost;
      leftmost = NULL_PTR;
      while (ptr !== NULL_PTR) {
        if (--budget < 0) throw this.corrupt(`${this.ops.name} btree: sibling pointers loop at level ${level}`);
        const b = this.readBlock(ptr, level).data;
        const n = b.readUInt16BE(OFF_NUMRECS);
        for (let i = 0; i < n; i++) {
          const child = b.readUInt32BE(this.geo.ptrOffset(i));
          if (leftmost === NULL_PTR) leftmost = child;
          visit(child, level - 1);
        }
        ptr = b.readUInt32BE(OFF_RIGHTSIB);
      }
    }
  }

  /** visitBlocks as a generator that pauses after each block (online scrub runs it in slices). */
  *walkBlocks(visit: (ptr: number, level: number, block: Buffer) => void): Generator<void, void, void> {
    const { ptr: rootPtr, height } = this.storage.getRoot();
    let leftmost = rootPtr;
    let budget = this.storage.blockLimit() + 1;
    for (let level = height - 1; level >= 0; level--) {
      let ptr = leftmost;
      const first = this.readBlock(ptr, level).data;
      leftmost = level > 0 ? first.readUInt32BE(this.geo.ptrOffset(0)) : NULL_PTR;
      while (ptr !== NULL_PTR) {
        if (--budget < 0) throw this.corrupt(`${this.ops.name} btree: sibling pointers loop at level ${level}`);
        const b = this.readBlock(ptr, level).data;
        visit(ptr, level, b);
        ptr = b.readUInt32BE(OFF_RIGHTSIB);
        yield;
      }
    }
  }

  /** Frees every block of the tree (the storage's root is left pointing nowhere). */
  destroy(): void {
    const ptrs: number[] = [];
    this.visitBlocks((ptr) => { ptrs.push(ptr); });
    for (const ptr of ptrs) this.freeBlock(ptr);
    log('%s: destroyed %d blocks', this.ops.name, ptrs.length);
  }

  // ---- block helpers --------------------------------------------------

  /** Reads a block of this tree and checks it sits at the level the walk expects. */
  readBlock(ptr: number, level: number): Buf {
    if (!this.storage.isValidPtr(ptr)) {
      throw this.corrupt(`${this.ops.name} btree: pointer ${ptr} at level ${level} is out of range`);
    }
    let buf: Buf;
    try {
      buf = this.cache.read(this.storage.bnoOf(ptr), this.bufOps);
    } catch (e) {
      // The block's verifier failed (bad magic, crc, owner...): the tree is damaged.
      if (isCorruption(e)) this.storage.noteCorruption?.(e);
      throw e;
    }
    const got = buf.data.readUInt16BE(OFF_LEVEL);
    if (got !== level) {
      throw this.corrupt(`${this.ops.name} btree block ${buf.bno}: level ${got}, expected ${level}`);
    }
    if (level > 0 && buf.data.readUInt16BE(OFF_NUMRECS) === 0) {
      throw this.corrupt(`${this.ops.name} btree block ${buf.bno}: empty node`);
    }
    return buf;
  }

  /** A corruption error about this tree, its storage told first (health tracking). */
  corrupt(message: string): RmapfsError {
    const e = corruption(message);
    this.storage.noteCorruption?.(e);
    return e;
  }

  /** Allocates and formats a block at a level (header only, no entries). */
  newBlock(level: number, hint: number): { ptr: number; buf: Buf } {
    const ptr = this.storage.allocBlock(hint);
    const buf = this.formatBlock(ptr, level);
    this.cache.markDirty(buf);
    return { ptr, buf };
  }

  /** A zeroed block with this tree's header at a pointer already allocated (or reserved). */
  formatBlock(ptr: number, level: number): Buf {
    const bno = this.storage.bnoOf(ptr);
    const buf = this.cache.get(bno, this.bufOps);
    initHeader(buf.data, this.ops.magic, level, bno, this.storage.uuid, this.storage.owner);
    return buf;
  }

  freeBlock(ptr: number): void {
    this.cache.invalidate(this.storage.bnoOf(ptr));
    this.storage.freeBlock(ptr);
  }

  /** The lowest key of a block: its first record's key, or its first key. */
  lowKey(b: Buffer, level: number, dst: Buffer): void {
    if (level === 0) this.ops.keyFromRec(b, BTREE_HDR_SIZE, dst, 0);
    else b.copy(dst, 0, BTREE_HDR_SIZE, BTREE_HDR_SIZE + this.ops.keySize);
  }

  /**
   * The pointer of entry idx of a node, its key kept as what the child's
   * lowest key must be (checked by checkChildKey once the child is read).
   */
  childOf(node: Buffer, idx: number): number {
    node.copy(this.descentKey, 0, this.geo.keyOffset(idx), this.geo.keyOffset(idx) + this.ops.keySize);
    return node.readUInt32BE(this.geo.ptrOffset(idx));
  }

  /**
   * A child reached through childOf must start with the key its parent holds
   * for it (as XFS's cursor checks keys on the way down). A node key that
   * lies would send lookups down the wrong child and inserts out of order;
   * the block is in hand already, so the check costs one key compare.
   */
  checkChildKey(child: Buffer, level: number, ptr: number): void {
    const { ops, geo } = this;
    const differs = level === 0
      ? child.readUInt16BE(OFF_NUMRECS) > 0 && ops.compareRecToKey(child, geo.recOffset(0), this.descentKey, 0) !== 0
      : ops.compareKeys(child, geo.keyOffset(0), this.descentKey, 0) !== 0;
    if (differs) {
      throw this.corrupt(`${ops.name} btree block ${this.storage.bnoOf(ptr)} (level ${level}): its lowest key differs from the key its parent holds for it`);
    }
  }

  /**
   * A block reached through another's right sibling pointer must point back
   * to it. A split or merge rewrites the neighbour's left pointer: without
   * this, a lying right pointer would have it overwrite an unrelated block's
   * (and hand the lie on to the new block), spreading the damage silently.
   */
  private checkLeftSibling(buf: Buf, level: number, expected: number): void {
    const got = buf.data.readUInt32BE(OFF_LEFTSIB);
    if (got !== expected) {
      throw this.corrupt(`${this.ops.name} btree block ${buf.bno} (level ${level}): left sibling ${got}, but it was reached from ${expected}`);
    }
  }

  // ---- entry moves ------------------------------------------------------

  /** Opens a gap at idx in a block holding n entries and writes the entry there. */
  private putEntry(b: Buffer, level: number, idx: number, n: number, entry: Buffer, entryOff: number, ptr: number): void {
    const { geo } = this;
    const size = geo.entrySize(level);
    const at = BTREE_HDR_SIZE + idx * size;
    if (idx < n) b.copyWithin(at + size, at, BTREE_HDR_SIZE + n * size);
    entry.copy(b, at, entryOff, entryOff + size);
    if (level > 0) {
      const p = geo.ptrOffset(idx);
      if (idx < n) b.copyWithin(p + 4, p, geo.ptrOffset(n));
      b.writeUInt32BE(ptr, p);
    }
  }

  /** Closes the gap of entry idx in a block holding n entries. */
  private removeEntry(b: Buffer, level: number, idx: number, n: number): void {
    const { geo } = this;
    const size = geo.entrySize(level);
    const at = BTREE_HDR_SIZE + idx * size;
    b.copyWithin(at, at + size, BTREE_HDR_SIZE + n * size);
    b.fill(0, BTREE_HDR_SIZE + (n - 1) * size, BTREE_HDR_SIZE + n * size);
    if (level > 0) {
      const p = geo.ptrOffset(idx);
      b.copyWithin(p, p + 4, geo.ptrOffset(n));
      b.writeUInt32BE(0, geo.ptrOffset(n - 1));
    }
  }

  /** Copies count entries from src[srcIdx..] to dst[dstIdx..] (dst must have room). */
  private copyEntries(src: Buffer, srcIdx: number, dst: Buffer, dstIdx: number, count: number, level: number): void {
    const { geo } = this;
    const size = geo.entrySize(level);
    src.copy(dst, BTREE_HDR_SIZE + dstIdx * size, BTREE_HDR_SIZE + srcIdx * size, BTREE_HDR_SIZE + (srcIdx + count) * size);
    if (level > 0) src.copy(dst, geo.ptrOffset(dstIdx), geo.ptrOffset(srcIdx), geo.ptrOffset(srcIdx + count));
  }

  /** Zeroes entries [from, to) so freed slots hold no stale records. */
  private clearEntries(b: Buffer, from: number, to: number, level: number): void {
    const size = this.geo.entrySize(level);
    b.fill(0, BTREE_HDR_SIZE + from * size, BTREE_HDR_SIZE + to * size);
    if (level > 0) b.fill(0, this.geo.ptrOffset(from), this.geo.ptrOffset(to));
  }

  // ---- insert ------------------------------------------------------------

  /** Inserts an entry at the cursor's position on `level`, splitting upward as needed. */
  insertAt(cur: BtreeCursor, level: number, entry: Buffer, entryOff: number, ptr: number): void {
    const ptrHere = cur.ptrs[level]!;
    const buf = this.readBlock(ptrHere, level);
    const b = buf.data;
    const n = b.readUInt16BE(OFF_NUMRECS);
    const idx = cur.idx[level]!;
    const max = this.geo.maxRecs(level);
    if (n < max) {
      this.putEntry(b, level, idx, n, entry, entryOff, ptr);
      b.writeUInt16BE(n + 1, OFF_NUMRECS);
      this.cache.markDirty(buf);
      if (idx === 0) this.updateKeys(cur, level);
      return;
    }

    // Full: move the upper half to a new right sibling, then insert on the proper side.
    const mid = max >> 1;
    const right = this.newBlock(level, ptrHere);
    const rb = right.buf.data;
    this.copyEntries(b, mid, rb, 0, n - mid, level);
    this.clearEntries(b, mid, n, level);
    const oldRight = b.readUInt32BE(OFF_RIGHTSIB);
    rb.writeUInt32BE(ptrHere, OFF_LEFTSIB);
    rb.writeUInt32BE(oldRight, OFF_RIGHTSIB);
    b.writeUInt32BE(right.ptr, OFF_RIGHTSIB);
    if (oldRight !== NULL_PTR) {
      const ob = this.readBlock(oldRight, level);
      this.checkLeftSibling(ob, level, ptrHere);
      ob.data.writeUInt32BE(right.ptr, OFF_LEFTSIB);
      this.cache.markDirty(ob);
    }
    if (idx <= mid) {
      this.putEntry(b, level, idx, mid, entry, entryOff, ptr);
      b.writeUInt16BE(mid + 1, OFF_NUMRECS);
      rb.writeUInt16BE(n - mid, OFF_NUMRECS);
    } else {
      this.putEntry(rb, level, idx - mid, n - mid, entry, entryOff, ptr);
      b.writeUInt16BE(mid, OFF_NUMRECS);
      rb.writeUInt16BE(n - mid + 1, OFF_NUMRECS);
    }
    this.cache.markDirty(buf);
    this.cache.markDirty(right.buf);
    if (idx === 0) this.updateKeys(cur, level);

    const parentKey = this.keyScratch[level + 1]!;
    this.lowKey(rb, level, parentKey);
    if (level === cur.height - 1) {
      this.newRoot(cur, level, parentKey, right.ptr);
      return;
    }
    cur.idx[level + 1] = cur.idx[level + 1]! + 1;
    this.insertAt(cur, level + 1, parentKey, 0, right.ptr);
  }

  /** The root at `level` split: a new root above it points at both halves. */
  private newRoot(cur: BtreeCursor, level: number, rightKey: Buffer, rightPtr: number): void {
    const oldRoot = cur.ptrs[level]!;
    const root = this.newBlock(level + 1, oldRoot);
    const b = root.buf.data;
    const leftKey = this.keyScratch[MAX_BTREE_HEIGHT]!;
    this.lowKey(this.readBlock(oldRoot, level).data, level, leftKey);
    this.putEntry(b, level + 1, 0, 0, leftKey, 0, oldRoot);
    this.putEntry(b, level + 1, 1, 1, rightKey, 0, rightPtr);
    b.writeUInt16BE(2, OFF_NUMRECS);
    this.cache.markDirty(root.buf);
    const height = level + 2;
    if (height > MAX_BTREE_HEIGHT) throw this.corrupt(`${this.ops.name} btree: taller than ${MAX_BTREE_HEIGHT} levels`);
    this.storage.setRoot({ ptr: root.ptr, height });
    cur.height = height;
    cur.ptrs[level + 1] = root.ptr;
    cur.idx[level + 1] = 0;
  }

  /** The block at `level` has a new lowest key: carry it up while it is a leftmost child. */
  updateKeys(cur: BtreeCursor, level: number): void {
    const key = this.keyScratch[MAX_BTREE_HEIGHT]!;
    for (let l = level; l < cur.height - 1; l++) {
      const child = this.readBlock(cur.ptrs[l]!, l).data;
      this.lowKey(child, l, key);
      const parent = this.readBlock(cur.ptrs[l + 1]!, l + 1);
      const pidx = cur.idx[l + 1]!;
      key.copy(parent.data, this.geo.keyOffset(pidx), 0, this.ops.keySize);
      this.cache.markDirty(parent);
      if (pidx !== 0) break;
    }
  }

  // ---- delete ------------------------------------------------------------

  /**
   * Removes the entry at the cursor's position on `level`, rebalancing upward. Whether the
   * cursor's path still holds (false once blocks merge, the root changes or an entry moves in from the left).
   */
  deleteAt(cur: BtreeCursor, level: number): boolean {
    const { geo } = this;
    const ptrHere = cur.ptrs[level]!;
    const buf = this.readBlock(ptrHere, level);
    const b = buf.data;
    const idx = cur.idx[level]!;
    let n = b.readUInt16BE(OFF_NUMRECS);
    this.removeEntry(b, level, idx, n);
    n--;
    b.writeUInt16BE(n, OFF_NUMRECS);
    this.cache.markDirty(buf);

    if (level === cur.height - 1) {
      if (level > 0 && n === 1) {
        // A root node with one child: the child becomes the root.
        const child = b.readUInt32BE(geo.ptrOffset(0));
        this.storage.setRoot({ ptr: child, height: level });
        cur.height = level;
        this.freeBlock(ptrHere);
        return false;
      }
      return true;
    }
    if (idx === 0 && n > 0) this.updateKeys(cur, level);
    if (n >= geo.minRecs(level)) return true;

    const max = geo.maxRecs(level);
    const parent = this.readBlock(cur.ptrs[level + 1]!, level + 1);
    const pb = parent.data;
    const pn = pb.readUInt16BE(OFF_NUMRECS);
    const pidx = cur.idx[level + 1]!;
    if (pidx + 1 < pn) {
      const rptr = pb.readUInt32BE(geo.ptrOffset(pidx + 1));
      const rbuf = this.readBlock(rptr, level);
      const rb = rbuf.data;
      const rn = rb.readUInt16BE(OFF_NUMRECS);
      // Reached through the parent, not a descent: its key is checked here, before it is
      // overwritten (a borrow) or deleted (a merge) -- else a lying key vanishes unnoticed.
      this.childOf(pb, pidx + 1);
      this.checkChildKey(rb, level, rptr);
      if (n + rn <= max) {
        this.mergeIntoLeft(cur, level, buf, ptrHere, rbuf, rptr, pidx + 1);
        return false;
      } else {
        // Borrow the right sibling's first entry.
        this.copyEntries(rb, 0, b, n, 1, level);
        b.writeUInt16BE(n + 1, OFF_NUMRECS);
        this.removeEntry(rb, level, 0, rn);
        rb.writeUInt16BE(rn - 1, OFF_NUMRECS);
        this.cache.markDirty(buf);
        this.cache.markDirty(rbuf);
        this.lowKey(rb, level, this.keyScratch[MAX_BTREE_HEIGHT]!);
        this.keyScratch[MAX_BTREE_HEIGHT]!.copy(pb, geo.keyOffset(pidx + 1), 0, this.ops.keySize);
        this.cache.markDirty(parent);
        if (n === 0) this.updateKeys(cur, level);
        return true; // the cursor's block and index are where they were, its next entry borrowed in behind it
      }
    } else {
      const lptr = pb.readUInt32BE(geo.ptrOffset(pidx - 1));
      const lbuf = this.readBlock(lptr, level);
      const lb = lbuf.data;
      const ln = lb.readUInt16BE(OFF_NUMRECS);
      this.childOf(pb, pidx - 1);
      this.checkChildKey(lb, level, lptr);
      if (ln + n <= max) {
        this.mergeIntoLeft(cur, level, lbuf, lptr, buf, ptrHere, pidx);
      } else {
        // Borrow the left sibling's last entry.
        const size = geo.entrySize(level);
        const from = BTREE_HDR_SIZE + (ln - 1) * size;
        const ptr = level > 0 ? lb.readUInt32BE(geo.ptrOffset(ln - 1)) : NULL_PTR;
        this.putEntry(b, level, 0, n, lb, from, ptr);
        b.writeUInt16BE(n + 1, OFF_NUMRECS);
        this.clearEntries(lb, ln - 1, ln, level);
        lb.writeUInt16BE(ln - 1, OFF_NUMRECS);
        this.cache.markDirty(buf);
        this.cache.markDirty(lbuf);
        this.updateKeys(cur, level);
      }
      return false;
    }
  }

  /**
   * Appends the right block's entries to the left block (they fit), unlinks
   * and frees the right block, and deletes its entry (index rightIdx) from
   * the parent -- which may rebalance the level above in turn.
   */
  private mergeIntoLeft(cur: BtreeCursor, level: number, left: Buf, leftPtr: number, right: Buf, rightPtr: number,
    rightIdx: number): void {
    const lb = left.data;
    const rb = right.data;
    // Both came through the parent: their sibling pointers must name each other.
    if (lb.readUInt32BE(OFF_RIGHTSIB) !== rightPtr) {
      throw this.corrupt(`${this.ops.name} btree block ${left.bno} (level ${level}): right sibling ${lb.readUInt32BE(OFF_RIGHTSIB)}, but its parent's next child is ${rightPtr}`);
    }
    this.checkLeftSibling(right, level, leftPtr);
    const ln = lb.readUInt16BE(OFF_NUMRECS);
    const rn = rb.readUInt16BE(OFF_NUMRECS);
    this.copyEntries(rb, 0, lb, ln, rn, level);
    lb.writeUInt16BE(ln + rn, OFF_NUMRECS);
    const farRight = rb.readUInt32BE(OFF_RIGHTSIB);
    lb.writeUInt32BE(farRight, OFF_RIGHTSIB);
    this.cache.markDirty(left);
    if (farRight !== NULL_PTR) {
      const fb = this.readBlock(farRight, level);
      this.checkLeftSibling(fb, level, rightPtr);
      fb.data.writeUInt32BE(leftPtr, OFF_LEFTSIB);
      this.cache.markDirty(fb);
    }
    this.freeBlock(rightPtr);
    cur.idx[level + 1] = rightIdx;
    this.deleteAt(cur, level + 1);
  }
}

const scratchByType = new WeakMap<BtreeOps, Buffer[]>();

function scratchKeysFor(ops: BtreeOps): Buffer[] {
  let keys = scratchByType.get(ops);
  if (keys === undefined) {
    keys = Array.from({ length: MAX_BTREE_HEIGHT + 2 }, () => Buffer.alloc(ops.keySize));
    scratchByType.set(ops, keys);
  }
  return keys;
}

/**
 * A position in a btree: the block and entry index at every level, root to
 * leaf. Valid until the tree changes (after insert/delete through the tree
 * or another cursor, look up again); `update` keeps it valid.
 */
export class BtreeCursor {
  height = 0;
  readonly ptrs: number[] = new Array<number>(MAX_BTREE_HEIGHT).fill(NULL_PTR);
  readonly idx: number[] = new Array<number>(MAX_BTREE_HEIGHT).fill(0);
  /** deleteAndNext's copy of the next record's key. */
  private nextKeyScratch: Buffer | null = null;
  /** Whether the cursor sits on a record. */
  valid = false;
  private readonly tree: Btree;
  /** Scratch for update()'s old key; made on first use (most cursors never update). */
  private keyBuf: Buffer | null = null;

  constructor(tree: Btree) {
    this.tree = tree;
  }

  invalidate(): void {
    this.valid = false;
  }

  /**
   * Walks from the root to the leaf where `key` belongs, leaving idx[0] at the
   * first record >= key (possibly one past the leaf's last). True on an exact match.
   */
  descend(key: Buffer, keyOff: number): boolean {
    const { tree } = this;
    const { ops, geo } = tree;
    const root = tree.storage.getRoot();
    this.height = root.height;
    let ptr = root.ptr;
    for (let level = root.height - 1; level > 0; level--) {
      const b = tree.readBlock(ptr, level).data;
      if (level < root.height - 1) tree.checkChildKey(b, level, ptr);
      this.ptrs[level] = ptr;
      // The last key <= the search key (or the first, when all are greater).
      let lo = 1;
      let hi = b.readUInt16BE(OFF_NUMRECS) - 1;
      let pos = 0;
      while (lo <= hi) {
        const mid = (lo + hi) >>> 1;
        if (ops.compareKeys(b, geo.keyOffset(mid), key, keyOff) <= 0) {
          pos = mid;
          lo = mid + 1;
        } else {
          hi = mid - 1;
        }
      }
      this.idx[level] = pos;
      ptr = tree.childOf(b, pos);
    }
    const b = tree.readBlock(ptr, 0).data;
    if (root.height > 1) tree.checkChildKey(b, 0, ptr);
    this.ptrs[0] = ptr;
    const n = b.readUInt16BE(OFF_NUMRECS);
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ops.compareRecToKey(b, geo.recOffset(mid), key, keyOff) < 0) lo = mid + 1;
      else hi = mid;
    }
    this.idx[0] = lo;
    this.valid = lo < n;
    return lo < n && ops.compareRecToKey(b, geo.recOffset(lo), key, keyOff) === 0;
  }

  /**
   * Positions the cursor on the record with this key ('eq'), the last record
   * at or before it ('le'), or the first at or after it ('ge'). Returns whether
   * the cursor now sits on a record.
   */
  lookup(key: Buffer, keyOff: number, mode: LookupMode): boolean {
    const exact = this.descend(key, keyOff);
    if (mode === 'eq') {
      this.valid = exact;
      return exact;
    }
    const n = this.leafNumrecs();
    const i = this.idx[0]!;
    if (mode === 'ge') {
      if (i < n) return (this.valid = true);
      if (n === 0) return (this.valid = false);
      this.idx[0] = n - 1;
      this.valid = true;
      return this.increment();
    }
    if (exact) return (this.valid = true);
    if (i > 0) {
      this.idx[0] = i - 1;
      return (this.valid = true);
    }
    if (n === 0) return (this.valid = false);
    this.valid = true;
    return this.decrement();
  }

  /** The first record of the tree. */
  first(): boolean {
    const { tree } = this;
    const root = tree.storage.getRoot();
    this.height = root.height;
    let ptr = root.ptr;
    for (let level = root.height - 1; level > 0; level--) {
      const b = tree.readBlock(ptr, level).data;
      if (level < root.height - 1) tree.checkChildKey(b, level, ptr);
      this.ptrs[level] = ptr;
      this.idx[level] = 0;
      ptr = tree.childOf(b, 0);
    }
    this.ptrs[0] = ptr;
    this.idx[0] = 0;
    const leaf = tree.readBlock(ptr, 0).data;
    if (root.height > 1) tree.checkChildKey(leaf, 0, ptr);
    return (this.valid = leaf.readUInt16BE(OFF_NUMRECS) > 0);
  }

  /** The last record of the tree. */
  last(): boolean {
    const { tree } = this;
    const root = tree.storage.getRoot();
    this.height = root.height;
    let ptr = root.ptr;
    for (let level = root.height - 1; level > 0; level--) {
      const b = tree.readBlock(ptr, level).data;
      if (level < root.height - 1) tree.checkChildKey(b, level, ptr);
      const n = b.readUInt16BE(OFF_NUMRECS);
      this.ptrs[level] = ptr;
      this.idx[level] = n - 1;
      ptr = tree.childOf(b, n - 1);
    }
    this.ptrs[0] = ptr;
    const leaf = tree.readBlock(ptr, 0).data;
    if (root.height > 1) tree.checkChildKey(leaf, 0, ptr);
    const n = leaf.readUInt16BE(OFF_NUMRECS);
    this.idx[0] = n - 1;
    return (this.valid = n > 0);
  }

  /** Moves to the next record; false (and invalid) past the last. */
  increment(): boolean {
    if (!this.valid) return false;
    const { tree } = this;
    this.idx[0] = this.idx[0]! + 1;
    if (this.idx[0]! < this.leafNumrecs()) return true;
    let level = 1;
    for (; level < this.height; level++) {
      const b = tree.readBlock(this.ptrs[level]!, level).data;
      const i = this.idx[level]! + 1;
      if (i < b.readUInt16BE(OFF_NUMRECS)) {
        this.idx[level] = i;
        break;
      }
    }
    if (level >= this.height) return (this.valid = false);
    for (; level > 0; level--) {
      const b = tree.readBlock(this.ptrs[level]!, level).data;
      const child = tree.childOf(b, this.idx[level]!);
      // Read now rather than by the caller a moment later, to check its key: a
      // parent key too high hides the child from descents, and this is where
      // a walk meets it anyway.
      tree.checkChildKey(tree.readBlock(child, level - 1).data, level - 1, child);
      this.ptrs[level - 1] = child;
      this.idx[level - 1] = 0;
    }
    return true;
  }

  /** Moves to the previous record; false (and invalid) before the first. */
  decrement(): boolean {
    if (!this.valid) return false;
    const { tree } = this;
    this.idx[0] = this.idx[0]! - 1;
    if (this.idx[0]! >= 0) return true;
    let level = 1;
    for (; level < this.height; level++) {
      const i = this.idx[level]! - 1;
      if (i >= 0) {
        this.idx[level] = i;
        break;
      }
    }
    if (level >= this.height) return (this.valid = false);
    for (; level > 0; level--) {
      const b = tree.readBlock(this.ptrs[level]!, level).data;
      const child = tree.childOf(b, this.idx[level]!);
      this.ptrs[level - 1] = child;
      const cb = tree.readBlock(child, level - 1).data;
      tree.checkChildKey(cb, level - 1, child);
      this.idx[level - 1] = cb.readUInt16BE(OFF_NUMRECS) - 1;
    }
    return true;
  }

  /** The leaf block under the cursor and the byte offset of its record (valid until the next tree access). */
  recordAt(): { block: Buffer; offset: number } {
    this.checkValid();
    return { block: this.tree.readBlock(this.ptrs[0]!, 0).data, offset: this.tree.geo.recOffset(this.idx[0]!) };
  }

  /** A copy of the record under the cursor. */
  record(): Buffer {
    const out = Buffer.alloc(this.tree.ops.recSize);
    this.copyRecord(out, 0);
    return out;
  }

  copyRecord(dst: Buffer, dstOff: number): void {
    const { block, offset } = this.recordAt();
    block.copy(dst, dstOff, offset, offset + this.tree.ops.recSize);
  }

  /**
   * Overwrites the record under the cursor. Its key may change only within
   * its neighbours' keys (the tree's order must hold); the cursor stays put.
   */
  update(rec: Buffer, recOff = 0): void {
    const { tree } = this;
    const { ops } = tree;
    const { block, offset } = this.recordAt();
    const oldKey = (this.keyBuf ??= Buffer.alloc(ops.keySize));
    ops.keyFromRec(block, offset, oldKey, 0);
    const sameKey = ops.compareRecToKey(rec, recOff, oldKey, 0) === 0;
    if (!sameKey) this.checkNeighbours(rec, recOff);
    const buf = tree.readBlock(this.ptrs[0]!, 0);
    rec.copy(buf.data, offset, recOff, recOff + ops.recSize);
    tree.cache.markDirty(buf);
    if (!sameKey && this.idx[0] === 0) tree.updateKeys(this, 0);
  }

  /** Deletes the record under the cursor; the cursor is then invalid. */
  delete(): void {
    this.checkValid();
    this.tree.deleteAt(this, 0);
    this.valid = false;
    this.tree.storage.adjustRecords?.(-1);
  }

  /**
   * Deletes the record under the cursor and leaves the cursor on the next
   * one (false, and invalid, past the last): deleting a run of records costs
   * one lookup, not one each. A delete that borrows an entry from the right
   * sibling keeps the cursor's path (the next record moves in behind it);
   * one that merges blocks or takes from the left makes it stale, and the
   * next record is then looked up again by its key (keys are unique in the
   * trees that use this).
   */
  deleteAndNext(): boolean {
    this.checkValid();
    const { tree } = this;
    const idx = this.idx[0]!;
    let nextKey: Buffer | null = null;
    const n0 = this.leafNumrecs();
    if (this.height > 1 && n0 - 1 < tree.geo.minRecs(0)) {
      // The next record's key, should the delete reshape the tree: in this leaf but for its last record.
      const next = idx + 1 < n0 ? this : this.clone();
      if (next === this || next.increment()) {
        const leaf = tree.readBlock(next.ptrs[0]!, 0).data;
        nextKey = (this.nextKeyScratch ??= Buffer.alloc(tree.ops.keySize));
        tree.ops.keyFromRec(leaf, tree.geo.recOffset(next === this ? idx + 1 : next.idx[0]!), nextKey, 0);
      }
    }
    const pathKept = tree.deleteAt(this, 0);
    this.valid = false;
    tree.storage.adjustRecords?.(-1);
    if (!pathKept) return nextKey !== null && this.lookup(nextKey, 0, 'eq');
    const n = this.leafNumrecs();
    if (n === 0) return false;
    this.valid = true;
    if (idx < n) return true;
    this.idx[0] = n - 1;
    return this.increment();
  }

  /** Inserts a record at its place in the tree (looks it up itself); the cursor is then invalid. */
  insert(rec: Buffer, recOff = 0): void {
    this.tree.insert(rec, recOff);
    this.valid = false;
  }

  clone(): BtreeCursor {
    const c = new BtreeCursor(this.tree);
    c.height = this.height;
    c.valid = this.valid;
    for (let i = 0; i < this.height; i++) {
      c.ptrs[i] = this.ptrs[i]!;
      c.idx[i] = this.idx[i]!;
    }
    return c;
  }

  private leafNumrecs(): number {
    return this.tree.readBlock(this.ptrs[0]!, 0).data.readUInt16BE(OFF_NUMRECS);
  }

  private checkValid(): void {
    if (!this.valid) throw new RmapfsError('EINVAL', `${this.tree.ops.name} btree: cursor is not on a record`);
  }

  private checkNeighbours(rec: Buffer, recOff: number): void {
    const { ops } = this.tree;
    const key = Buffer.alloc(ops.keySize);
    ops.keyFromRec(rec, recOff, key, 0);
    const prev = this.clone();
    if (prev.decrement()) {
      const p = prev.recordAt();
      if (ops.compareRecToKey(p.block, p.offset, key, 0) >= 0) {
        throw new RmapfsError('EINVAL', `${ops.name} btree: update would move a record before its predecessor`);
      }
    }
    const next = this.clone();
    if (next.increment()) {
      const x = next.recordAt();
      if (ops.compareRecToKey(x.block, x.offset, key, 0) <= 0) {
        throw new RmapfsError('EINVAL', `${ops.name} btree: update would move a record past its successor`);
      }
    }
  }
}
