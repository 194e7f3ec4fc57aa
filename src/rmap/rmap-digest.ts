/**
 * What an offline rmap rebuild built, in a few numbers, so that the closing
 * check can tell whether comparing the files with that rmap would only
 * compare the rebuild's input with its own output (xfs_repair never re-reads
 * what it built; rmapfs checks everything after a repair, and skips only
 * this comparison, only where both sides are provably what the rebuild had).
 *
 * A `MappingDigest` is an order-independent sum of a hash of each file
 * mapping: the fields the file pass compares (owner, blocks, fork, and for
 * file data its offset and written state) and nothing else. For one AG the
 * rebuild keeps two: of the mappings it gathered from the forks (the grain
 * of the forks' own walk) and of the file owners' records it wrote (merged:
 * the grain of the rmap). The check makes the same two from what it reads --
 * the records in the AG pass's walk of the rmap, the mappings in the file
 * pass's walk of the forks -- and where both agree the rmap is the one the
 * rebuild made from these very forks (nothing changed either since); else the
 * file pass compares every mapping as always (check.ts, table.ts).
 */
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from './rmap-btree';

const TWO32 = 2 ** 32;

/** One 32-bit lane of the hash (murmur3's mixing of a word, then its finalizer at the end). */
function mixWord(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * One lane's hash of a mapping's fields (no array made: a million mappings an
 * AG). `>>> 0` takes an integer below 2^53 modulo 2^32, and a quotient's
 * integer part the same way: the low and high words without a division's floor.
 */
function lane(seed: number, tweak: number, owner: number, agbno: number, blockcount: number, offset: number, flags: number): number {
  let h = mixWord(seed, (owner >>> 0) ^ tweak);
  h = mixWord(h, ((owner / TWO32) >>> 0) ^ tweak);
  h = mixWord(h, agbno ^ tweak);
  h = mixWord(h, blockcount ^ tweak);
  h = mixWord(h, (offset >>> 0) ^ tweak);
  h = mixWord(h, ((offset / TWO32) >>> 0) ^ tweak);
  h = mixWord(h, flags ^ tweak);
  return finish(h);
}

export class MappingDigest {
  count = 0;
  blocks = 0;
  private lo = 0;
  private hi = 0;

  /**
   * Adds one file mapping (an rmap record's fields; `agbno` within the AG).
   * The offset and the unwritten flag count for file data only: the file
   * pass compares no more of a tree or attribute block.
   */
  add(owner: number, agbno: number, blockcount: number, offset: number, flags: number): void {
    const fork = flags & (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK);
    const data = fork === 0;
    const a = lane(0x9747b28c, 0, owner, agbno, blockcount, data ? offset : 0, data ? flags & RMAP_UNWRITTEN : fork);
    const b = lane(0x5bd1e995, 0xa5a5a5a5, owner, agbno, blockcount, data ? offset : 0, data ? flags & RMAP_UNWRITTEN : fork);
    this.lo = (this.lo + a) >>> 0;
    this.hi = (this.hi + b) >>> 0;
    this.count++;
    this.blocks += blockcount;
  }

  /** The same blocks in mappings of the same hash (a different split of the same blocks differs: it is another grain). */
  equals(o: MappingDigest): boolean {
    return this.lo === o.lo && this.hi === o.hi && this.count === o.count && this.blocks === o.blocks;
  }
}

/** What an offline rebuild of one AG's rmap built: the forks' mappings it gathered, and the file owners' records it wrote. */
export interface RmapBuilt {
  files: MappingDigest;
  records: MappingDigest;
}

/**
 * The AGs whose rmap this offline repair rebuilt from the files, with what
 * each rebuild built (a later rebuild of the same AG replaces it). Handed
 * from the repair to the check after it.
 */
export type RebuiltRmaps = Map<number, RmapBuilt>;
