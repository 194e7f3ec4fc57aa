/**
 * A file's block map (its data fork): which disk blocks hold which file
 * blocks. Up to 12 extents live in the inode itself; past that the map
 * spills into a per-file block-map btree (the generic engine, its root kept
 * in the inode, its blocks owned by the inode in the rmap with the
 * "bmbt block" flag). Adjacent extents that continue each other merge.
 */
import { RmapfsError, corruption } from '../errors';
import { Btree } from '../btree/btree';
import type { BtreeOps } from '../btree/btree-ops';
import { u32KeyOps } from '../btree/btree-ops';
import { ForkBtreeStorage } from '../inode/fork-btree';
import { magicOf } from '../io/meta-header';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import type { Inode } from '../inode/inode';
import {
  EXTENT_SIZE, FORK_BTREE, FORK_EXTENTS, MAX_EXTENT_LEN, MAX_INLINE_EXTENTS, decodeExtent, encodeExtent,
} from '../inode/inode-format';
import type { Extent } from '../inode/inode-format';

/** The block-map btree type: extent records keyed by file offset. */
export const bmapBtreeOps: BtreeOps = {
  name: 'bmbt',
  magic: magicOf('BMA3'),
  recSize: EXTENT_SIZE,
  ...u32KeyOps(0),
  checkRecord(rec, r) {
    const e = decodeExtent(rec, r);
    if (e.blockcount === 0) return 'zero-length extent';
    return null;
  },
  formatRecord(rec, r) {
    const e = decodeExtent(rec, r);
    return `[${e.fileoff}+${e.blockcount}] at ${e.fsbno}${e.unwritten ? ' unwritten' : ''}`;
  },
};

export class BlockMap {
  /** The btree object for the fork's current root; see `tree`. */
  private treeObject: Btree | null = null;
  // Scratch, made on first use: a map that is only read (the repair's scan reads every file's) needs neither.
  private recBuf: Buffer | null = null;
  private keyBuf: Buffer | null = null;
  private get rec(): Buffer { return (this.recBuf ??= Buffer.alloc(EXTENT_SIZE)); }
  private get key(): Buffer { return (this.keyBuf ??= Buffer.alloc(4)); }

  constructor(readonly inode: Inode, readonly alloc: Allocator, readonly geo: Geometry) {
    if (inode.format !== FORK_BTREE && inode.format !== FORK_EXTENTS) throw new RmapfsError('EINVAL', `inode ${inode.ino} has no block map`);
  }

  /**
   * The btree when the map has spilled into one, else null. Asked of the inode
   * every time, never remembered: the fork changes format (inline -> btree past
   * 12 extents, btree -> inline when they fit again) under any other BlockMap
   * of the same inode -- a write inside a preallocate, a truncate -- and a map
   * that went on with the format it saw first read 13 "inline" extents
   * (EUCLEAN) or a freed btree root.
   */
  /** The block map found damaged in use: marked sick (InodeStore.damaged), the error to throw. */
  private damaged(message: string): RmapfsError {
    return this.inode.store.damaged(this.inode.ino, 'bmap', message);
  }

  private get tree(): Btree | null {
    const format = this.inode.format;
    if (format === FORK_EXTENTS) {
      this.treeObject = null;
      return null;
    }
    if (format !== FORK_BTREE) throw this.damaged(`inode ${this.inode.ino}: data fork format ${format} is not a block map`);
    // A Btree keeps no root of its own (its storage reads the inode's), so one object serves any root.
    return (this.treeObject ??= new Btree(bmapBtreeOps, new ForkBtreeStorage(this.inode, 'data', this.alloc, this.geo, true)));
  }

  /** The btree when the map has spilled into one. */
  get btree(): Btree | null {
    return this.tree;
  }

  private inlineExtents(): Extent[] {
    const { buf, offset } = this.inode.dataFork();
    const n = this.inode.nextents;
    if (n > MAX_INLINE_EXTENTS) throw this.damaged(`inode ${this.inode.ino}: ${n} inline extents`);
    const out: Extent[] = [];
    for (let i = 0; i < n; i++) out.push(decodeExtent(buf.data, offset + i * EXTENT_SIZE));
    return out;
  }

  private writeInline(list: Extent[]): void {
    const { buf, offset } = this.inode.dataFork();
    buf.data.fill(0, offset, offset + MAX_INLINE_EXTENTS * EXTENT_SIZE);
    list.forEach((e, i) => encodeExtent(e, buf.data, offset + i * EXTENT_SIZE));
    this.inode.store.cache.markDirty(buf);
    this.inode.nextents = list.length;
  }

  /** Every extent in file order. */
  extents(): Extent[] {
    const tree = this.tree;
    if (tree === null) return this.inlineExtents();
    const out: Extent[] = [];
    tree.forEach((b, off) => { out.push(decodeExtent(b, off)); });
    return out;
  }

  /**
   * Up to `max` extents in file order, from the one holding file block
   * `fileoff` (or the first after it) on: a large map read a piece at a time.
   */
  extentsFrom(fileoff: number, max: number): Extent[] {
    const out: Extent[] = [];
    if (this.tree === null) {
      for (const e of this.inlineExtents()) {
        if (e.fileoff + e.blockcount > fileoff && out.length < max) out.push(e);
      }
      return out;
    }
    this.walkTreeFrom(fileoff, (e) => {
      out.push(e);
      return out.length < max;
    });
    return out;
  }

  get count(): number {
    return this.inode.nextents;
  }

  /** The extent holding file block `fileoff`, else the next one after it (or null). */
  lookup(fileoff: number): { hit: Extent | null; next: Extent | null; prev: Extent | null } {
    const tree = this.tree;
    if (tree === null) {
      const list = this.inlineExtents();
      let prev: Extent | null = null;
      for (const e of list) {
        if (fileoff < e.fileoff) return { hit: null, next: e, prev };
        if (fileoff < e.fileoff + e.blockcount) return { hit: e, next: null, prev };
        prev = e;
      }
      return { hit: null, next: null, prev };
    }
    const cur = tree.cursor();
    this.key.writeUInt32BE(fileoff >>> 0, 0);
    let prev: Extent | null = null;
    if (cur.lookup(this.key, 0, 'le')) {
      const e = decodeExtent(cur.record(), 0);
      if (fileoff < e.fileoff + e.blockcount) {
        const p = cur.clone();
        return { hit: e, next: null, prev: p.decrement() ? decodeExtent(p.record(), 0) : null };
      }
      prev = e;
      return { hit: null, next: cur.increment() ? decodeExtent(cur.record(), 0) : null, prev };
    }
    return { hit: null, next: cur.first() ? decodeExtent(cur.record(), 0) : null, prev: null };
  }

  /** Maps a new extent (over a hole), merging with neighbours that continue it. */
  insert(ext: Extent): void {
    if (ext.blockcount <= 0 || ext.blockcount > MAX_EXTENT_LEN) throw new RmapfsError('EINVAL', `extent of ${ext.blockcount} blocks`);
    const { hit, next, prev } = this.lookup(ext.fileoff);
    if (hit !== null || (next !== null && next.fileoff < ext.fileoff + ext.blockcount)) {
      throw this.damaged(`inode ${this.inode.ino}: mapping file block ${ext.fileoff} twice`);
    }
    const joinsPrev = prev !== null && prev.fileoff + prev.blockcount === ext.fileoff && prev.fsbno + prev.blockcount === ext.fsbno
      && prev.unwritten === ext.unwritten && prev.blockcount + ext.blockcount <= MAX_EXTENT_LEN
      && this.geo.agnoOf(prev.fsbno) === this.geo.agnoOf(ext.fsbno);
    const joinsNext = next !== null && ext.fileoff + ext.blockcount === next.fileoff && ext.fsbno + ext.blockcount === next.fsbno
      && next.unwritten === ext.unwritten && ext.blockcount + next.blockcount <= MAX_EXTENT_LEN
      && this.geo.agnoOf(next.fsbno) === this.geo.agnoOf(ext.fsbno);
    let merged = { ...ext };
    const remove: Extent[] = [];
    if (joinsPrev) {
      merged = { ...prev!, blockcount: prev!.blockcount + merged.blockcount };
      remove.push(prev!);
    }
    if (joinsNext && merged.blockcount + next!.blockcount <= MAX_EXTENT_LEN) {
      merged = { ...merged, blockcount: merged.blockcount + next!.blockcount };
      remove.push(next!);
    }
    const tree = this.tree;
    if (tree === null) {
      const list = this.inlineExtents().filter((e) => !remove.some((r) => r.fileoff === e.fileoff));
      list.push(merged);
      list.sort((a, b) => a.fileoff - b.fileoff);
      if (list.length <= MAX_INLINE_EXTENTS) {
        this.writeInline(list);
        return;
      }
      this.spill(list);
      return;
    }
    for (const r of remove) this.deleteRecord(r.fileoff);
    encodeExtent(merged, this.rec, 0);
    tree.insert(this.rec);
    this.unspillIfFits(); // a fill that joins two extents leaves one fewer
  }

  /**
   * Unmaps file blocks [fileoff, fileoff+count); returns the disk extents that
   * held them (the caller frees them).
   */
  removeRange(fileoff: number, count: number): Extent[] {
    const end = fileoff + count;
    const freed: Extent[] = [];
    const keep: Extent[] = [];
    const touched: Extent[] = [];
    const tree = this.tree;
    const all = tree === null ? this.inlineExtents() : this.rangeFromTree(fileoff, end);
    for (const e of all) {
      const eEnd = e.fileoff + e.blockcount;
      if (eEnd <= fileoff || e.fileoff >= end) {
        if (tree === null) keep.push(e);
        continue;
      }
      touched.push(e);
      const from = Math.max(fileoff, e.fileoff);
      const to = Math.min(end, eEnd);
      freed.push({ fileoff: from, blockcount: to - from, fsbno: e.fsbno + (from - e.fileoff), unwritten: e.unwritten });
      if (e.fileoff < from) keep.push({ ...e, blockcount: from - e.fileoff });
      if (to < eEnd) keep.push({ fileoff: to, blockcount: eEnd - to, fsbno: e.fsbno + (to - e.fileoff), unwritten: e.unwritten });
    }
    if (touched.length === 0) return freed;
    if (tree === null) {
      keep.sort((a, b) => a.fileoff - b.fileoff);
      if (keep.length <= MAX_INLINE_EXTENTS) this.writeInline(keep);
      else this.spill(keep);
      return freed;
    }
    for (const e of touched) this.deleteRecord(e.fileoff);
    for (const e of keep) {
      encodeExtent(e, this.rec, 0);
      tree.insert(this.rec);
    }
    this.unspillIfFits();
    return freed;
  }

  /** Extents of the btree overlapping [from, to). */
  private rangeFromTree(from: number, to: number): Extent[] {
    const out: Extent[] = [];
    this.walkTreeFrom(from, (e) => {
      if (e.fileoff >= to) return false;
      out.push(e);
      return true;
    });
    return out;
  }

  /**
   * The btree's extents in file order from the one holding file block `from`
   * (or the first after it) on, each handed to `take` until it says stop.
   * `take` must not change the map (the walk's cursor is the tree's opCursor).
   */
  private walkTreeFrom(from: number, take: (e: Extent) => boolean): void {
    const cur = this.tree!.opCursor();
    this.key.writeUInt32BE(from >>> 0, 0);
    for (let ok = cur.lookup(this.key, 0, 'le') || cur.first(); ok; ok = cur.increment()) {
      const { block, offset } = cur.recordAt();
      const e = decodeExtent(block, offset);
      if (e.fileoff + e.blockcount > from && !take(e)) return;
    }
  }


  private deleteRecord(fileoff: number): void {
    this.key.writeUInt32BE(fileoff >>> 0, 0);
    if (!this.tree!.delete(this.key)) throw this.damaged(`inode ${this.inode.ino}: extent at ${fileoff} vanished from the block map`);
  }

  /** Too many extents for the inode: move them into a new block-map btree. */
  private spill(list: Extent[]): void {
    this.writeInline([]);
    const storage = new ForkBtreeStorage(this.inode, 'data', this.alloc, this.geo, true);
    this.inode.format = FORK_BTREE;
    const hint = list[0]?.fsbno ?? 0;
    const tree = Btree.create(bmapBtreeOps, storage, hint);
    this.treeObject = tree;
    for (const e of list) {
      encodeExtent(e, this.rec, 0);
      tree.insert(this.rec);
    }
  }

  /**
   * The btree's extents fit in the inode again: move them back and free the
   * tree, as XFS does (xfs_bmap_btree_to_extents) -- a file never keeps a
   * btree it does not need.
   */
  private unspillIfFits(): void {
    if (this.tree !== null && this.inode.nextents <= MAX_INLINE_EXTENTS) this.unspill();
  }

  /** Back to inline extents: whatever the btree still maps moves into the inode, and the tree is freed. */
  private unspill(): void {
    const tree = this.tree!;
    const list = this.extents();
    if (list.length > MAX_INLINE_EXTENTS) throw corruption(`inode ${this.inode.ino}: ${list.length} extents cannot go inline`);
    tree.destroy();
    this.treeObject = null;
    this.inode.format = FORK_EXTENTS;
    this.inode.dataRoot = 0;
    this.inode.dataHeight = 0;
    this.writeInline(list);
  }

  /** Frees the block-map btree's own blocks (the file is going away). */
  destroyTree(): void {
    if (this.tree !== null) this.unspill();
  }
}
