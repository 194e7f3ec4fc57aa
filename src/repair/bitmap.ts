/**
 * A set of block ranges (XFS's xbitmap): the one copy every repairer and
 * checker uses to say "these blocks" -- the collected free space, the blocks
 * an owner holds, the old btree blocks to reap. Kept as disjoint, merged
 * extents in block order (two parallel arrays of numbers, no object per
 * extent), so a set the size of an AG's free space costs a few KiB and a
 * walk is in block order.
 */
import { RmapfsError } from '../errors';

export interface Extent {
  start: number;
  len: number;
}

export class ExtentBitmap {
  /** starts[i] < ends[i] <= starts[i+1]... strictly: ends[i] < starts[i+1] (touching extents are merged). */
  private starts: number[] = [];
  private ends: number[] = [];

  /** A bitmap holding these extents (in any order, overlapping or not). */
  static of(extents: Iterable<Extent>): ExtentBitmap {
    const b = new ExtentBitmap();
    for (const e of extents) b.add(e.start, e.len);
    return b;
  }

  /** Number of (merged) extents. */
  get count(): number {
    return this.starts.length;
  }

  /** Number of blocks. */
  get blocks(): number {
    let n = 0;
    for (let i = 0; i < this.starts.length; i++) n += this.ends[i]! - this.starts[i]!;
    return n;
  }

  /** Index of the first extent whose end is >= at (the first that could touch a range starting at `at`). */
  private firstEndingAtOrAfter(at: number): number {
    let lo = 0;
    let hi = this.ends.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.ends[mid]! < at) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private static checkRange(start: number, len: number): void {
    if (!Number.isInteger(start) || !Number.isInteger(len) || start < 0 || len < 0) {
      throw new RmapfsError('EINVAL', `bad block range ${start}+${len}`);
    }
  }

  /** Adds [start, start+len): merged with every extent it overlaps or touches. */
  add(start: number, len: number): void {
    ExtentBitmap.checkRange(start, len);
    if (len === 0) return;
    const end = start + len;
    const n = this.starts.length;
    // The common case of a scan in block order: past the last extent.
    if (n === 0 || start > this.ends[n - 1]!) {
      this.starts.push(start);
      this.ends.push(end);
      return;
    }
    const i = this.firstEndingAtOrAfter(start);
    let j = i;
    while (j < n && this.starts[j]! <= end) j++;
    // Extents i..j-1 overlap or touch the new one: they become one.
    const newStart = i < j ? Math.min(start, this.starts[i]!) : start;
    const newEnd = i < j ? Math.max(end, this.ends[j - 1]!) : end;
    this.starts.splice(i, j - i, newStart);
    this.ends.splice(i, j - i, newEnd);
  }

  /** Removes [start, start+len) (blocks not in the set are ignored). */
  subtract(start: number, len: number): void {
    ExtentBitmap.checkRange(start, len);
    if (len === 0) return;
    const end = start + len;
    // First extent ending after start (an extent ending exactly at start is untouched).
    const i = this.firstEndingAtOrAfter(start + 1);
    const keepStarts: number[] = [];
    const keepEnds: number[] = [];
    let j = i;
    while (j < this.starts.length && this.starts[j]! < end) {
      if (this.starts[j]! < start) { keepStarts.push(this.starts[j]!); keepEnds.push(start); }
      if (this.ends[j]! > end) { keepStarts.push(end); keepEnds.push(this.ends[j]!); }
      j++;
    }
    if (j === i) return;
    this.starts.splice(i, j - i, ...keepStarts);
    this.ends.splice(i, j - i, ...keepEnds);
  }

  /** Adds every extent of `other`. */
  union(other: ExtentBitmap): this {
    other.walk((s, l) => this.add(s, l));
    return this;
  }

  /** Removes every extent of `other`. */
  subtractAll(other: ExtentBitmap): this {
    other.walk((s, l) => this.subtract(s, l));
    return this;
  }

  /** Whether block b is in the set. */
  has(b: number): boolean {
    const i = this.firstEndingAtOrAfter(b + 1);
    return i < this.starts.length && this.starts[i]! <= b;
  }

  /** Whether any block of [start, start+len) is in the set. */
  /** Whether every block of [start, start+len) is in the set. */
  covers(start: number, len: number): boolean {
    const i = this.firstEndingAtOrAfter(start + 1);
    return i < this.starts.length && this.starts[i]! <= start && this.ends[i]! >= start + len;
  }

  overlaps(start: number, len: number): boolean {
    const i = this.firstEndingAtOrAfter(start + 1);
    return len > 0 && i < this.starts.length && this.starts[i]! < start + len;
  }

  /** Visits every extent in block order. */
  walk(visit: (start: number, len: number) => void): void {
    for (let i = 0; i < this.starts.length; i++) visit(this.starts[i]!, this.ends[i]! - this.starts[i]!);
  }

  /** The extents, in block order. */
  extents(): Extent[] {
    const out: Extent[] = [];
    this.walk((start, len) => out.push({ start, len }));
    return out;
  }

  /** The i-th extent in block order. */
  at(i: number): Extent {
    if (i < 0 || i >= this.starts.length) throw new RmapfsError('EINVAL', `no extent ${i} in a bitmap of ${this.starts.length}`);
    return { start: this.starts[i]!, len: this.ends[i]! - this.starts[i]! };
  }

  /** The blocks of [0, limit) not in the set. */
  complement(limit: number): ExtentBitmap {
    const out = new ExtentBitmap();
    let at = 0;
    for (let i = 0; i < this.starts.length && at < limit; i++) {
      if (this.starts[i]! > at) out.add(at, Math.min(this.starts[i]!, limit) - at);
      at = Math.max(at, this.ends[i]!);
    }
    if (at < limit) out.add(at, limit - at);
    return out;
  }

  clone(): ExtentBitmap {
    const b = new ExtentBitmap();
    b.starts = [...this.starts];
    b.ends = [...this.ends];
    return b;
  }
}
