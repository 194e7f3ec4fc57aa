/**
 * The bulk loader: exact block counts up front, a tree that passes the
 * verifier, and the same records -- record for record -- as a tree built by
 * inserting them one at a time.
 */
import t from 'tap';
import type { Btree } from '../../src/btree/btree';
import type { BtreeOps } from '../../src/btree/btree-ops';
import { bulkLoad, computeBulkLoadGeometry } from '../../src/btree/bulk-load';
import { verifyBtree } from '../../src/btree/verify';
import { encodeRmap, rmapBtreeOps } from '../../src/rmap/rmap-btree';
import { Rng } from '../lib/rng';
import { tinyBtreeOps } from '../lib/tiny-btree';
import { deviceTree, memTree } from '../lib/trees';

/** Sorted, distinct records for each type. */
const makeRecord: Record<string, (i: number, dst: Buffer, off: number) => void> = {
  rmap: (i, dst, off) => encodeRmap({ startblock: i * 3, blockcount: 1 + (i % 5), owner: 500 + (i % 13), offset: i, flags: 0 }, dst, off),
  tiny: (i, dst, off) => { dst.writeUInt32BE(i * 7 + 1, off); dst.writeUInt32BE(i ^ 0x5a5a, off + 4); },
};

function loadInto(tree: Btree, n: number, fill: number): { taken: number; expected: number } {
  const geometry = computeBulkLoadGeometry(tree, n, fill);
  let next = 0;
  let taken = 0;
  const gen = makeRecord[tree.ops.name]!;
  const oldRoot = tree.storage.getRoot();
  const root = bulkLoad(tree, geometry, { next: (dst, off) => gen(next++, dst, off) }, () => {
    taken++;
    return tree.storage.allocBlock(0);
  });
  tree.storage.setRoot(root);
  tree.freeBlock(oldRoot.ptr);
  return { taken, expected: geometry.totalBlocks };
}

function allRecords(tree: Btree): string[] {
  const out: string[] = [];
  tree.forEach((b, off) => { out.push(b.subarray(off, off + tree.ops.recSize).toString('hex')); });
  return out;
}

t.test('geometry: exact, even, within min/max at every level', (t) => {
  for (const ops of [rmapBtreeOps, tinyBtreeOps] as BtreeOps[]) {
    const fx = memTree(ops);
    const { geo } = fx.tree;
    let bad = 0;
    for (const n of [0, 1, 2, 3, 5, 6, 7, 12, 13, 84, 167, 168, 169, 336, 337, 1000, 28224, 28225, 99999, 1_000_000]) {
      for (const fill of [1, 0.9, 0.75, 0.5, 0.1]) {
        const g = computeBulkLoadGeometry(fx.tree, n, fill);
        g.levels.forEach((l, level) => {
          const max = geo.maxRecs(level);
          const fits = l.perBlock * l.blocks + l.extra === l.entries
            && l.perBlock + (l.extra > 0 ? 1 : 0) <= max
            && (l.blocks === 1 || l.perBlock >= geo.minRecs(level))
            && (level === 0 || l.entries === g.levels[level - 1]!.blocks);
          if (!fits) bad++;
        });
        if (g.levels[g.height - 1]!.blocks !== 1) bad++;
        if (g.totalBlocks !== g.levels.reduce((s, l) => s + l.blocks, 0)) bad++;
      }
    }
    t.equal(bad, 0, `${ops.name}: every level of every geometry is consistent`);
    fx.close();
  }
  t.throws(() => computeBulkLoadGeometry(memTree(tinyBtreeOps).tree, 10, 0), { code: 'EINVAL' }, 'fill 0 is refused');
  t.throws(() => computeBulkLoadGeometry(memTree(tinyBtreeOps).tree, 10, 1.5), { code: 'EINVAL' }, 'fill > 1 is refused');
  t.end();
});

for (const ops of [rmapBtreeOps, tinyBtreeOps] as BtreeOps[]) {
  for (const target of ['xfile', 'device'] as const) {
    t.test(`${ops.name} on ${target}: bulk-loaded tree equals the incrementally built one`, (t) => {
      const sizes = ops.name === 'tiny' ? [0, 1, 6, 7, 40, 1000, 5000] : [0, 1, 168, 169, 5000, 40000];
      for (const n of sizes) {
        for (const fill of [1, 0.75]) {
          const bulk = target === 'xfile' ? memTree(ops) : deviceTree(ops, 4000);
          const incr = target === 'xfile' ? memTree(ops) : deviceTree(ops, 4000);
          const { taken, expected } = loadInto(bulk.tree, n, fill);
          t.equal(taken, expected, `n=${n} fill=${fill}: took exactly the ${expected} blocks computed beforehand`);
          bulk.dropCache(); // verify what reached the target, not just the cache
          const v = verifyBtree(bulk.tree);
          t.ok(v.ok, `n=${n} fill=${fill}: verifier passes${v.ok ? '' : `: ${v.problems[0]?.message}`}`);
          t.equal(v.records, n, `n=${n} fill=${fill}: ${n} records`);
          const g = computeBulkLoadGeometry(bulk.tree, n, fill);
          t.same(v.blocksPerLevel, g.levels.map((l) => l.blocks), `n=${n} fill=${fill}: blocks per level as computed`);
          // The same records inserted one by one, in a scrambled order.
          const gen = makeRecord[ops.name]!;
          const rec = Buffer.alloc(ops.recSize);
          const order = Array.from({ length: n }, (_, i) => i);
          const rng = new Rng(n + 1);
          for (let i = n - 1; i > 0; i--) {
            const j = rng.int(i + 1);
            [order[i], order[j]] = [order[j]!, order[i]!];
          }
          for (const i of order) {
            gen(i, rec, 0);
            incr.tree.insert(rec);
          }
          const a = allRecords(bulk.tree);
          const b = allRecords(incr.tree);
          t.equal(a.length, n, `n=${n}: scan of the bulk-loaded tree sees every record`);
          t.ok(a.length === b.length && a.every((r, i) => r === b[i]), `n=${n} fill=${fill}: record for record equal`);
          // The loaded tree is an ordinary tree: it takes inserts and deletes afterwards.
          if (n > 0) {
            gen(n + 10, rec, 0);
            bulk.tree.insert(rec);
            const key = Buffer.alloc(ops.keySize);
            gen(Math.floor(n / 2), rec, 0);
            ops.keyFromRec(rec, 0, key, 0);
            t.ok(bulk.tree.delete(key), `n=${n}: delete from the loaded tree`);
            t.ok(verifyBtree(bulk.tree).ok, `n=${n}: still valid after changes`);
          }
          bulk.close();
          incr.close();
        }
      }
      t.end();
    });
  }
}

t.test('records out of order, or repeated, are refused', (t) => {
  for (const bad of [[5, 3], [5, 5]]) {
    const fx = memTree(tinyBtreeOps);
    const g = computeBulkLoadGeometry(fx.tree, 20, 1);
    let i = 0;
    t.throws(() => bulkLoad(fx.tree, g, {
      next: (dst, off) => {
        const k = i === 10 ? bad[0]! * 100 : i === 11 ? bad[1]! * 100 : i * 10;
        i++;
        dst.writeUInt32BE(k, off);
        dst.writeUInt32BE(0, off + 4);
      },
    }, () => fx.tree.storage.allocBlock(0)), { code: 'EINVAL' }, `keys ${bad.join(' then ')} (x100) are refused`);
    t.equal(fx.tree.count(), 0, 'the live tree is untouched (the root was never installed)');
    fx.close();
  }
  t.end();
});

t.test('nextRun: records a run at a time build the same tree as one at a time', (t) => {
  const n = 40000;
  const src = Buffer.alloc(n * rmapBtreeOps.recSize);
  for (let i = 0; i < n; i++) makeRecord.rmap!(i, src, i * rmapBtreeOps.recSize);
  const build = (runs: boolean, arena?: Buffer): Buffer[] => {
    const fx = memTree(rmapBtreeOps);
    const g = computeBulkLoadGeometry(fx.tree, n, 1);
    const rng = new Rng(42);
    let at = 0;
    const size = rmapBtreeOps.recSize;
    const source = runs
      ? {
        next: (): void => { throw new Error('next() called although nextRun() is given'); },
        nextRun: (dst: Buffer, off: number, max: number): number => {
          const k = 1 + rng.int(max);
          src.copy(dst, off, at * size, (at + k) * size);
          at += k;
          return k;
        },
      }
      : { next: (dst: Buffer, off: number): void => { src.copy(dst, off, at * size, (at + 1) * size); at++; } };
    let next = 1;
    const loaded = bulkLoad(fx.tree, g, source, () => next++, { outside: true, arena });
    t.equal(at, n, `${runs ? 'runs' : 'one at a time'}: every record taken`);
    if (arena !== undefined) {
      t.equal(loaded.blocks.every((b) => b.data.buffer === arena.buffer), arena.length >= g.totalBlocks * 4096,
        `an arena of ${arena.length} bytes is used only when it holds the ${g.totalBlocks} blocks`);
    }
    fx.close();
    // Level, count and siblings, then the entries (each tree has its own uuid in the header).
    return loaded.blocks.map((b) => Buffer.concat([b.data.subarray(4, 16), b.data.subarray(64)]));
  };
  const one = build(false);
  const runs = build(true);
  t.equal(runs.length, one.length, 'as many blocks');
  t.ok(runs.every((b, i) => b.equals(one[i]!)), 'byte for byte the same blocks');
  // An arena that held something else: the blocks come out the same (it is cleared first).
  const dirty = Buffer.alloc(one.length * 4096 + 4096, 0xa5);
  const inArena = build(true, dirty);
  t.ok(inArena.every((b, i) => b.equals(one[i]!)), 'built in a used arena: the same blocks');
  build(true, Buffer.alloc(4096, 0xa5));
  t.end();
});

t.test('nextRun giving no records, or more than asked, is refused', (t) => {
  for (const bad of [0, 'more'] as const) {
    const fx = memTree(tinyBtreeOps);
    const g = computeBulkLoadGeometry(fx.tree, 50, 1);
    let i = 0;
    t.throws(() => bulkLoad(fx.tree, g, {
      next: () => { throw new Error('unused'); },
      nextRun: (dst, off, max) => {
        const k = bad === 0 ? 0 : max + 1;
        for (let j = 0; j < Math.min(k, max); j++, i++) { dst.writeUInt32BE(i * 10, off + j * 8); dst.writeUInt32BE(0, off + j * 8 + 4); }
        return k;
      },
    }, () => fx.tree.storage.allocBlock(0)), { code: 'EINVAL' }, `a run of ${bad} is refused`);
    fx.close();
  }
  t.end();
});
