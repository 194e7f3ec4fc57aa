/**
 * Crash consistency of the online free-space repair: a write log records
 * the device while the free-space btrees of both AGs are rebuilt again and
 * again, with files created, written, removed and fsync'ed between the
 * repair's slices; every flush point and torn points inside each flush epoch
 * are replayed (test/crash/replay-check.ts) and must check clean, with the
 * files marked durable intact. The new btrees' blocks are written in place,
 * not logged: this is what shows they are on disk before the log makes
 * anything point at them.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairFreeSpace } from '../../src/repair/free-space-repair';
import { Rng, testSeed } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

t.test('free-space repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1212);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, 'fsr');
  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  const writers = new CrashWriters(fsx, recorder, new Rng(seed), img.ag1Dir);
  let repairs = 0;
  try {
    for (let round = 0; round < 6; round++) {
      writers.work(10);
      const r = await repairFreeSpace(fsx, round % 2, { sliceMs: 1e9, maxUnits: 6, betweenSlices: () => writers.work(2) });
      repairs++;
      t.ok(r.records > 0, `round ${round}: AG ${round % 2} rebuilt (${r.records} extents, pause ${r.commitPauseMs.toFixed(1)} ms)`);
      writers.work(5);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(repairs, 6, 'six repairs');
  t.ok(writers.durable > 0, `${writers.durable} files marked durable`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 100);
  t.end();
});
