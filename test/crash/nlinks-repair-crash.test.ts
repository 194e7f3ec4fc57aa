/**
 * Crash consistency of the online link-count repair and the orphanage: in
 * each of three episodes (on copies of one small filesystem) the image starts with link-count damage in AG 0 (a
 * count too high, a file and a directory with a file in it that no
 * directory names, the root's count one too high), and a write log records
 * the repair fixing it -- each count in its own transaction, /lost+found
 * made and the nameless inodes linked into it -- then two more repairs,
 * with a writer creating, linking, renaming, removing, writing and fsync'ing
 * between the scan's slices. Every flush point and torn points inside each
 * flush epoch are replayed (test/crash/replay-check.ts): until the mark
 * "repaired 0" a point may show that damage and nothing else; after it
 * every point checks clean, and the files marked durable are intact.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapfsError } from '../../src/errors';
import { Directory } from '../../src/dir/dir';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairLinkCounts } from '../../src/repair/nlinks-repair';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';
import { expectEveryCrashPointClean } from './replay-points';

const FILE = S_IFREG | 0o644;

/** Link-count damage in AG 0: a count too high, a nameless file, a nameless directory holding a file. */
function damage(image: string, episode: number): void {
  const fsx = Rmapfs.open(image);
  try {
    const root = fsx.rootIno;
    const geo = fsx.fs.geo;
    const inAg0 = (make: (i: number) => number): number => {
      for (let i = 0; ; i++) {
        const ino = make(i);
        if (geo.inoAgno(ino) === 0) return ino;
      }
    };
    const high = inAg0((i) => fsx.create(root, `high${episode}.${i}`, FILE, 0, 0).ino);
    fsx.write(high, 0, Buffer.alloc(3000, 7));
    const lonely = inAg0((i) => fsx.create(root, `lonely${episode}.${i}`, FILE, 0, 0).ino);
    fsx.write(lonely, 0, Buffer.alloc(5000, 8));
    const lonelyName = [...fsx.readdir(root)].find((e) => e.ino === lonely)!.name;
    const dir = inAg0((i) => fsx.mkdir(root, `gone${episode}.${i}`, 0o755, 0, 0).ino);
    const dirName = [...fsx.readdir(root)].find((e) => e.ino === dir)!.name;
    fsx.create(dir, 'inner', FILE, 0, 0);
    fsx.fs.run(() => {
      fsx.inodes.get(high).nlink = 4;
      const r = new Directory(fsx.inodes.get(root), fsx.fs.alloc, fsx.fs.geo);
      r.remove(Buffer.from(lonelyName));
      r.remove(Buffer.from(dirName));
    });
  } finally {
    fsx.close();
  }
}

/** One episode on a copy of `template`: the damage, the log of three repairs, the replay. Returns the points replayed. */
async function episode(t: Test, template: string, episodeNo: number, seed: number): Promise<number> {
  const image = scratchPath(`nlr-fs${episodeNo}.img`);
  const base = scratchPath(`nlr-base${episodeNo}.img`);
  const logPath = scratchPath(`nlr-write${episodeNo}.log`);
  t.teardown(() => { for (const f of [image, base, logPath]) fs.rmSync(f, { force: true }); });
  fs.copyFileSync(template, image);
  damage(image, episodeNo);
  fs.copyFileSync(image, base);
  const recorder = new WriteLogRecorder(logPath, fs.statSync(image).size);
  const fsx = Rmapfs.open(image, { interposers: [recorder] });
  const rng = new Rng(seed + episodeNo);
  const root = fsx.rootIno;
  const dirs = [{ ino: root, path: '' }];
  for (let i = 0; i < 2; i++) {
    const name = `w${episodeNo}.${i}`;
    dirs.push({ ino: fsx.mkdir(root, name, 0o755, 0, 0).ino, path: `${name}/` });
  }
  const files: { ino: number; name: string; dir: { ino: number; path: string } }[] = [];
  let made = 0;
  let durable = 0;
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      const dir = dirs[rng.int(dirs.length)]!;
      try {
        if (files.length < 6 || r < 0.25) {
          const name = `f${made++}`;
          files.push({ ino: fsx.create(dir.ino, name, FILE, 0, 0).ino, name, dir });
        } else if (r < 0.35) {
          const f = files[rng.int(files.length)]!;
          const name = `l${made++}`;
          fsx.link(f.ino, dir.ino, name);
          files.push({ ino: f.ino, name, dir });
        } else if (r < 0.5) {
          const [f] = files.splice(rng.int(files.length), 1);
          fsx.unlink(f!.dir.ino, f!.name);
        } else if (r < 0.62) {
          const f = files[rng.int(files.length)]!;
          const name = `r${made++}`;
          fsx.rename(f.dir.ino, f.name, dir.ino, name);
          f.dir = dir;
          f.name = name;
        } else if (r < 0.7) {
          const name = `d${made++}`;
          fsx.mkdir(dir.ino, name, 0o755, 0, 0);
          if (rng.next() < 0.5) fsx.rmdir(dir.ino, name);
        } else {
          const f = files[rng.int(files.length)]!;
          const data = crypto.randomBytes(1 + rng.int(20000));
          fsx.truncate(f.ino, 0);
          fsx.write(f.ino, 0, data);
          if (rng.next() < 0.3) {
            fsx.fsync();
            recorder.mark(`fsync /${f.dir.path}${f.name} ${crypto.createHash('sha256').update(data).digest('hex')} ${data.length}`);
            durable++;
            // Never changed again, by any of its names: its content stays what the mark says.
            for (let k = files.length - 1; k >= 0; k--) if (files[k]!.ino === f.ino) files.splice(k, 1);
          }
        }
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
      }
    }
  };
  try {
    for (let round = 0; round < 3; round++) {
      work(8);
      const results = await repairLinkCounts(fsx, { sliceMs: 1e9, maxUnits: 3, betweenSlices: () => work(2) });
      if (round === 0) {
        t.equal(results.filter((r) => r.changes[0]!.startsWith('moved to /lost+found/')).length, 2, `episode ${episodeNo}: two inodes adopted`);
        t.ok(results.some((r) => r.ino === root), 'the root\'s count fixed');
        // The fixes are durable before the mark: after it, every point must be clean.
        fsx.fsync();
        recorder.mark('repaired 0');
      } else {
        t.same(results.map((r) => r.changes.join('; ')), [], `episode ${episodeNo} round ${round}: nothing left to fix`);
      }
      work(4);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.ok(durable > 0, `${durable} files marked durable`);
  return expectEveryCrashPointClean(t, base, logPath, seed + episodeNo, 150, '0:nlinks');
}

t.test('link-count repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  {
    const pre = Rmapfs.open(image);
    for (let i = 0; i < 30; i++) pre.write(pre.create(pre.rootIno, `old${i}`, FILE, 0, 0).ino, 0, Buffer.alloc(500 * (i + 1), i));
    pre.close();
  }
  let points = 0;
  for (let e = 0; e < 3; e++) points += await episode(t, image, e, seed);
  t.ok(points >= 500, `${points} crash points in all`);
  t.end();
});
