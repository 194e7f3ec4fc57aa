/**
 * The allocator on a real (scratch) filesystem: allocations and frees keep
 * the free-space btrees and the rmap in step, the coverage invariant holds
 * after every batch, ENOSPC is clean, and a log force + crash + replay keeps
 * exactly what was forced.
 */
import t from 'tap';
import { Filesystem } from '../../src/fs/filesystem';
import { RMAP_BMBT_BLOCK, decodeRmap } from '../../src/rmap/rmap-btree';
import { decodeFreeExtent } from '../../src/alloc/alloc-btree';
import { isInodeOwner } from '../../src/format/owners';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage, scrubAll } from '../lib/fs';

interface Held { fsbno: number; len: number; owner: number; offset: number }

/** Owners made up for these tests: far above any real inode number of a small filesystem. */
const BASE = 2 ** 40;

/** Test-owned extents according to the rmap, as sorted strings. */
function ownedExtents(f: Filesystem): string[] {
  const out: string[] = [];
  for (const ag of f.alloc.ags) {
    ag.rmap.forEach((b, off) => {
      const r = decodeRmap(b, off);
      if (isInodeOwner(r.owner) && r.owner >= BASE) out.push(`${f.geo.fsbno(ag.agno, r.startblock)}:${r.blockcount}:${r.owner}:${r.offset}`);
    });
  }
  return out.sort();
}

function heldExtents(held: Held[]): string[] {
  // Merge what the rmap merges: same owner, adjacent blocks and offsets.
  const sorted = [...held].sort((a, b) => a.fsbno - b.fsbno);
  const out: Held[] = [];
  for (const h of sorted) {
    const last = out[out.length - 1];
    if (last !== undefined && last.owner === h.owner && last.fsbno + last.len === h.fsbno && last.offset + last.len === h.offset
      && Math.floor(last.fsbno / 4096) === Math.floor(h.fsbno / 4096)) {
      last.len += h.len;
    } else out.push({ ...h });
  }
  return out.map((h) => `${h.fsbno}:${h.len}:${h.owner}:${h.offset}`).sort();
}

t.test('a fresh filesystem scrubs clean', (t) => {
  const image = scratchImage(t);
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  t.same(scrubAll(f), [], 'no problems');
  t.equal(f.geo.agCount, 4, '64 MiB makes 4 AGs');
  t.ok(f.alloc.freeBlocks() > 15000, `${f.alloc.freeBlocks()} blocks free`);
  t.end();
});

t.test('random allocations and frees keep every AG consistent, across a reopen', (t) => {
  const image = scratchImage(t, { agCount: 4 });
  let f = Filesystem.open(image);
  const rng = new Rng(testSeed(4242));
  const held: Held[] = [];
  const freeAtStart = f.alloc.freeBlocks();
  let nextOwner = BASE + 1000;
  for (let step = 0; step < 3000; step++) {
    if (held.length === 0 || rng.next() < 0.55) {
      const owner = rng.next() < 0.3 && held.length > 0 ? held[rng.int(held.length)]!.owner : nextOwner++;
      const mine = held.filter((h) => h.owner === owner);
      const last = mine.reduce<Held | undefined>((a, h) => (a === undefined || h.offset > a.offset ? h : a), undefined);
      const offset = last === undefined ? 0 : last.offset + last.len;
      const len = 1 + rng.int(16);
      const got = f.run(() => f.alloc.alloc({
        owner, offset, minLen: 1, maxLen: len, goal: last === undefined ? null : last.fsbno + last.len,
      }));
      held.push({ fsbno: got.fsbno, len: got.len, owner, offset });
    } else {
      const i = rng.int(held.length);
      const h = held[i]!;
      f.run(() => f.alloc.free(h.fsbno, h.len, h.owner, h.offset));
      held.splice(i, 1);
    }
    if (step % 500 === 499) {
      f.forceLog();
      t.same(scrubAll(f), [], `step ${step + 1}: scrub clean`);
    }
  }
  t.same(ownedExtents(f), heldExtents(held), 'the rmap holds exactly the allocations');
  const used = held.reduce((s, h) => s + h.len, 0);
  t.ok(f.alloc.freeBlocks() <= freeAtStart - used, 'free space went down by at least what is held');
  f.close();
  f = Filesystem.open(image);
  t.same(scrubAll(f), [], 'clean after reopen');
  t.same(ownedExtents(f), heldExtents(held), 'and the same allocations');
  for (const h of held) f.run(() => f.alloc.free(h.fsbno, h.len, h.owner, h.offset));
  f.checkpoint();
  t.same(scrubAll(f), [], 'clean after freeing everything');
  t.equal(f.alloc.freeBlocks() + f.alloc.ags.reduce((s, ag) => s + ag.agflCount, 0),
    freeAtStart + 4 * 16, 'all space is back (free space plus the free lists)');
  f.close();
  t.end();
});

t.test('freeOwnedRuns: 4,000 runs in one batch -- the free list is filled once, before the first run, and trimmed back after', (t) => {
  const image = scratchImage(t, { size: 256 << 20, agCount: 2 });
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  const agno = 1;
  const ag = f.alloc.ag(agno);
  // One-block btree records of one owner with another owner's block after each: every run freed is a new
  // free extent, so both free-space btrees grow by 4,000 records and split, taking blocks from the free list.
  const owner = BASE + 7000;
  const RUNS = 4000;
  const runs: { startblock: number; blockcount: number }[] = [];
  let goal = f.geo.fsbno(agno, 100);
  for (let i = 0; i < RUNS; i++) {
    const mine = f.run(() => f.alloc.alloc({ owner, flags: RMAP_BMBT_BLOCK, minLen: 1, maxLen: 1, goal, agno }));
    const other = f.run(() => f.alloc.alloc({ owner: BASE + 7001 + i, minLen: 1, maxLen: 1, goal: mine.fsbno + 1, agno }));
    runs.push({ startblock: f.geo.agbnoOf(mine.fsbno), blockcount: 1 });
    goal = other.fsbno + 1;
  }
  runs.sort((a, b) => a.startblock - b.startblock);
  f.forceLog();
  const freeBefore = ag.freeBlocks;
  // Free-space searches (the free list's fills) and frees, in order: a search among the batch's frees
  // walks every busy extent the batch made so far.
  const events: string[] = [];
  const { findFree, giveFree } = ag;
  ag.findFree = (req) => { events.push('search'); return findFree.call(ag, req); };
  ag.giveFree = (agbno, len) => { events.push('free'); giveFree.call(ag, agbno, len); };
  t.teardown(() => { ag.findFree = findFree; ag.giveFree = giveFree; });
  const remover = f.run(() => f.alloc.freeOwnedRuns(agno, runs, owner, RMAP_BMBT_BLOCK));
  ag.findFree = findFree;
  ag.giveFree = giveFree;
  const firstFree = events.indexOf('free');
  t.ok(firstFree >= 0 && !events.slice(firstFree).includes('search'), `no fill of the free list after the first free (${events.filter((e) => e === 'search').length} searches)`);
  t.ok(ag.agflCount >= ag.freelistNeed() && ag.agflCount <= ag.freelistNeed() + 16, `the free list back to its usual depth (${ag.agflCount}, need ${ag.freelistNeed()})`);
  t.ok(remover.descents < 20, `${remover.descents} rmap look-ups from the root for 4,000 runs`);
  t.same(ownedExtents(f).filter((e) => e.endsWith(`:${owner}:0`)), [], 'the owner holds nothing');
  t.ok(ag.freeBlocks >= freeBefore + RUNS - 64, `the blocks are free (${ag.freeBlocks - freeBefore} more)`);
  f.forceLog();
  t.same(scrubAll(f), [], 'scrub clean');
  t.end();
});

t.test('a freed extent joins the free extents on both sides; one that overlaps either is corruption', (t) => {
  const image = scratchImage(t);
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  const agno = 2;
  const ag = f.alloc.ag(agno);
  // Five blocks in a row, one owner each (no record joins another).
  const first = f.run(() => f.alloc.alloc({ owner: BASE + 9000, minLen: 1, maxLen: 1, goal: f.geo.fsbno(agno, 500), agno }));
  const p: number[] = [f.geo.agbnoOf(first.fsbno)];
  for (let i = 1; i < 5; i++) {
    const got = f.run(() => f.alloc.alloc({ owner: BASE + 9000 + i, minLen: 1, maxLen: 1, goal: first.fsbno + i, agno, exact: true }));
    p.push(f.geo.agbnoOf(got.fsbno));
  }
  const freeExtents = (): string[] => {
    const out: string[] = [];
    ag.bno.forEach((b, off) => { const e = decodeFreeExtent(b, off); if (e.startblock >= p[0]! && e.startblock <= p[4]!) out.push(`${e.startblock}+${e.blockcount}`); });
    return out;
  };
  f.run(() => f.alloc.free(f.geo.fsbno(agno, p[1]!), 1, BASE + 9001));
  f.run(() => f.alloc.free(f.geo.fsbno(agno, p[3]!), 1, BASE + 9003));
  t.same(freeExtents(), [`${p[1]}+1`, `${p[3]}+1`], 'two free extents with a used block between');
  f.run(() => f.alloc.free(f.geo.fsbno(agno, p[2]!), 1, BASE + 9002));
  t.same(freeExtents(), [`${p[1]}+3`], 'the block between joins both into one');
  t.throws(() => f.run(() => ag.giveFree(p[0]!, 2)), /overlaps free extent/, 'a free running into the free extent on its right');
  t.throws(() => f.run(() => ag.giveFree(p[3]!, 1)), /overlaps free extent/, 'a free inside the free extent on its left');
  t.end();
});

t.test('sequential allocations with a goal stay contiguous', (t) => {
  const image = scratchImage(t);
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  let goal: number | null = null;
  let offset = 0;
  const starts: number[] = [];
  for (let i = 0; i < 50; i++) {
    const got = f.run(() => f.alloc.alloc({ owner: BASE + 5000, offset, minLen: 1, maxLen: 32, goal }));
    starts.push(got.fsbno);
    goal = got.fsbno + got.len;
    offset += got.len;
  }
  t.ok(starts.every((s, i) => i === 0 || s === starts[i - 1]! + 32), '50 allocations of 32 blocks follow each other');
  t.equal(ownedExtents(f).length, 1, 'and the rmap holds them as one record');
  t.end();
});

t.test('ENOSPC is an error, never a corrupt tree; the failed operation leaves no trace', (t) => {
  const image = scratchImage(t, { size: 8 << 20 });
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  let n = 0;
  let err: unknown;
  for (;;) {
    try {
      f.run(() => {
        // Two allocations in one transaction: when the second fails, the first must be undone too.
        f.alloc.alloc({ owner: BASE + n, minLen: 3, maxLen: 3 });
        f.alloc.alloc({ owner: BASE + n, offset: 3, minLen: 3, maxLen: 3 });
      });
      n++;
    } catch (e) {
      err = e;
      break;
    }
  }
  t.equal((err as { code?: string }).code, 'ENOSPC', `ENOSPC after ${n} transactions`);
  t.same(scrubAll(f), [], 'scrub clean at ENOSPC');
  const owners = new Set(ownedExtents(f).map((e) => e.split(':')[2]));
  t.equal(owners.size, n, 'exactly the committed transactions own space');
  t.end();
});

t.test('forced changes survive a crash; unforced ones vanish whole', (t) => {
  const image = scratchImage(t);
  let f = Filesystem.open(image);
  const kept: Held[] = [];
  for (let i = 0; i < 50; i++) {
    const got = f.run(() => f.alloc.alloc({ owner: BASE + 700 + i, minLen: 4, maxLen: 4 }));
    kept.push({ fsbno: got.fsbno, len: got.len, owner: BASE + 700 + i, offset: 0 });
  }
  f.forceLog();
  for (let i = 0; i < 20; i++) f.run(() => f.alloc.alloc({ owner: BASE + 900 + i, minLen: 2, maxLen: 2 }));
  f.abandon(); // crash: no checkpoint, no unmount
  f = Filesystem.open(image);
  t.ok(f.replayed.transactions >= 1, `replayed ${f.replayed.transactions} journal transactions`);
  t.same(scrubAll(f), [], 'clean after replay');
  t.same(ownedExtents(f), heldExtents(kept), 'exactly the forced allocations are there');
  f.close();
  t.end();
});
