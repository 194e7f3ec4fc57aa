/**
 * A btree storage over a fixed region of a target: blocks [first, first+count)
 * handed out lowest-free-first, root kept in memory. It stands a btree on the
 * device by itself, outside any filesystem -- what the engine's tests and
 * benchmarks need. The filesystem's own btrees get their blocks from the AG
 * allocator instead.
 */
import { RmapfsError } from '../errors';
import type { BufCache } from '../io/buf-cache';
import type { BtreeRootInfo, BtreeStorage } from './btree-ops';
import { NULL_PTR } from './btree-ops';

export class RegionBtreeStorage implements BtreeStorage {
  private readonly used: Uint8Array;
  private root: BtreeRootInfo = { ptr: NULL_PTR, height: 0 };
  private searchFrom = 0;

  /** Pointers are 1-based region offsets (pointer p is block first + p - 1), so 0 is never valid. */
  constructor(readonly cache: BufCache, readonly uuid: Buffer, readonly owner: number,
    readonly first: number, readonly count: number) {
    if (first + count > cache.target.blockCount) {
      throw new RmapfsError('EINVAL', `region ${first}+${count} is past the end of ${cache.target.name}`);
    }
    this.used = new Uint8Array(count);
  }

  bnoOf(ptr: number): number {
    return this.first + ptr - 1;
  }

  isValidPtr(ptr: number): boolean {
    return ptr >= 1 && ptr <= this.count;
  }

  blockLimit(): number {
    return this.count;
  }

  allocBlock(): number {
    for (let i = this.searchFrom; i < this.count; i++) {
      if (this.used[i] === 0) {
        this.used[i] = 1;
        this.searchFrom = i + 1;
            return i + 1;
      }
    }
    throw new RmapfsError('ENOSPC', `btree region of ${this.count} blocks on ${this.cache.target.name} is full`);
  }

  freeBlock(ptr: number): void {
    if (!this.isValidPtr(ptr) || this.used[ptr - 1] === 0) {
      throw new RmapfsError('EFSCORRUPTED', `freeing block ${ptr}, which is not allocated`);
    }
    this.used[ptr - 1] = 0;
    if (ptr - 1 < this.searchFrom) this.searchFrom = ptr - 1;
  }

  getRoot(): BtreeRootInfo {
    return { ...this.root };
  }

  setRoot(root: BtreeRootInfo): void {
    this.root = { ...root };
  }

}
