/**
 * Crash consistency of the rebuild of an AG whose rmap AND free-space
 * btrees are damaged (rmap-repair.ts, RepairOptions.freeSpaceToo: the
 * offline repair's way, all three trees at once from the scan). A write
 * log records the device from the damaged image on: the rebuild, then
 * writers creating, rewriting and removing files (some fsync'ed) across
 * checkpoints, so that the old trees' blocks -- free after the commit --
 * get reused. Every flush point and torn points must check clean once the
 * commit is durable ("repaired 1"), and before it show only the damage.
 * The new trees are written in place over blocks the damaged trees'
 * unreadable parts may have held: this is what shows no crash state sees a
 * new tree before it is whole, nor an old tree written over while live.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { slotOffset } from '../../src/format/ag-header';
import { repairRmaps } from '../../src/repair/rmap-repair';
import { Rng, testSeed } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

/** Random bytes over whole blocks of both images (the one opened and the write log's base). */
function scribble(images: readonly string[], fsbnos: readonly number[], rng: Rng): void {
  for (const fsbno of fsbnos) {
    const junk = Buffer.alloc(BLOCK_SIZE);
    for (let i = 0; i < junk.length; i++) junk[i] = rng.int(256);
    for (const image of images) {
      const fd = fs.openSync(image, 'r+');
      fs.writeSync(fd, junk, 0, junk.length, fsbno * BLOCK_SIZE);
      fs.closeSync(fd);
    }
  }
}

t.test('an AG whose rmap and bnobt are damaged rebuilt with writers after: every crash point checks clean', async (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, 'rfs');
  const rng = new Rng(seed);
  const pre = Rmapfs.open(img.image, { readOnly: true });
  const ag = pre.fs.alloc.ag(1);
  const h = ag.header().data;
  const damaged = [ag.start + h.readUInt32BE(slotOffset('rmap')), ag.start + h.readUInt32BE(slotOffset('bno'))];
  pre.close();
  scribble([img.image, img.base], damaged, rng);

  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  // Until the commit is durable (from the open's first write on) the check may show the damage itself and
  // nothing else: a new tree seen before it is whole, or an old one written over, is another message.
  recorder.mark(`damaged 1:rmapbt,bnobt matching ^(rmap|bnobt) btree block (${damaged.join('|')}): bad crc32c$`);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  let writers: CrashWriters | null = null;
  try {
    const [r] = await repairRmaps(fsx, [1], { freeSpaceToo: [1], unmounted: true, measureHeap: false });
    t.ok(r !== undefined && r.freeSpace !== undefined && r.freeSpace.records > 0,
      `AG 1 rebuilt: ${r?.records} rmap records, ${r?.freeSpace?.records} free extents, old blocks ${r?.oldBlocks}+${r?.freeSpace?.oldBlocks}`);
    fsx.fsync();
    recorder.mark('repaired 1');
    writers = new CrashWriters(fsx, recorder, rng, img.ag1Dir);
    for (let round = 0; round < 4; round++) {
      writers.work(15);
      fsx.fsync();
      fsx.fs.checkpoint();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.ok(writers !== null && writers.durable > 0, `${writers?.durable} files marked durable`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 40);
  t.end();
});
