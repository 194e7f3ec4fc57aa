/**
 * Online repair of an AG's free-space btrees from its rmap: a damaged record
 * in either tree is rebuilt away, and while the rmap is walked in slices the
 * filesystem keeps allocating and freeing in the AG -- the result is what a
 * fresh computation from the rmap says, and everything checks clean.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairFreeSpace } from '../../src/repair/free-space-repair';
import { ExtentBitmap } from '../../src/repair/bitmap';
import type { AllocGroup } from '../../src/alloc/ag';
import { decodeFreeExtent } from '../../src/alloc/alloc-btree';
import { S_IFREG } from '../../src/inode/inode-format';
import { isCorruption } from '../../src/errors';
import { OWN_AG } from '../../src/format/owners';
import type { RmapUpdate } from '../../src/alloc/alloc';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** Free space as the rmap says it is now, and as the bnobt and cntbt hold it. */
function freeSpaceViews(ag: AllocGroup): { fromRmap: string; bno: string; cnt: string } {
  const used = new ExtentBitmap();
  ag.rmap.forEach((b, off) => { used.add(b.readUInt32BE(off), b.readUInt32BE(off + 4)); });
  const list = (tree: AllocGroup['bno']): string[] => {
    const out: string[] = [];
    tree.forEach((b, off) => { const e = decodeFreeExtent(b, off); out.push(`${e.startblock}+${e.blockcount}`); });
    return out;
  };
  return {
    fromRmap: used.complement(ag.length).extents().map((e) => `${e.start}+${e.len}`).join(' '),
    bno: list(ag.bno).join(' '),
    cnt: list(ag.cnt).sort().join(' '),
  };
}

/** A workload of creates, writes and removes, its expected file contents kept. */
function workload(fsx: Rmapfs, seed: number): { work: (n: number) => void; data: Map<number, Buffer> } {
  const rng = new Rng(seed);
  const files: number[] = [];
  const names = new Map<number, string>();
  const data = new Map<number, Buffer>();
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (files.length < 10 || r < 0.25) {
        const name = `f${rng.int(1e9)}`;
        const ino = fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
        files.push(ino);
        names.set(ino, name);
      } else if (r < 0.4) {
        const k = rng.int(files.length);
        const ino = files[k]!;
        try {
          fsx.unlink(fsx.rootIno, names.get(ino)!);
        } catch (e) {
          // Its data is in an AG whose free space is known damaged: frees there are refused (and the unlink undone).
          if (isCorruption(e)) continue;
          throw e;
        }
        files.splice(k, 1);
        data.delete(ino);
      } else {
        const f = files[rng.int(files.length)]!;
        const b = crypto.randomBytes(1 + rng.int(40000));
        const at = rng.int(3) * 4096;
        fsx.write(f, at, b);
        const old = data.get(f) ?? Buffer.alloc(0);
        const next = Buffer.alloc(Math.max(old.length, at + b.length));
        old.copy(next);
        b.copy(next, at);
        data.set(f, next);
      }
    }
  };
  return { work, data };
}

/** Changes the first record of a free-space btree (in a transaction, around the allocator). */
function damageFirstRecord(fsx: Rmapfs, ag: AllocGroup, tree: 'bno' | 'cnt'): void {
  fsx.fs.run(() => {
    const cur = ag[tree].cursor();
    if (!cur.first()) throw new Error('empty tree');
    const rec = Buffer.from(cur.record());
    rec.writeUInt32BE(rec.readUInt32BE(0) + 1, 0); // startblock off by one
    cur.update(rec);
  });
}

for (const tree of ['bno', 'cnt'] as const) {
  t.test(`a damaged ${tree}bt record is rebuilt away from the rmap`, async (t) => {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    const fsx = Rmapfs.open(image);
    t.teardown(() => fsx.close());
    const { work, data } = workload(fsx, testSeed(12));
    work(300);
    t.same(check(fsx), [], 'clean before the damage');
    const ag = fsx.fs.alloc.ag(1);
    damageFirstRecord(fsx, ag, tree);
    t.ok(check(fsx).some((p) => /bnobt|cntbt/.test(p)), 'check sees the damage');
    // As the allocator would on tripping over it: known sick, the AG stepped around.
    ag.markSick(tree === 'bno' ? 'bnobt' : 'cntbt', 'test damage');
    const r = await repairFreeSpace(fsx, 1, { sliceMs: 1e9, maxUnits: 16, betweenSlices: () => work(5) });
    t.ok(r.records > 0 && r.bnoBlocks > 0 && r.cntBlocks > 0, `rebuilt: ${r.records} extents, ${r.freeBlocks} free blocks`);
    t.ok(r.rmapRecordsScanned > 0, `${r.rmapRecordsScanned} rmap records scanned`);
    t.notOk(ag.health.isSick('bnobt') || ag.health.isSick('cntbt'), 'no longer known sick');
    t.same(check(fsx), [], 'clean after the repair');
    const v = freeSpaceViews(ag);
    t.equal(v.bno, v.fromRmap, 'the bnobt is what the rmap says is free');
    work(100);
    t.same(check(fsx), [], 'still clean after more work in the rebuilt AG');
    for (const [f, b] of data) if (!fsx.read(f, 0, b.length).equals(b)) t.fail(`file ${f} changed`);
    t.end();
  });
}

t.test('writers allocating and freeing in the AG between slices: the result equals a fresh computation', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const seed = testSeed(Date.now() % 100000);
  t.comment(`seed ${seed}`);
  const { work, data } = workload(fsx, seed);
  work(400);
  const ag = fsx.fs.alloc.ag(0);
  let liveInAg = 0;
  const hook = (u: { agno: number }): void => { if (u.agno === 0) liveInAg++; };
  fsx.fs.alloc.addRmapHook(hook, () => undefined);
  const r = await repairFreeSpace(fsx, 0, { sliceMs: 1e9, maxUnits: 8, betweenSlices: () => work(4) });
  fsx.fs.alloc.removeRmapHook(hook);
  t.ok(liveInAg > 0 && r.liveUpdates > 0, `${liveInAg} rmap changes in AG 0 during the repair (${r.liveUpdates} heard)`);
  const v = freeSpaceViews(ag);
  t.equal(v.bno, v.fromRmap, 'bnobt = free space computed afresh from the rmap');
  t.equal(v.cnt, v.fromRmap.split(' ').filter(Boolean).sort().join(' '), 'cntbt holds the same extents');
  t.same(check(fsx), [], 'clean');
  t.ok(r.commitPauseMs >= 0, `commit pause ${r.commitPauseMs.toFixed(2)} ms`);
  work(100);
  for (const [f, b] of data) if (!fsx.read(f, 0, b.length).equals(b)) t.fail(`file ${f} changed`);
  fsx.close();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'clean after reopen');
  fsx.close();
  t.end();
});

t.test('bad input: an AG past the end, a cancelled repair', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  for (let i = 0; i < 300; i++) fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0);
  await t.rejects(repairFreeSpace(fsx, 7), { code: 'EFSCORRUPTED' }, 'no AG 7');
  const rootBefore = fsx.fs.alloc.ag(0).bno.storage.getRoot().ptr;
  await t.rejects(repairFreeSpace(fsx, 0, { sliceMs: 1e9, maxUnits: 2, cancelled: () => true }), { code: 'ECANCELED' });
  t.equal(fsx.fs.alloc.ag(0).bno.storage.getRoot().ptr, rootBefore, 'the old bnobt is still in place');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('the free list refilled during the scan: its blocks are counted as used (the hooks hear the "ag" owner too)', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  // Files written one after another, every other one removed: holes in free space with records above them.
  for (let i = 0; i < 60; i++) fsx.write(fsx.create(fsx.rootIno, `h${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(8192, i));
  for (let i = 0; i < 60; i += 2) fsx.unlink(fsx.rootIno, `h${i}`);
  fsx.fsync(); // the freed data is reusable now (not busy)
  const recordsBelow = (a: AllocGroup): { below: number; lowestFree: number } => {
    const lowestFree = a.findFree({ minLen: 1, maxLen: 1, goal: 0 })!.startblock;
    let below = 0;
    a.rmap.forEach((b, off) => { if (b.readUInt32BE(off) < lowestFree) below++; });
    return { below, lowestFree };
  };
  // The AG where the free list's refill lands below most of the rmap.
  const ag = fsx.fs.alloc.ags.reduce((best, a) => (a.rmap.count() - recordsBelow(a).below
    > best.rmap.count() - recordsBelow(best).below ? a : best));
  const agno = ag.agno;
  const heard: RmapUpdate[] = [];
  const hook = (u: RmapUpdate): void => { if (u.owner === OWN_AG && u.agno === agno) heard.push(u); };
  fsx.fs.alloc.addRmapHook(hook, () => undefined);
  const agflBefore = ag.agflCount;
  // The free list fills from the lowest free space: trigger it once the walk is past every record below it.
  const { below, lowestFree } = recordsBelow(ag);
  const trigger = below + 1; // one record a slice
  t.comment(`AG ${agno}: lowest free block ${lowestFree}, ${below} of ${ag.rmap.count()} rmap records below it`);
  let slices = 0;
  const r = await repairFreeSpace(fsx, agno, {
    sliceMs: 1e9, maxUnits: 1, betweenSlices: () => {
      // The free list wants more (as after a split) and takes them from free space the walk has passed.
      if (++slices !== trigger) return;
      const need = ag.agflCount + 6;
      ag.freelistNeed = () => need;
      try {
        fsx.fs.run(() => ag.fixFreelist());
      } finally {
        delete (ag as { freelistNeed?: unknown }).freelistNeed;
      }
    },
  });
  fsx.fs.alloc.removeRmapHook(hook);
  t.ok(slices > trigger, `${slices} slices, the free list filled after slice ${trigger}`);
  t.ok(ag.agflCount > agflBefore, `the free list grew during the scan (${agflBefore} -> ${ag.agflCount})`);
  t.ok(heard.some((u) => u.op === 'map'), `the hooks heard the free list's new "ag" space (${heard.length} updates)`);
  const v = freeSpaceViews(ag);
  t.equal(v.bno, v.fromRmap, 'bnobt = free space computed afresh from the rmap');
  t.same(check(fsx), [], `clean (${r.records} free extents)`);
  t.end();
});
