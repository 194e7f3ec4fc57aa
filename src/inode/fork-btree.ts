/**
 * Where an inode's own btrees live: the data fork's (a file's block map, a
 * directory's entries) or the attr fork's (extended attributes). Blocks come
 * from anywhere in the filesystem, owned by the inode in the rmap (flagged
 * as btree blocks, and as attr fork for the attr btree); the root and height
 * sit in the inode; the inode's block count follows every block.
 */
import type { BtreeRootInfo, BtreeStorage } from '../btree/btree-ops';
import type { BufCache } from '../io/buf-cache';
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../rmap/rmap-btree';
import type { Inode } from './inode';
import type { RmapfsError } from '../errors';

export type ForkName = 'data' | 'attr';

export class ForkBtreeStorage implements BtreeStorage {
  readonly cache: BufCache;
  readonly uuid: Buffer;
  readonly owner: number;
  private readonly rmapFlags: number;

  /**
   * `useReserve`: its blocks may come from the reserve pool (a file's block
   * map): see AllocRequest.useReserve.
   */
  constructor(private readonly inode: Inode, private readonly fork: ForkName, private readonly alloc: Allocator,
    private readonly geo: Geometry, private readonly useReserve = false) {
    this.cache = inode.store.cache;
    this.uuid = geo.uuid;
    this.owner = inode.ino;
    this.rmapFlags = fork === 'attr' ? (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK) >>> 0 : RMAP_BMBT_BLOCK;
  }

  bnoOf(ptr: number): number {
    return ptr;
  }

  isValidPtr(ptr: number): boolean {
    return ptr >= 2 && ptr < this.geo.totalBlocks;
  }

  blockLimit(): number {
    return this.geo.totalBlocks;
  }

  allocBlock(hint: number): number {
    const got = this.alloc.alloc({
      owner: this.inode.ino, flags: this.rmapFlags, minLen: 1, maxLen: 1, goal: hint || null, useReserve: this.useReserve,
    });
    this.inode.nblocks = this.inode.nblocks + 1;
    return got.fsbno;
  }

  freeBlock(ptr: number): void {
    this.alloc.free(ptr, 1, this.inode.ino, 0, this.rmapFlags);
    this.inode.nblocks = this.inode.nblocks - 1;
  }

  /** A block of this tree failed its checks: the inode's block map, directory or attributes are sick. */
  noteCorruption(error: RmapfsError): void {
    const structure = this.fork === 'attr' ? 'xattr' : this.inode.isDir ? 'directory' : 'bmap';
    this.inode.store.damaged(this.inode.ino, structure, error.message, error.code === 'EFSBADCRC' ? 'EFSBADCRC' : 'EFSCORRUPTED');
  }

  getRoot(): BtreeRootInfo {
    return this.fork === 'data'
      ? { ptr: this.inode.dataRoot, height: this.inode.dataHeight }
      : { ptr: this.inode.attrRoot, height: this.inode.attrHeight };
  }

  setRoot(root: BtreeRootInfo): void {
    if (this.fork === 'data') {
      this.inode.dataRoot = root.ptr;
      this.inode.dataHeight = root.height;
    } else {
      this.inode.attrRoot = root.ptr;
      this.inode.attrHeight = root.height;
    }
  }

  adjustRecords(delta: number): void {
    // Both forks count their records (extents, directory entries, attributes): check compares.
    if (this.fork === 'data') this.inode.nextents = this.inode.nextents + delta;
    else this.inode.attrCount = this.inode.attrCount + delta;
  }
}
