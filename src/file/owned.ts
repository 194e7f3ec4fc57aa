/**
 * What an inode owns: every block its forks hold -- data extents, block-map
 * btree blocks, directory btree blocks, attribute btree blocks and
 * out-of-line attribute values -- the one walk that both the rmap repair's
 * collector ("pointers only": which blocks, as cheaply as possible) and the
 * inode scrub ("read and verify": every tree block read, each tree verified
 * first) go through, so the two can never disagree on what a file owns.
 *
 * The walks are generators: a `PAUSE` is a safe point (after a tree block,
 * a few dozen extents), which the scrub turns into its slices and the
 * collector ignores. One generator per fork, because a damaged data fork
 * and a damaged attribute fork are different structures to the scrub.
 */
import type { Btree } from '../btree/btree';
import type { Geometry } from '../format/geometry';
import type { Allocator } from '../alloc/alloc';
import type { Inode } from '../inode/inode';
import { FORK_BTREE, FORK_EXTENTS } from '../inode/inode-format';
import { Directory } from '../dir/dir';
import { AttrFork, valueBlocks } from '../attr/attr';
import type { AttrContext } from '../attr/attr';
import { BlockMap } from './bmap';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from '../rmap/rmap-btree';

/** What a run of owned blocks is to its inode (the rmap's flags follow from it). */
export type OwnedKind = 'data' | 'bmbt' | 'dir' | 'attr-btree' | 'attr-value';

export interface OwnedBlocks {
  kind: OwnedKind;
  fsbno: number;
  blockcount: number;
  /** The file block of a data extent; 0 for metadata. */
  fileoff: number;
  /** A data extent allocated but not written (reads return zeroes). */
  unwritten: boolean;
}

/** The rmap flags of owned blocks: what the rmap must say of them. */
export function rmapFlagsOf(o: OwnedBlocks): number {
  switch (o.kind) {
    case 'data': return o.unwritten ? RMAP_UNWRITTEN : 0;
    case 'bmbt':
    case 'dir': return RMAP_BMBT_BLOCK;
    case 'attr-btree': return (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK) >>> 0;
    case 'attr-value': return RMAP_ATTR_FORK;
  }
}

/** A safe point between two pieces of the walk. */
export const PAUSE = null;

export type OwnedSteps = Generator<OwnedBlocks | typeof PAUSE, void, void>;

export interface OwnedWalk {
  /**
   * false: tree blocks from node pointers only, leaves never read (the
   * repair's scan); true: every tree block read, pausing after each.
   */
  readBlocks: boolean;
  /**
   * Data extents of a file whose block map is a btree are left out (the
   * repair reads them in pieces behind its data cursor: thousands of them).
   */
  skipBtreeData?: boolean;
  /**
   * Runs before a tree's blocks are walked (the scrub verifies it there);
   * false leaves the tree's blocks out -- a tree that failed verification
   * cannot be walked; the tree's block pointers in walkBlocks' order (what
   * a sound tree's verification kept) are its blocks without a second walk.
   */
  beforeTree?: (tree: Btree, kind: 'bmbt' | 'dir' | 'attr-btree') => Generator<void, boolean | readonly number[], void>;
}

/** Extents of one file between two pauses. */
const EXTENTS_PER_PAUSE = 32;

/** The blocks of one of the inode's btrees, read or from pointers. */
function* treeBlocks(tree: Btree, kind: 'bmbt' | 'dir' | 'attr-btree', walk: OwnedWalk): OwnedSteps {
  const before = walk.beforeTree === undefined ? true : yield* pausesOf(walk.beforeTree(tree, kind));
  if (before === false) return;
  if (before !== true) {
    // Verified: every block read already, pausing after each.
    for (const ptr of before) {
      yield { kind, fsbno: ptr, blockcount: 1, fileoff: 0, unwritten: false };
      yield PAUSE;
    }
    return;
  }
  const ptrs: number[] = [];
  if (walk.readBlocks) {
    for (const _ of tree.walkBlocks((ptr) => { ptrs.push(ptr); })) {
      for (const ptr of ptrs) yield { kind, fsbno: ptr, blockcount: 1, fileoff: 0, unwritten: false };
      ptrs.length = 0;
      yield PAUSE;
    }
  } else {
    tree.visitPointers((ptr) => { ptrs.push(ptr); });
    for (const ptr of ptrs) yield { kind, fsbno: ptr, blockcount: 1, fileoff: 0, unwritten: false };
  }
}

/** A verification generator's pauses passed on; its result returned. */
function* pausesOf<R>(steps: Generator<void, R, void>): Generator<typeof PAUSE, R, void> {
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
    yield PAUSE;
  }
}

/**
 * The data fork's blocks: a directory's btree, or a file's (or symlink's)
 * block-map btree and extents, in file order. Nothing for local data.
 */
export function* dataForkOwned(inode: Inode, alloc: Allocator, geo: Geometry, walk: OwnedWalk): OwnedSteps {
  if (inode.isDir) {
    if (inode.format === FORK_BTREE) yield* treeBlocks(new Directory(inode, alloc, geo).tree, 'dir', walk);
    return;
  }
  if (inode.format !== FORK_EXTENTS && inode.format !== FORK_BTREE) return; // local data, or a format the scrub reports
  const map = new BlockMap(inode, alloc, geo);
  if (map.btree !== null) {
    yield* treeBlocks(map.btree, 'bmbt', walk);
    if (walk.skipBtreeData === true) return;
  }
  for (const [k, e] of map.extents().entries()) {
    if (k % EXTENTS_PER_PAUSE === EXTENTS_PER_PAUSE - 1) yield PAUSE;
    yield { kind: 'data', fsbno: e.fsbno, blockcount: e.blockcount, fileoff: e.fileoff, unwritten: e.unwritten };
  }
}

/** Whether dataForkOwned leaves this inode's data extents to the caller (with skipBtreeData). */
export function hasBtreeData(inode: Inode, alloc: Allocator, geo: Geometry): boolean {
  return inode.format === FORK_BTREE && !inode.isDir && new BlockMap(inode, alloc, geo).btree !== null;
}

/** The attribute fork's blocks: its btree and the out-of-line values. */
export function* attrForkOwned(inode: Inode, ctx: AttrContext, walk: OwnedWalk): OwnedSteps {
  const attrs = new AttrFork(inode, ctx);
  if (attrs.btree === null) return;
  yield* treeBlocks(attrs.btree, 'attr-btree', walk);
  for (const e of attrs.list()) {
    const n = valueBlocks(e.valueLen);
    if (n > 0) yield { kind: 'attr-value', fsbno: e.valueBlock, blockcount: n, fileoff: 0, unwritten: false };
  }
}

/** Both forks: everything the inode owns. */
export function* ownedBy(inode: Inode, ctx: AttrContext, walk: OwnedWalk): OwnedSteps {
  yield* dataForkOwned(inode, ctx.alloc, ctx.geo, walk);
  yield* attrForkOwned(inode, ctx, walk);
}
