/**
 * Crash consistency of the online inode btree repair: a write log records
 * the device while the inode btrees of both AGs are rebuilt again and again,
 * with files (and directories, so both AGs get inodes) created, written,
 * removed and fsync'ed between the repair's slices; every flush point and torn points inside each flush epoch
 * are replayed (test/crash/replay-check.ts) and must check clean, with the
 * files marked durable intact. The new btree's blocks are written in place,
 * not logged: this is what shows they are on disk before the log makes
 * anything point at them.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairInodeBtree } from '../../src/repair/inobt-repair';
import { Rng, testSeed } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

t.test('inode btree repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1212);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, 'ibr');
  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  const writers = new CrashWriters(fsx, recorder, new Rng(seed), img.ag1Dir);
  let repairs = 0;
  try {
    for (let round = 0; round < 10; round++) {
      writers.work(10);
      const r = await repairInodeBtree(fsx, round % 2, { sliceMs: 1e9, maxUnits: 4, betweenSlices: () => writers.work(2) });
      repairs++;
      t.ok(r.chunks > 0, `round ${round}: AG ${round % 2} rebuilt (${r.chunks} chunks, ${r.liveUpdates} live updates, pause ${r.commitPauseMs.toFixed(1)} ms)`);
      writers.work(5);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(repairs, 10, 'ten repairs');
  t.ok(writers.durable > 0, `${writers.durable} files marked durable`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 500);
  t.end();
});
