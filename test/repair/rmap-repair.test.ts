/** Online rmap repair: damage the rmap, rebuild it with work going on, and everything checks clean. */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairRmap } from '../../src/repair/rmap-repair';
import { encodeRmapKey, decodeRmap, encodeRmap } from '../../src/rmap/rmap-btree';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

t.test('a damaged rmap is rebuilt online and the filesystem checks clean, across a reopen', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const rng = new Rng(testSeed(77));
  const files: number[] = [];
  const data = new Map<number, Buffer>();
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      if (files.length < 10 || rng.next() < 0.3) {
        files.push(fsx.create(fsx.rootIno, `f${rng.int(1e9)}`, S_IFREG | 0o644, 0, 0).ino);
      } else {
        const f = files[rng.int(files.length)]!;
        const b = crypto.randomBytes(1 + rng.int(20000));
        fsx.write(f, 0, b);
        const old = data.get(f);
        data.set(f, old !== undefined && old.length > b.length ? Buffer.concat([b, old.subarray(b.length)]) : b);
      }
    }
  };
  work(300);
  t.same(check(fsx), [], 'clean before the damage');
  // Damage: drop one file-data record and stretch another.
  const ag = fsx.fs.alloc.ag(0);
  const recs: ReturnType<typeof decodeRmap>[] = [];
  ag.rmap.forEach((b, off) => { recs.push(decodeRmap(b, off)); });
  const victims = recs.filter((r) => r.owner >= 16 && r.flags === 0);
  fsx.fs.run(() => {
    const key = Buffer.alloc(20);
    const a = victims[0]!;
    encodeRmapKey(a.startblock, a.owner, a.offset, a.flags, key);
    ag.rmap.delete(key);
    const b = victims[victims.length - 1]!;
    const cur = ag.rmap.cursor();
    encodeRmapKey(b.startblock, b.owner, b.offset, b.flags, key);
    cur.lookup(key, 0, 'eq');
    const rec = Buffer.alloc(24);
    encodeRmap({ ...b, blockcount: b.blockcount + 3 }, rec, 0);
    cur.update(rec);
  });
  t.ok(check(fsx).some((p) => /coverage|rmap/.test(p)), 'scrub sees the damage');
  const result = await repairRmap(fsx, 0, { sliceInodes: 8, sliceMs: 1e9, betweenSlices: () => work(10) });
  t.ok(result.records > 0 && result.blocks > 0, `rebuilt: ${result.records} records in ${result.blocks} blocks`);
  t.ok(result.commitPauseMs < 5000, `commit pause ${result.commitPauseMs.toFixed(1)} ms`);
  t.same(check(fsx), [], 'clean after the repair (and the work done meanwhile)');
  work(50);
  t.same(check(fsx), [], 'still clean after more work on the new btree');
  for (const [f, b] of data) if (!fsx.read(f, 0, b.length).equals(b)) t.fail(`file ${f} changed`);
  fsx.close();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'clean after reopen');
  const r1 = await repairRmap(fsx, 1);
  t.same(check(fsx), [], `a repair of a healthy AG 1 changes nothing wrong (${r1.records} records)`);
  fsx.close();
  t.end();
});

t.test('a cancelled repair stops before its commit and leaves the old rmap', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  for (let i = 0; i < 200; i++) fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0);
  const before: string[] = [];
  fsx.fs.alloc.ag(0).rmap.forEach((b, off) => { before.push(JSON.stringify(decodeRmap(b, off))); });
  const rootBefore = fsx.fs.alloc.ag(0).rmap.storage.getRoot().ptr;
  let slices = 0;
  await t.rejects(repairRmap(fsx, 0, { sliceInodes: 10, sliceMs: 1e9, betweenSlices: () => { slices++; }, cancelled: () => slices >= 3 }),
    { code: 'ECANCELED' }, 'cancelled');
  const after: string[] = [];
  fsx.fs.alloc.ag(0).rmap.forEach((b, off) => { after.push(JSON.stringify(decodeRmap(b, off))); });
  t.equal(fsx.fs.alloc.ag(0).rmap.storage.getRoot().ptr, rootBefore, 'the same rmap root');
  t.same(after, before, 'the same records');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('a crash right after the repair commits, before and after its log force, leaves a clean filesystem', async (t) => {
  for (const forced of [false, true]) {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    let fsx = Rmapfs.open(image);
    const data = new Map<number, Buffer>();
    for (let i = 0; i < 150; i++) {
      const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
      const b = crypto.randomBytes(1 + ((i * 7919) % 30000));
      fsx.write(ino, 0, b);
      data.set(ino, b);
    }
    fsx.fsync();
    fsx.fs.checkpoint(); // the old rmap blocks are on disk, the log empty
    const oldRoot = fsx.fs.alloc.ag(0).rmap.storage.getRoot().ptr;
    await repairRmap(fsx, 0);
    const newRoot = fsx.fs.alloc.ag(0).rmap.storage.getRoot().ptr;
    if (forced) fsx.fsync();
    fsx.fs.abandon(); // the crash: nothing more reaches the disk
    fsx = Rmapfs.open(image);
    t.equal(fsx.fs.alloc.ag(0).rmap.storage.getRoot().ptr, forced ? newRoot : oldRoot,
      forced ? 'after the force: the new rmap root survived' : 'before the force: the old rmap root is still the one');
    t.same(check(fsx), [], `${forced ? 'forced' : 'not forced'}: clean after recovery`);
    for (const [f, b] of data) if (!fsx.read(f, 0, b.length).equals(b)) t.fail(`file ${f} changed`);
    fsx.close();
  }
  t.end();
});

t.test('the heap is measured after forced GCs only when asked (they pause the daemon)', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  fsx.write(fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(64 << 10, 1));
  const g = globalThis as { gc?: () => void };
  const saved = g.gc;
  let forced = 0;
  g.gc = () => { forced++; };
  try {
    const quiet = await repairRmap(fsx, 0, { measureHeap: false });
    t.equal(forced, 0, 'measureHeap false: no forced GC');
    t.ok(Number.isFinite(quiet.heapGrowthMib), `a figure still (an upper bound): ${quiet.heapGrowthMib.toFixed(2)} MiB`);
    await repairRmap(fsx, 1);
    t.equal(forced, 2, 'by default: a forced GC before the scan and one when every AG is collected');
  } finally {
    g.gc = saved;
  }
  t.same(check(fsx), [], 'checks clean after both repairs');
  t.end();
});
