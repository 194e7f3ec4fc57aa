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
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairFreeSpace } from '../../src/repair/free-space-repair';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';
import { expectEveryCrashPointClean } from './replay-points';

t.test('free-space repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1212);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  const base = scratchPath('fsr-base.img');
  const logPath = scratchPath('fsr-write.log');
  t.teardown(() => { fs.rmSync(base, { force: true }); fs.rmSync(logPath, { force: true }); });
  {
    const pre = Rmapfs.open(image);
    for (let i = 0; i < 60; i++) pre.write(pre.create(pre.rootIno, `old${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(700 * (i + 1), i));
    pre.close();
  }
  fs.copyFileSync(image, base);
  const recorder = new WriteLogRecorder(logPath, fs.statSync(image).size);
  const fsx = Rmapfs.open(image, { interposers: [recorder] });
  const rng = new Rng(seed);
  const files: { ino: number; name: string }[] = [];
  let durable = 0;
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (files.length < 8 || r < 0.3) {
        const name = `f${rng.int(1e9)}`;
        files.push({ ino: fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino, name });
      } else if (r < 0.45) {
        const [f] = files.splice(rng.int(files.length), 1);
        fsx.unlink(fsx.rootIno, f!.name);
      } else {
        const k = rng.int(files.length);
        const f = files[k]!;
        const data = crypto.randomBytes(1 + rng.int(30000));
        fsx.truncate(f.ino, 0);
        fsx.write(f.ino, 0, data);
        if (rng.next() < 0.3) {
          fsx.fsync();
          recorder.mark(`fsync /${f.name} ${crypto.createHash('sha256').update(data).digest('hex')} ${data.length}`);
          durable++;
          files.splice(k, 1); // never changed again: its content stays what the mark says

        }
      }
    }
  };
  let repairs = 0;
  try {
    for (let round = 0; round < 6; round++) {
      work(10);
      const r = await repairFreeSpace(fsx, round % 2, { sliceMs: 1e9, maxUnits: 6, betweenSlices: () => work(2) });
      repairs++;
      t.ok(r.records > 0, `round ${round}: AG ${round % 2} rebuilt (${r.records} extents, pause ${r.commitPauseMs.toFixed(1)} ms)`);
      work(5);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(repairs, 6, 'six repairs');
  t.ok(durable > 0, `${durable} files marked durable`);
  expectEveryCrashPointClean(t, base, logPath, seed, 100);
  t.end();
});
