/**
 * The structural verifier: walks a whole btree and reports every way it
 * breaks the rules, one problem per line, instead of stopping at the first.
 * Scrub and check build on it; tests run it after every batch of changes.
 *
 * It proves: every block passes its read verifier (magic, own block number,
 * UUID, owner, crc32c on the device); each sits at the level its parent
 * implies, so all leaves are equally deep; counts are within minrecs/maxrecs
 * (the root is exempt from the minimum); keys increase strictly within and
 * across blocks; each node key equals the lowest key of its child; the
 * sibling pointers of every level form one chain in key order; no block is
 * reachable twice; every record passes the type's own record check.
 */
import { RmapfsError } from '../errors';
import type { Btree } from './btree';
import { NULL_PTR } from './btree-ops';
import { OFF_LEFTSIB, OFF_LEVEL, OFF_NUMRECS, OFF_RIGHTSIB } from './btree-block';

export interface BtreeProblem {
  /** Level of the block the problem is in (-1 for the tree as a whole). */
  level: number;
  /** Block number on the target (-1 when there is none). */
  bno: number;
  message: string;
}

export interface BtreeVerifyResult {
  ok: boolean;
  problems: BtreeProblem[];
  height: number;
  records: number;
  blocks: number;
  blocksPerLevel: number[];
  /**
   * With `keepPointers`, a tree found sound: every block's pointer, the root's
   * level first, each level left to right -- the order `Btree.walkBlocks`
   * visits them (the sibling chains were checked to be that order), so a
   * caller that wants the blocks after verifying need not walk the tree again.
   */
  pointers?: number[];
}

export interface BtreeVerifyOptions {
  /** Stop collecting after this many problems (default 100). */
  maxProblems?: number;
  /** Keep the pointers of a sound tree's blocks (BtreeVerifyResult.pointers). */
  keepPointers?: boolean;
}

export function verifyBtree(tree: Btree, options: BtreeVerifyOptions = {}): BtreeVerifyResult {
  const steps = verifyBtreeSteps(tree, options);
  for (;;) {
    const r = steps.next();
    if (r.done === true) return r.value;
  }
}

/**
 * The same walk, pausing (yielding) after each block, for callers that work
 * in slices (online scrub). Between two steps the tree must not change: the
 * caller reads a frozen view of it, or does nothing else meanwhile.
 */
/** Entries checked per step of verifyBtreeSteps. */
const ENTRIES_PER_STEP = 32;

export function* verifyBtreeSteps(tree: Btree, options: BtreeVerifyOptions = {}): Generator<void, BtreeVerifyResult, void> {
  const { ops, geo, storage, cache } = tree;
  const maxProblems = options.maxProblems ?? 100;
  const problems: BtreeProblem[] = [];
  const { ptr: rootPtr, height } = storage.getRoot();
  // A damaged root can claim any height (a fuzzed inode's 0xffffffff): nothing is sized by it before it is checked.
  const plausibleHeight = height >= 1 && height <= 32;
  const result: BtreeVerifyResult = {
    ok: false, problems, height, records: 0, blocks: 0, blocksPerLevel: new Array<number>(plausibleHeight ? height : 0).fill(0),
  };
  const report = (level: number, bno: number, message: string): void => {
    if (problems.length < maxProblems) {
      problems.push({ level, bno, message: bno >= 0 ? `${ops.name} btree block ${bno}: ${message}` : `${ops.name} btree: ${message}` });
    }
  };
  if (!plausibleHeight) {
    report(-1, -1, `height ${height} is impossible`);
    return result;
  }

  const visited = new Set<number>();
  /** Per level: the previous block's pointer and right sibling, for the chain check. */
  const prevPtr = new Array<number>(height).fill(NULL_PTR);
  const prevRight = new Array<number>(height).fill(NULL_PTR);
  /** Per level: the last key seen, for the cross-block order check. */
  const lastKey = Array.from({ length: height }, () => Buffer.alloc(ops.keySize));
  const haveLastKey = new Array<boolean>(height).fill(false);
  const key = Buffer.alloc(ops.keySize);
  const pointersByLevel: number[][] | null = options.keepPointers === true ? Array.from({ length: height }, () => []) : null;

  /**
   * Each run of the children that lie next to each other on the target read
   * in one read (a bulk-loaded tree's blocks are in order): a pread per run,
   * not per block. A block that fails its verifier stays out of the cache,
   * and a run that cannot be read is left to each block's own read: either
   * reports as before.
   */
  const readAheadRuns = (ptrs: readonly number[]): void => {
    let start = -1;
    let count = 0;
    const readRun = (): void => {
      if (count < 2) return;
      try {
        cache.readAhead(start, count, tree.bufOps);
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
      }
    };
    for (const ptr of ptrs) {
      const bno = storage.isValidPtr(ptr) ? storage.bnoOf(ptr) : -1;
      if (bno >= 0 && count > 0 && bno === start + count) {
        count++;
        continue;
      }
      readRun();
      start = bno;
      count = bno >= 0 ? 1 : 0;
    }
    readRun();
  };

  function* visit(ptr: number, level: number, parentKey: Buffer | null, parentBno: number): Generator<void, void, void> {
    if (problems.length >= maxProblems) return;
    if (!storage.isValidPtr(ptr)) {
      report(level + 1, parentBno, `pointer ${ptr} to a level ${level} block is out of range`);
      return;
    }
    const bno = storage.bnoOf(ptr);
    if (visited.has(bno)) {
      report(level, bno, 'reachable twice (a pointer loop or a shared block)');
      return;
    }
    visited.add(bno);
    let b: Buffer;
    try {
      b = cache.read(bno, tree.bufOps).data;
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      report(level, bno, e.message.replace(/^.*?block \d+: /, ''));
      return;
    }
    const got = b.readUInt16BE(OFF_LEVEL);
    if (got !== level) {
      report(level, bno, `level ${got}, expected ${level}`);
      return;
    }
    result.blocks++;
    result.blocksPerLevel[level]!++;
    pointersByLevel?.[level]!.push(ptr);
    const n = b.readUInt16BE(OFF_NUMRECS);
    const isRoot = level === height - 1;
    const min = isRoot ? (level > 0 ? 2 : 0) : geo.minRecs(level);
    if (n < min || n > geo.maxRecs(level)) {
      report(level, bno, `${n} entries, want ${min}..${geo.maxRecs(level)}`);
      if (n === 0 || n > geo.maxRecs(level)) return;
    }

    // Sibling chain at this level.
    const left = b.readUInt32BE(OFF_LEFTSIB);
    const right = b.readUInt32BE(OFF_RIGHTSIB);
    if (left !== prevPtr[level]) report(level, bno, `left sibling ${fmtPtr(left)}, expected ${fmtPtr(prevPtr[level]!)}`);
    if (prevPtr[level] !== NULL_PTR && prevRight[level] !== ptr) {
      report(level, bno, `previous block's right sibling is ${fmtPtr(prevRight[level]!)}, not this block (${ptr})`);
    }
    prevPtr[level] = ptr;
    prevRight[level] = right;

    // Key order, and the parent's key for this block.
    for (let i = 0; i < n; i++) {
      if (level === 0) ops.keyFromRec(b, geo.recOffset(i), key, 0);
      else b.copy(key, 0, geo.keyOffset(i), geo.keyOffset(i) + ops.keySize);
      if (i === 0 && parentKey !== null && ops.compareKeys(key, 0, parentKey, 0) !== 0) {
        report(level, bno, 'lowest key differs from the key its parent holds for it');
      }
      if (haveLastKey[level] && ops.compareKeys(lastKey[level]!, 0, key, 0) >= 0) {
        report(level, bno, `key of entry ${i} is not above the key before it`);
      }
      key.copy(lastKey[level]!);
      haveLastKey[level] = true;
      if (level === 0) {
        result.records++;
        const bad = ops.checkRecord?.(b, geo.recOffset(i));
        if (bad !== undefined && bad !== null) report(level, bno, `record ${i}: ${bad}`);
      }
      // A full block is 100-200 us of checks: pause inside it too (b stays valid: only this walk reads
      // its cache between steps, and it reads nothing while paused).
      if (i % ENTRIES_PER_STEP === ENTRIES_PER_STEP - 1) yield;
    }
    yield;
    if (level === 0) return;
    // Copy what the children need before visiting them (the cache may drop b).
    const childKeys = Buffer.from(b.subarray(geo.keyOffset(0), geo.keyOffset(n)));
    const childPtrs: number[] = [];
    for (let i = 0; i < n; i++) childPtrs.push(b.readUInt32BE(geo.ptrOffset(i)));
    readAheadRuns(childPtrs);
    for (let i = 0; i < n; i++) {
      yield* visit(childPtrs[i]!, level - 1, childKeys.subarray(i * ops.keySize, (i + 1) * ops.keySize), bno);
    }
  }

  yield* visit(rootPtr, height - 1, null, -1);
  for (let level = 0; level < height; level++) {
    if (prevRight[level] !== NULL_PTR && problems.length === 0) {
      report(level, storage.bnoOf(prevPtr[level]!), `last block at level ${level} has right sibling ${prevRight[level]}`);
    }
  }
  result.ok = problems.length === 0;
  if (result.ok && pointersByLevel !== null) result.pointers = pointersByLevel.reverse().flat();
  return result;
}

function fmtPtr(ptr: number): string {
  return ptr === NULL_PTR ? 'null' : String(ptr);
}
