/**
 * An AG whose free-space metadata is damaged: the first operation that meets
 * the damage marks the structure sick and is run again around it; new
 * allocations (data, inodes, directories) step around the AG as around a
 * full one; frees there are refused with EUCLEAN before anything changes;
 * reads go on. A scrub marks what it finds, and a clean scrub clears it.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { Filesystem } from '../../src/fs/filesystem';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { RmapfsError } from '../../src/errors';
import { ProblemList } from '../../src/scrub/common';
import { scrubAg } from '../../src/scrub/ag-scrub';
import { markHealthFromProblems } from '../../src/scrub/health-marks';
import { scratchImage } from '../lib/fs';
import { db } from '../cli/cli';
import { caught } from '../lib/caught';
import { decodeRmap } from '../../src/rmap/rmap-btree';

/** A 4-AG filesystem with a file whose data is in every AG; returns the image and the files' contents. */
function populated(t: Test): { image: string; files: Map<string, Buffer> } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 4 });
  const fsx = Rmapfs.open(image);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 8; i++) {
    const data = crypto.randomBytes(20000 + i * 1000);
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    fsx.write(ino, 0, data);
    files.set(`f${i}`, data);
  }
  fsx.close();
  return { image, files };
}

/** Flips the low bit of the first record's start in AG 1's one-leaf bnobt (raw, crc redone): bnobt and cntbt disagree. */
async function damageBnobt(t: Test, image: string): Promise<void> {
  const f = Filesystem.open(image, { readOnly: true });
  const root = f.alloc.ag(1).bno.storage.getRoot();
  f.close();
  t.equal(root.height, 1, 'AG 1 bnobt is one leaf');
  await db(t, image, `fuzz block 1 ${root.ptr} bno rec[0].startblock lastbit`);
}

t.test('creations step around an AG whose bnobt is damaged', async (t) => {
  const { image, files } = populated(t);
  await damageBnobt(t, image);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const ag1 = fsx.fs.alloc.ag(1);
  const freeBefore = ag1.freeBlocks;
  let created = 0;
  for (let i = 0; i < 100; i++) {
    const dir = fsx.mkdir(fsx.rootIno, `d${i}`, S_IFDIR | 0o755, 0, 0).ino;
    const ino = fsx.create(dir, 'f', S_IFREG | 0o644, 0, 0).ino;
    fsx.write(ino, 0, Buffer.alloc(5000, i));
    created++;
  }
  t.equal(created, 100, 'every directory and file was created and written');
  t.ok(ag1.health.isSick('bnobt') && ag1.health.isSick('cntbt'), 'both free-space btrees of AG 1 are known sick (they disagree)');
  t.match(ag1.health.note('bnobt'), { how: 'verifier', during: 'allocating' }, 'found while allocating');
  t.equal(ag1.freeBlocks, freeBefore, 'nothing was allocated in AG 1');
  for (const ag of fsx.fs.alloc.ags) if (ag.agno !== 1) t.same(ag.health.sickNotes(), [], `AG ${ag.agno} is not sick`);
  for (const [name, data] of files) {
    const ino = fsx.lookup(fsx.rootIno, name);
    t.ok(fsx.read(ino, 0, data.length).equals(data), `${name} reads back`);
  }
});

t.test('an operation that first meets the damage runs again around it', async (t) => {
  const { image } = populated(t);
  await damageBnobt(t, image);
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  let runs = 0;
  const got = f.run(() => {
    runs++;
    return f.alloc.alloc({ owner: 100000, minLen: 1, maxLen: 8, goal: f.geo.fsbno(1, 100) });
  });
  t.equal(runs, 2, 'the transaction ran twice');
  t.not(got.agno, 1, 'and allocated outside AG 1');
  t.ok(f.alloc.spaceSick(f.alloc.ag(1)), 'AG 1 is avoided from now on');
  const e = caught(() => f.run(() => { runs++; f.alloc.alloc({ owner: 100000, minLen: 1, maxLen: 1, agno: 1 }); }));
  t.match(e, { code: 'EFSCORRUPTED', message: /cannot allocate in AG 1: its free-space btree \(by block\) and free-space btree \(by size\) are damaged/ },
    'an allocation that must be in AG 1 is refused as corruption');
  t.equal(runs, 3, 'and not retried (nothing new was found)');
});

t.test('frees in a sick AG are refused before anything changes', async (t) => {
  const { image } = populated(t);
  await damageBnobt(t, image);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const f = fsx.fs;
  // Meet the damage once (an allocation that lands in AG 1, run again elsewhere).
  f.run(() => f.alloc.alloc({ owner: 100000, minLen: 1, maxLen: 1, goal: f.geo.fsbno(1, 100) }));
  const ag1 = f.alloc.ag(1);
  const before = { free: ag1.freeBlocks, extents: ag1.bno.storage.getRoot() };
  // A file with data in AG 1 (the rmap says who owns what there).
  const owners = new Set<number>();
  ag1.rmap.forEach((b, off) => { owners.add(decodeRmap(b, off).owner); });
  let victim: number | null = null;
  for (let i = 0; i < 8 && victim === null; i++) {
    const ino = fsx.lookup(fsx.rootIno, `f${i}`);
    if (owners.has(ino)) victim = ino;
  }
  t.not(victim, null, 'a file has its data in AG 1');
  const e = caught(() => fsx.setattr(victim!, { size: 0 }));
  t.ok(e instanceof RmapfsError, 'truncating it fails');
  t.match(e, { code: 'EFSCORRUPTED', message: /cannot free blocks .* in AG 1: its free-space btree/ }, 'with EUCLEAN, naming the damage');
  t.equal(fsx.stat(victim!).size > 0, true, 'the file keeps its size');
  t.same({ free: ag1.freeBlocks, extents: ag1.bno.storage.getRoot() }, before, 'AG 1 is unchanged');
});

t.test('a scrub marks what it finds; a clean scrub makes an AG healthy', async (t) => {
  const { image } = populated(t);
  await damageBnobt(t, image);
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  const problems = new ProblemList();
  for (const ag of f.alloc.ags) scrubAg(ag, f.geo, problems);
  markHealthFromProblems(f.alloc, f.alloc.ags.map((a) => a.agno), problems.problems, 'scrub', 'scrubbing');
  const ag1 = f.alloc.ag(1);
  t.equal(ag1.health.state('bnobt'), 'sick', 'AG 1 bnobt: sick');
  t.equal(ag1.health.note('bnobt')?.how, 'scrub', 'found by the scrub');
  t.equal(ag1.health.state('rmapbt'), 'unchecked', 'AG 1 rmap: not blamed for the free space\'s coverage problems');
  t.equal(f.alloc.ag(0).health.state('bnobt'), 'healthy', 'AG 0: healthy');
  // The damage undone: the next scrub finds AG 1 clean and it is used again.
  ag1.health.markHealthy('bnobt');
  t.notOk(ag1.health.isSick('bnobt'), 'healthy again');
});

/** AG 0's one-leaf inode btree, its first record fuzzed by `rmapfs db` (crc redone): the chunk of the root and `a`. */
async function damageInobt(t: Test, image: string, field: string, verb: string): Promise<void> {
  const f = Filesystem.open(image, { readOnly: true });
  const root = f.alloc.ag(0).ino.storage.getRoot();
  f.close();
  t.equal(root.height, 1, 'AG 0 inobt is one leaf');
  await db(t, image, `fuzz block 0 ${root.ptr} ino rec[0].${field} ${verb}`);
}

for (const [field, verb, how] of [['freemask', 'ones', 'calls every inode of a chunk in use free'],
  ['freemask', 'zeroes', 'counts free inodes in a chunk whose mask has none']] as const) {
  t.test(`an inode btree that ${how}: creation steps around the AG, no inode in use is handed out`, async (t) => {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    const made = Rmapfs.open(image);
    const data = crypto.randomBytes(9000);
    const a = made.create(made.rootIno, 'a', S_IFREG | 0o644, 0, 0).ino;
    made.write(a, 0, data);
    made.close();
    await damageInobt(t, image, field, verb);
    const fsx = Rmapfs.open(image);
    t.teardown(() => fsx.close());
    const ino = fsx.create(fsx.rootIno, 'b', S_IFREG | 0o644, 0, 0).ino;
    t.not(ino, a, 'the new file is not given the inode of a');
    t.not(ino, fsx.rootIno, 'nor the root\'s');
    t.equal(fsx.fs.geo.inoAgno(ino), 1, 'it is in AG 1');
    t.ok(fsx.fs.alloc.ag(0).health.isSick('inobt'), 'AG 0 inobt is known sick');
    t.ok(fsx.read(fsx.lookup(fsx.rootIno, 'a'), 0, data.length).equals(data), 'a reads back');
    t.same(fsx.readdir(fsx.rootIno).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort(), ['a', 'b'], 'the root lists a and b');
  });
}
