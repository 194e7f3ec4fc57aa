/**
 * rmapMap / rmapUnmap against a block-by-block model: after every step the
 * tree must describe exactly the model's owners, with neighbours that
 * continue each other merged into one record.
 */
import t from 'tap';
import { MemBtree } from '../../src/btree/mem-btree';
import { verifyBtree } from '../../src/btree/verify';
import { OWN_AG, OWN_INODES } from '../../src/format/owners';
import { RMAP_BMBT_BLOCK, decodeRmap, encodeRmap, rmapBtreeOps } from '../../src/rmap/rmap-btree';
import type { RmapRecord } from '../../src/rmap/rmap-btree';
import { RmapFinder, RmapRunRemover, rmapFind, rmapMap, rmapRemoveWholeRun, rmapUnmap } from '../../src/rmap/rmap';
import { Rng, testSeed } from '../lib/rng';

const BLOCKS = 4000;

/** Owner and file offset of each block (owner 0 = free). */
interface Model { owner: Int32Array; offset: Int32Array }

function expected(m: Model): RmapRecord[] {
  const out: RmapRecord[] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const owner = m.owner[b]!;
    if (owner === 0) continue;
    const last = out[out.length - 1];
    const isFile = owner >= 16;
    if (last !== undefined && last.owner === owner && last.startblock + last.blockcount === b
      && (!isFile || last.offset + last.blockcount === m.offset[b])) {
      last.blockcount++;
    } else {
      out.push({ startblock: b, blockcount: 1, owner, offset: isFile ? m.offset[b]! : 0, flags: 0 });
    }
  }
  return out;
}

t.test('random map/unmap agree with a block model, records merged', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const rng = new Rng(testSeed(77));
  const m: Model = { owner: new Int32Array(BLOCKS), offset: new Int32Array(BLOCKS) };
  let maps = 0;
  let unmaps = 0;
  let bad = 0;
  for (let step = 0; step < 6000 && bad === 0; step++) {
    const start = rng.int(BLOCKS - 40);
    const len = 1 + rng.int(32);
    const free = m.owner.subarray(start, start + len).every((o) => o === 0);
    if (free && rng.next() < 0.6) {
      const pick = rng.int(4);
      const owner = pick === 0 ? OWN_AG : pick === 1 ? OWN_INODES : 100 + rng.int(3);
      // File data usually continues the owner's previous extent, so merges happen.
      const offset = owner >= 16 ? (rng.next() < 0.5 && start > 0 && m.owner[start - 1] === owner ? m.offset[start - 1]! + 1 : rng.int(1000)) : 0;
      rmapMap(mem.tree, { startblock: start, blockcount: len, owner, offset, flags: 0 }, 'test');
      for (let i = 0; i < len; i++) {
        m.owner[start + i] = owner;
        m.offset[start + i] = offset + i;
      }
      maps++;
    } else {
      // Unmap a piece of whatever record covers `start`.
      const rec = rmapFind(mem.tree, start);
      const owner = m.owner[start]!;
      if ((rec === null) !== (owner === 0)) bad++;
      if (rec === null) continue;
      let n = 0;
      while (n < len && start + n < rec.startblock + rec.blockcount) n++;
      rmapUnmap(mem.tree, { startblock: start, blockcount: n, owner, offset: owner >= 16 ? m.offset[start]! : 0, flags: 0 }, 'test');
      for (let i = 0; i < n; i++) m.owner[start + i] = 0;
      unmaps++;
    }
    if (step % 500 === 499 || step === 5999) {
      const got: RmapRecord[] = [];
      mem.tree.forEach((b, off) => { got.push(decodeRmap(b, off)); });
      const want = expected(m);
      if (JSON.stringify(got) !== JSON.stringify(want)) {
        bad++;
        t.fail(`step ${step}: ${got.length} records, model ${want.length}`);
      }
      if (!verifyBtree(mem.tree).ok) bad++;
    }
  }
  t.equal(bad, 0, `${maps} maps and ${unmaps} unmaps agree with the model`);
  t.end();
});

t.test('overlaps and mismatched unmaps are corruption, not silent damage', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  rmapMap(mem.tree, { startblock: 100, blockcount: 10, owner: 500, offset: 0, flags: 0 }, 'test');
  t.throws(() => rmapMap(mem.tree, { startblock: 105, blockcount: 10, owner: 501, offset: 0, flags: 0 }, 'test'),
    { code: 'EFSCORRUPTED' }, 'overlapping the right end');
  t.throws(() => rmapMap(mem.tree, { startblock: 95, blockcount: 6, owner: 501, offset: 0, flags: 0 }, 'test'),
    { code: 'EFSCORRUPTED' }, 'overlapping the left end');
  t.throws(() => rmapUnmap(mem.tree, { startblock: 100, blockcount: 5, owner: 501, offset: 0, flags: 0 }, 'test'),
    { code: 'EFSCORRUPTED' }, 'unmapping with the wrong owner');
  t.throws(() => rmapUnmap(mem.tree, { startblock: 108, blockcount: 5, owner: 500, offset: 8, flags: 0 }, 'test'),
    { code: 'EFSCORRUPTED' }, 'unmapping past the end of the record');
  t.throws(() => rmapUnmap(mem.tree, { startblock: 102, blockcount: 2, owner: 500, offset: 7, flags: 0 }, 'test'),
    { code: 'EFSCORRUPTED' }, 'unmapping at the wrong file offset');
  t.equal(mem.tree.count(), 1, 'nothing changed');
  t.end();
});

t.test("an inode's btree blocks mapped as one extent: unmapping part keeps offset 0 on both sides; a whole record goes in one step", (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const tree = mem.tree;
  const ino = 5000;
  rmapMap(tree, { startblock: 100, blockcount: 6, owner: ino, offset: 0, flags: RMAP_BMBT_BLOCK }, 'test');
  rmapUnmap(tree, { startblock: 102, blockcount: 1, owner: ino, offset: 0, flags: RMAP_BMBT_BLOCK }, 'test');
  const recs: string[] = [];
  tree.forEach((b, off) => { const r = decodeRmap(b, off); recs.push(`${r.startblock}+${r.blockcount}@${r.offset}`); });
  t.same(recs, ['100+2@0', '103+3@0'], 'head and tail, both at offset 0');
  const removed: RmapRecord[] = [];
  t.equal(rmapRemoveWholeRun(tree, 103, 106, ino + 1, (r) => removed.push(r)), 103, 'another owner\'s: left alone');
  t.equal(rmapRemoveWholeRun(tree, 100, 101, ino, (r) => removed.push(r)), 100, 'not wholly inside the range: left alone');
  t.equal(rmapRemoveWholeRun(tree, 103, 106, ino, (r) => removed.push(r)), 106, 'removed');
  t.same(removed, [{ startblock: 103, blockcount: 3, owner: ino, offset: 0, flags: RMAP_BMBT_BLOCK }], 'the one record told');
  t.equal(rmapFind(tree, 104), null, 'gone');
  t.end();
});

t.test("adjacent btree blocks of one inode join in one record (offset 0), other owners' and data do not", (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const tree = mem.tree;
  for (const b of [10, 11, 13, 12]) rmapMap(tree, { startblock: b, blockcount: 1, owner: 7000, offset: 0, flags: RMAP_BMBT_BLOCK }, 'test');
  rmapMap(tree, { startblock: 14, blockcount: 1, owner: 7001, offset: 0, flags: RMAP_BMBT_BLOCK }, 'test');
  rmapMap(tree, { startblock: 15, blockcount: 1, owner: 7001, offset: 0, flags: 0 }, 'test');
  rmapMap(tree, { startblock: 16, blockcount: 1, owner: 7001, offset: 0, flags: 0 }, 'test');
  const recs: string[] = [];
  tree.forEach((b, off) => { const r = decodeRmap(b, off); recs.push(`${r.startblock}+${r.blockcount}@${r.offset}/${r.owner}`); });
  t.same(recs, ['10+4@0/7000', '14+1@0/7001', '15+1@0/7001', '16+1@0/7001'], 'one record for the inode\'s four blocks; data at offsets 0, 0 stays apart');
  t.end();
});

t.test('a run of one-block btree records removed with one lookup, through leaf merges, stops at another owner', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const tree = mem.tree;
  const ino = 5000;
  // 3,000 one-block records of two owners in runs: [0, 2000) the inode's, then 1 of another, then the inode's again.
  // Inserted as they are (rmapMap would join them): a directory grown before btree-block records joined.
  const rec = Buffer.alloc(rmapBtreeOps.recSize);
  for (let b = 0; b < 3000; b++) {
    encodeRmap({ startblock: b, blockcount: 1, owner: b === 2000 ? ino + 1 : ino, offset: 0, flags: RMAP_BMBT_BLOCK }, rec, 0);
    tree.insert(rec);
  }
  t.ok(tree.height >= 2, `a tree of height ${tree.height}: deletes merge leaves`);
  let told = 0;
  t.equal(rmapRemoveWholeRun(tree, 10, 2500, ino, () => { told++; }), 2000, 'stopped at the other owner\'s record');
  t.equal(told, 1990, 'every record removed told');
  const left: number[] = [];
  tree.forEach((b, off) => { left.push(decodeRmap(b, off).startblock); });
  const want: number[] = [];
  for (let b = 0; b < 3000; b++) if (b < 10 || b >= 2000) want.push(b);
  t.same(left, want, 'exactly the run removed');
  t.ok(verifyBtree(tree).ok, 'the tree verifies');
  t.equal(rmapRemoveWholeRun(tree, 2001, 3000, ino, () => { told++; }), 3000, 'the rest, to the end of the tree');
  t.equal(tree.count(), 11, 'eleven records left');
  t.end();
});

t.test('RmapRunRemover: runs in block order between other owners\' records, stepping on from the last run, as rmapRemoveWholeRun does', (t) => {
  const rng = new Rng(testSeed(79));
  const ino = 6000;
  // A reaped directory's layout: runs of its btree blocks (one record each, as before they joined) with
  // inode chunks between them; some runs end inside another owner's record or start at a block the
  // rmap does not give the inode (the remover must then answer as a look-up from the root would).
  const both = [new MemBtree(rmapBtreeOps), new MemBtree(rmapBtreeOps)];
  t.teardown(() => { for (const m of both) m.close(); });
  const rec = Buffer.alloc(rmapBtreeOps.recSize);
  const runs: [number, number][] = [];
  let b = 0;
  while (b < 30_000) {
    const len = 1 + rng.int(12);
    for (let i = 0; i < len; i++) {
      encodeRmap({ startblock: b + i, blockcount: 1, owner: ino, offset: 0, flags: RMAP_BMBT_BLOCK }, rec, 0);
      for (const m of both) m.tree.insert(rec);
    }
    const kind = rng.int(10);
    // Mostly the whole run; sometimes one block more (into the chunk after it), or from a block before it.
    runs.push(kind === 0 ? [b, len + 1] : kind === 1 ? [b - 1, len] : [b, len]);
    b += len;
    const gap = 1 + rng.int(kind === 2 ? 40 : 3);
    encodeRmap({ startblock: b, blockcount: gap, owner: OWN_INODES, offset: 0, flags: 0 }, rec, 0);
    for (const m of both) m.tree.insert(rec);
    b += gap;
  }
  const [stepped, looked] = [both[0]!.tree, both[1]!.tree];
  t.ok(stepped.height >= 3, `height ${stepped.height}: deletes merge leaves under the cursor`);
  const remover = new RmapRunRemover(stepped);
  let removedStepping = 0;
  let removedLooking = 0;
  for (const [start, len] of runs) {
    const a = remover.remove(start, start + len, ino, () => { removedStepping++; });
    const w = rmapRemoveWholeRun(looked, start, start + len, ino, () => { removedLooking++; });
    if (a !== w) {
      t.fail(`run ${start}+${len}: reached ${a}, a look-up reaches ${w}`);
      break;
    }
  }
  t.equal(removedStepping, removedLooking, `the same records removed (${removedLooking})`);
  const recsOf = (tree: typeof stepped): string[] => {
    const out: string[] = [];
    tree.forEach((blk, off) => { const r = decodeRmap(blk, off); out.push(`${r.startblock}+${r.blockcount}/${r.owner}`); });
    return out;
  };
  t.same(recsOf(stepped), recsOf(looked), 'the same records left');
  t.ok(verifyBtree(stepped).ok, 'the tree verifies');
  t.ok(remover.descents < runs.length / 4, `${remover.descents} look-ups from the root for ${runs.length} runs`);
  t.end();
});

t.test('RmapRunRemover after forget() looks up again: a tree changed behind it is not stepped through', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const tree = mem.tree;
  const ino = 6100;
  for (let b = 0; b < 2000; b += 4) {
    rmapMap(tree, { startblock: b, blockcount: 2, owner: ino, offset: 0, flags: RMAP_BMBT_BLOCK }, 'test');
    rmapMap(tree, { startblock: b + 2, blockcount: 1, owner: OWN_AG, offset: 0, flags: 0 }, 'test');
  }
  const remover = new RmapRunRemover(tree);
  t.equal(remover.remove(0, 2, ino, () => undefined), 2, 'first run');
  // Something else changes the tree (a free-list fix) where the cursor stands.
  rmapUnmap(tree, { startblock: 2, blockcount: 1, owner: OWN_AG, offset: 0, flags: 0 }, 'test');
  remover.forget();
  const before = remover.descents;
  t.equal(remover.remove(4, 6, ino, () => undefined), 6, 'second run');
  t.equal(remover.descents, before + 1, 'looked up from the root');
  t.equal(rmapFind(tree, 4), null, 'gone');
  t.ok(verifyBtree(tree).ok, 'the tree verifies');
  t.end();
});

t.test('RmapFinder answers as rmapFind does, for look-ups in order, backwards, and anywhere, over a multi-level tree', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  const rng = new Rng(testSeed(78));
  // Records with gaps between them (a file written every other block, and others), several leaves deep.
  for (let b = 0; b < 60_000; b += 2 + rng.int(3)) {
    rmapMap(mem.tree, { startblock: b, blockcount: 1 + rng.int(2), owner: 100 + rng.int(5), offset: b, flags: 0 }, 'test');
  }
  t.ok(mem.tree.storage.getRoot().height >= 3, `height ${mem.tree.storage.getRoot().height}`);
  const finder = new RmapFinder(mem.tree);
  const queries: number[] = [];
  for (let b = 0; b < 61_000; b += 1 + rng.int(3)) queries.push(b); // forward: mostly inside the last leaf
  for (let b = 61_000; b >= 0; b -= 1 + rng.int(400)) queries.push(b); // backward, leaf to leaf
  for (let i = 0; i < 5000; i++) queries.push(rng.int(61_000)); // anywhere
  let wrong = 0;
  for (const b of queries) {
    const want = rmapFind(mem.tree, b);
    const got = finder.find(b);
    if (JSON.stringify(got) !== JSON.stringify(want) && wrong++ < 5) t.fail(`block ${b}: ${JSON.stringify(got)}, rmapFind ${JSON.stringify(want)}`);
  }
  t.equal(wrong, 0, `${queries.length} look-ups agree`);
  t.end();
});
