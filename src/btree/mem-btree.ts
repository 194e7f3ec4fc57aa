/**
 * The in-memory btree: the generic engine on an xfile target. Online repair
 * builds its new rmap here -- the very btree code and record ops used on
 * disk, with pages in a memfd instead of blocks on the device -- so the
 * working set costs the JavaScript heap nothing.
 *
 * Page 0 of the xfile is a header; every other page is a btree block or a
 * free page. Free pages form a singly linked list through their first bytes;
 * allocation takes from that list before extending the file.
 *
 *   header page: off 0 magic "XFBH", 4 root ptr, 8 height, 12 next unused page,
 *                16 free list head, 20 free pages, 24 uuid (16 bytes)
 *   free page:   off 0 magic "XFBF", 4 next free page
 */
import * as crypto from 'crypto';
import createDebug from 'debug';
import { RmapfsError, corruption } from '../errors';
import { BufCache } from '../io/buf-cache';
import type { Buf, BufOps } from '../io/buf-cache';
import { Xfile, XfileTarget } from '../io/xfile';
import type { XfileOptions } from '../io/xfile';
import { Btree } from './btree';
import type { BtreeOps, BtreeRootInfo, BtreeStorage } from './btree-ops';
import { NULL_PTR } from './btree-ops';
import { OFF_LEVEL, OFF_NUMRECS, OFF_RIGHTSIB, magicOf } from './btree-block';
import { bulkLoad, computeBulkLoadGeometry } from './bulk-load';
import type { RecordSource } from './bulk-load';

const log = createDebug('rmapfs:xfbtree');

const HDR_MAGIC = magicOf('XFBH');
const FREE_MAGIC = magicOf('XFBF');
const HDR_ROOT = 4;
const HDR_HEIGHT = 8;
const HDR_NEXT = 12;
const HDR_FREE_HEAD = 16;
const HDR_FREE_COUNT = 20;
const HDR_UUID = 24;
/** Page numbers are u32 pointers; this keeps the xfile under 16 TiB. */
const MAX_PAGES = 0xfffffff0;

export interface MemBtreeOptions extends XfileOptions {
  /** Pages of the xfile kept in the buffer cache (default 4096 = 16 MiB). */
  cacheBlocks?: number;
}

const headerOps: BufOps = {
  name: 'xfbtree header',
  verifyRead(buf: Buf): void {
    if (buf.data.readUInt32BE(0) !== HDR_MAGIC) throw corruption('xfbtree: bad header page');
  },
  prepareWrite(): void {},
};

/**
 * The xfile as a btree storage: a page allocator, and the root kept in page 0.
 * The header's few numbers are mirrored in fields (they are read on every
 * block access) and written through to page 0 on every change.
 */
class XfileBtreeStorage implements BtreeStorage {
  readonly owner = 0;
  /** The root, one object per root (a descent asks for it every time: no object per call). */
  private root: Readonly<BtreeRootInfo> = { ptr: NULL_PTR, height: 0 };
  private nextPage = 1;
  private freeHead = NULL_PTR;
  private freeCount = 0;

  constructor(readonly cache: BufCache, readonly uuid: Buffer) {
    this.writeHeader();
  }

  /** Resets to an empty xfile (no pages in use). */
  reset(): void {
    this.root = { ptr: NULL_PTR, height: 0 };
    this.nextPage = 1;
    this.freeHead = NULL_PTR;
    this.freeCount = 0;
    this.writeHeader();
  }

  private writeHeader(): void {
    const hdr = this.cache.get(0, headerOps);
    const h = hdr.data;
    h.writeUInt32BE(HDR_MAGIC, 0);
    h.writeUInt32BE(this.root.ptr, HDR_ROOT);
    h.writeUInt32BE(this.root.height, HDR_HEIGHT);
    h.writeUInt32BE(this.nextPage, HDR_NEXT);
    h.writeUInt32BE(this.freeHead, HDR_FREE_HEAD);
    h.writeUInt32BE(this.freeCount, HDR_FREE_COUNT);
    this.uuid.copy(h, HDR_UUID);
    this.cache.markDirty(hdr);
  }

  bnoOf(ptr: number): number {
    return ptr;
  }

  isValidPtr(ptr: number): boolean {
    return ptr > 0 && ptr < this.nextPage;
  }

  blockLimit(): number {
    return this.nextPage;
  }

  allocBlock(): number {
    let ptr = this.freeHead;
    if (ptr !== NULL_PTR) {
      const page = this.cache.read(ptr, null).data;
      if (page.readUInt32BE(0) !== FREE_MAGIC) throw corruption(`xfbtree: free list page ${ptr} is not free`);
      this.freeHead = page.readUInt32BE(4);
      this.freeCount--;
    } else {
      ptr = this.nextPage;
      if (ptr >= MAX_PAGES) throw new RmapfsError('ENOSPC', 'xfbtree: xfile is full');
      this.nextPage++;
    }
    this.writeHeader();
    return ptr;
  }

  freeBlock(ptr: number): void {
    const page = this.cache.get(ptr, null);
    page.data.writeUInt32BE(FREE_MAGIC, 0);
    page.data.writeUInt32BE(this.freeHead, 4);
    this.cache.markDirty(page);
    this.freeHead = ptr;
    this.freeCount++;
    this.writeHeader();
  }

  getRoot(): BtreeRootInfo {
    return this.root;
  }

  setRoot(root: BtreeRootInfo): void {
    this.root = { ptr: root.ptr, height: root.height };
    this.writeHeader();
  }

  /** Pages in use by the tree (allocated minus free). */
  pagesInUse(): number {
    return this.nextPage - 1 - this.freeCount;
  }
}

/**
 * Every leaf of an in-memory btree in key order, in one copy of the whole
 * xfile (see MemBtree.flatLeaves): `leafOffsets[k]` is where the k-th leaf
 * starts in `data`, `leafCounts[k]` how many records it holds. Valid while
 * the tree does not change.
 */
export interface FlatLeaves {
  data: Buffer;
  leafOffsets: Int32Array;
  leafCounts: Uint16Array;
  records: number;
}

/**
 * An in-memory btree of one type, owning its xfile. Use `tree` with the
 * ordinary btree API (cursors, insert, query, bulk load...).
 */
export class MemBtree {
  readonly xfile: Xfile;
  readonly target: XfileTarget;
  readonly cache: BufCache;
  readonly tree: Btree;
  private readonly storage: XfileBtreeStorage;

  constructor(ops: BtreeOps, options: MemBtreeOptions = {}) {
    this.xfile = new Xfile(`xfbtree-${ops.name}`, options);
    this.target = new XfileTarget(this.xfile);
    // Nothing orders xfile writes, so dirty pages may be written back whenever they are evicted.
    this.cache = new BufCache(this.target, { maxBlocks: options.cacheBlocks ?? 4096, writeBackOnEvict: true });
    const uuid = crypto.randomBytes(16);
    this.storage = new XfileBtreeStorage(this.cache, uuid);
    this.tree = Btree.create(ops, this.storage);
    log('%s: created in %s xfile', ops.name, this.xfile.kind);
  }

  /** Pages the tree uses now. */
  pagesInUse(): number {
    return this.storage.pagesInUse();
  }

  /** Bytes of memory the xfile holds (after writing back what the cache has dirty). */
  bytesHeld(): number {
    this.cache.flush();
    return this.xfile.bytesHeld();
  }

  /**
   * The tree's leaves, in key order, from one read of the whole xfile into one
   * buffer: the cache is written back first, then nothing more is read page by
   * page. A repair's pause walks the records three times (count, reap, load);
   * through the cache each walk costs a read and a buffer per page that fell
   * out of it, copied flat it costs one read in all and no allocation per page.
   * `into`, when big enough, is the buffer to copy into (memory touched before,
   * so the copy takes no page faults: see repair's PauseScratch); else a new one.
   */
  flatLeaves(into?: Buffer): FlatLeaves {
    this.cache.flush();
    const pageSize = this.cache.blockSize;
    const size = Math.max(this.xfile.size, pageSize);
    const data = into !== undefined && into.length >= size ? into.subarray(0, size) : Buffer.allocUnsafeSlow(size);
    this.xfile.read(0, data, 0, size);
    const pages = Math.floor(data.length / pageSize);
    const { geo } = this.tree;
    const pageAt = (ptr: number, level: number): number => {
      if (!(ptr > 0 && ptr < pages)) throw corruption(`xfbtree: pointer to page ${ptr} outside the xfile (${pages} pages)`);
      const off = ptr * pageSize;
      if (data.readUInt16BE(off + OFF_LEVEL) !== level) throw corruption(`xfbtree: page ${ptr} is not at level ${level}`);
      return off;
    };
    const { ptr: rootPtr, height } = this.storage.getRoot();
    let ptr = rootPtr;
    for (let level = height - 1; level > 0; level--) ptr = data.readUInt32BE(pageAt(ptr, level) + geo.ptrOffset(0));
    const offsets: number[] = [];
    const counts: number[] = [];
    let records = 0;
    while (ptr !== NULL_PTR) {
      if (offsets.length >= pages) throw corruption('xfbtree: sibling pointers loop among the leaves');
      const off = pageAt(ptr, 0);
      const n = data.readUInt16BE(off + OFF_NUMRECS);
      offsets.push(off);
      counts.push(n);
      records += n;
      ptr = data.readUInt32BE(off + OFF_RIGHTSIB);
    }
    return { data, leafOffsets: Int32Array.from(offsets), leafCounts: Uint16Array.from(counts), records };
  }

  /**
   * Replaces the tree with `records` records from `source`, in strictly
   * increasing key order, bulk loaded with full leaves: a collection that
   * gathered and sorted its records first (offline: no live update needs the
   * tree meanwhile) pays one block write per leaf, not a descent per record.
   */
  load(records: number, source: RecordSource): void {
    if (records === 0) {
      this.truncate();
      return;
    }
    this.cache.discardAll();
    this.xfile.truncate(0);
    this.storage.reset();
    const root = bulkLoad(this.tree, computeBulkLoadGeometry(this.tree, records, 1), source, () => this.storage.allocBlock());
    this.storage.setRoot(root);
    log('%s: bulk loaded %d records', this.tree.ops.name, records);
  }

  /** Starts over with an empty tree, giving every page back to the system. */
  truncate(): void {
    this.cache.discardAll();
    this.xfile.truncate(0);
    this.storage.reset();
    const ptr = this.tree.newBlock(0, 0).ptr;
    this.storage.setRoot({ ptr, height: 1 });
    log('%s: truncated', this.tree.ops.name);
  }

  /** Closes the xfile; its memory goes back to the system at once. */
  close(): void {
    this.xfile.close();
  }
}
