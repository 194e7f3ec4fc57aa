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
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairInodeBtree } from '../../src/repair/inobt-repair';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';
import { expectEveryCrashPointClean } from './replay-points';

t.test('inode btree repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1212);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  const base = scratchPath('ibr-base.img');
  const logPath = scratchPath('ibr-write.log');
  t.teardown(() => { for (const f of [base, `${base}.dir`, logPath]) fs.rmSync(f, { force: true }); });
  {
    const pre = Rmapfs.open(image);
    for (let i = 0; i < 60; i++) pre.write(pre.create(pre.rootIno, `old${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(700 * (i + 1), i));
    // A directory in AG 1 (new directories spread over the AGs): the writers' files there get inodes in AG 1.
    let ag1Dir = '';
    for (let i = 0; ag1Dir === ''; i++) if (pre.fs.geo.inoAgno(pre.mkdir(pre.rootIno, `d${i}`, S_IFDIR | 0o755, 0, 0).ino) === 1) ag1Dir = `d${i}`;
    fs.writeFileSync(`${base}.dir`, ag1Dir);
    pre.close();
  }
  fs.copyFileSync(image, base);
  const recorder = new WriteLogRecorder(logPath, fs.statSync(image).size);
  const fsx = Rmapfs.open(image, { interposers: [recorder] });
  const rng = new Rng(seed);
  const dirs = [{ ino: fsx.rootIno, path: '' }];
  const ag1Dir = fs.readFileSync(`${base}.dir`, 'utf8');
  dirs.push({ ino: fsx.lookup(fsx.rootIno, ag1Dir), path: `${ag1Dir}/` });
  const files: { ino: number; name: string; dir: { ino: number; path: string } }[] = [];
  let durable = 0;
  let made = 0;
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (files.length < 8 || r < 0.3) {
        const name = `f${made++}`;
        const dir = dirs[rng.int(2)]!;
        files.push({ ino: fsx.create(dir.ino, name, S_IFREG | 0o644, 0, 0).ino, name, dir });
      } else if (r < 0.45) {
        const [f] = files.splice(rng.int(files.length), 1);
        fsx.unlink(f!.dir.ino, f!.name);
      } else {
        const k = rng.int(files.length);
        const f = files[k]!;
        const data = crypto.randomBytes(1 + rng.int(30000));
        fsx.truncate(f.ino, 0);
        fsx.write(f.ino, 0, data);
        if (rng.next() < 0.3) {
          fsx.fsync();
          recorder.mark(`fsync /${f.dir.path}${f.name} ${crypto.createHash('sha256').update(data).digest('hex')} ${data.length}`);
          durable++;
          files.splice(k, 1); // never changed again: its content stays what the mark says

        }
      }
    }
  };
  let repairs = 0;
  try {
    for (let round = 0; round < 10; round++) {
      work(10);
      const r = await repairInodeBtree(fsx, round % 2, { sliceMs: 1e9, maxUnits: 4, betweenSlices: () => work(2) });
      repairs++;
      t.ok(r.chunks > 0, `round ${round}: AG ${round % 2} rebuilt (${r.chunks} chunks, ${r.liveUpdates} live updates, pause ${r.commitPauseMs.toFixed(1)} ms)`);
      work(5);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(repairs, 10, 'ten repairs');
  t.ok(durable > 0, `${durable} files marked durable`);
  expectEveryCrashPointClean(t, base, logPath, seed, 500);
  t.end();
});
