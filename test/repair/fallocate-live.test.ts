/**
 * Live repairs stay correct while every fallocate mode changes files between
 * their slices: the rmap repair (its in-memory copy kept current by the rmap
 * hooks, which hear a conversion as an unmap in the old state and a map in
 * the new) and the block map repair of a file being preallocated, punched,
 * zeroed and written into (the unwritten state carried from the rmap). After
 * each: a clean check (it compares the unwritten bit between block map and
 * rmap) and every file's bytes as a model of them says.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairRmap } from '../../src/repair/rmap-repair';
import { repairBlockMap } from '../../src/repair/bmap-repair';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { FALLOC_FL_KEEP_SIZE } from '../../src/file/fallocate';
import { BlockMap } from '../../src/file/bmap';
import { Rng, testSeed } from '../lib/rng';
import { FileModel } from '../lib/file-model';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const B = BLOCK_SIZE;
t.test('an rmap rebuild while files are preallocated, punched, zeroed and written between its slices', async (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(1515));
  const files = new FileModel(fsx, rng);
  const inos: number[] = [];
  for (let i = 0; i < 80; i++) inos.push(files.create(`f${i}`)); // many inodes: many slices
  for (let i = 0; i < 200; i++) files.randomChange(inos[rng.int(inos.length)]!);
  t.same(check(fsx), [], 'clean before');
  let slices = 0;
  let unwritten = 0;
  const between = (): void => {
    slices++;
    for (let i = 0; i < 5; i++) files.randomChange(inos[rng.int(inos.length)]!);
  };
  for (const agno of [0, 1]) {
    const r = await repairRmap(fsx, agno, { sliceInodes: 4, sliceMs: 1e9, betweenSlices: between });
    t.ok(r.records > 0, `AG ${agno}: ${r.records} records rebuilt`);
  }
  for (const ino of inos) {
    unwritten += new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).extents().filter((e) => e.unwritten).length;
  }
  t.ok(slices > 20, `${slices} slices with changes between them`);
  t.ok(unwritten > 20, `${unwritten} unwritten extents in the end`);
  t.same(check(fsx), [], 'clean after both repairs');
  files.unchanged(t);
});

t.test('a block map rebuild of a file fallocated between its slices keeps every unwritten state', async (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 32 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(1516));
  const files = new FileModel(fsx, rng);
  const others = [files.create('a'), files.create('b')];
  const ino = files.create('big');
  // Interleaved with the others on disk: many extents, a btree.
  for (let i = 0; i < 60; i++) {
    files.fallocate(ino, i % 2 === 0 ? 0 : FALLOC_FL_KEEP_SIZE, 2 * i * B, B);
    if (i % 3 === 0) files.write(ino, 2 * i * B + 10, 20);
    files.write(others[i % 2]!, i * B, B);
  }
  t.ok(fsx.inodes.get(ino).nextents > 12, `${fsx.inodes.get(ino).nextents} extents`);
  let slices = 0;
  const between = (): void => {
    slices++;
    files.randomChange(ino);
    files.write(others[slices % 2]!, rng.int(80) * B, 100);
  };
  const r = await repairBlockMap(fsx, ino, { sliceMs: 1e9, maxUnits: 10, betweenSlices: between });
  t.equal(r.error, undefined, 'no error');
  t.ok(slices > 5, `${slices} slices with changes between them`);
  t.ok(r.changes[0]?.startsWith('block map rebuilt from the rmap'), r.changes.join('; '));
  t.same(check(fsx), [], 'clean after the repair');
  files.unchanged(t);
  for (let i = 0; i < 100; i++) files.randomChange(ino);
  t.same(check(fsx), [], 'clean after more changes on the rebuilt map');
  files.unchanged(t);
});
