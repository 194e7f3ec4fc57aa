/**
 * Crash consistency of the online link-count repair and the orphanage: one
 * write log over ten rounds, each of which damages link counts in AG 0 on
 * the live filesystem (a count too high, a file and a directory holding a
 * file that no directory names, so the root's count is one too high too),
 * announced by the log mark "damaged 0:nlinks", then repairs them -- each
 * count in its own transaction, /lost+found made once and the nameless
 * inodes linked into it -- with a writer creating, linking, renaming,
 * removing, writing and fsync'ing between the scan's slices; the fixes are
 * forced to the log, then "repaired 0". Every flush point and torn points
 * inside each flush epoch are replayed (test/crash/replay-check.ts): in a
 * window a point may show that damage and nothing else; everywhere else it
 * checks clean, and the files marked durable are intact.
 */
import t from 'tap';
import * as fs from 'fs';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapfsError } from '../../src/errors';
import { Directory } from '../../src/dir/dir';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairLinkCounts } from '../../src/repair/nlinks-repair';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { crashImage } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

const FILE = S_IFREG | 0o644;

/** Link-count damage in AG 0 on the live filesystem: a count too high, a nameless file, a nameless directory holding a file. */
function damage(fsx: Rmapfs, round: number): void {
  const root = fsx.rootIno;
  const geo = fsx.fs.geo;
  const inAg0 = (make: (name: string) => number, prefix: string): { ino: number; name: string } => {
    for (let i = 0; ; i++) {
      const name = `${prefix}${round}.${i}`;
      const ino = make(name);
      if (geo.inoAgno(ino) === 0) return { ino, name };
    }
  };
  const high = inAg0((name) => fsx.create(root, name, FILE, 0, 0).ino, 'high');
  fsx.write(high.ino, 0, Buffer.alloc(3000, 7));
  const lonely = inAg0((name) => fsx.create(root, name, FILE, 0, 0).ino, 'lonely');
  fsx.write(lonely.ino, 0, Buffer.alloc(5000, 8));
  const dir = inAg0((name) => fsx.mkdir(root, name, 0o755, 0, 0).ino, 'gone');
  fsx.create(dir.ino, 'inner', FILE, 0, 0);
  fsx.fs.run(() => {
    fsx.inodes.get(high.ino).nlink = 4;
    const r = new Directory(fsx.inodes.get(root), fsx.fs.alloc, fsx.fs.geo);
    r.remove(Buffer.from(lonely.name));
    r.remove(Buffer.from(dir.name));
  });
}

t.test('link-count repairs with writers running: every crash point checks clean', async (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const { image, base, logPath, ag1Dir } = crashImage(t, 'nlr');
  const recorder = new WriteLogRecorder(logPath, fs.statSync(image).size);
  const fsx = Rmapfs.open(image, { interposers: [recorder] });
  const rng = new Rng(seed);
  const root = fsx.rootIno;
  const dirs = [{ ino: root, path: '' }, { ino: fsx.lookup(root, ag1Dir), path: `${ag1Dir}/` }];
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
  let adopted = 0;
  try {
    for (let round = 0; round < 10; round++) {
      work(8);
      // Announced before the transaction that makes it: from here to "repaired 0" a point may show it.
      recorder.mark('damaged 0:nlinks');
      damage(fsx, round);
      const results = await repairLinkCounts(fsx, { sliceMs: 1e9, maxUnits: 10, betweenSlices: () => work(2) });
      adopted += results.filter((r) => r.changes[0]!.startsWith('moved to /lost+found/')).length;
      t.ok(results.some((r) => r.ino === root), `round ${round}: ${results.length} inodes fixed, the root's count among them`);
      // The fixes are durable before the mark: after it, every point must be clean.
      fsx.fsync();
      recorder.mark('repaired 0');
      work(4);
      fsx.fsync();
    }
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(adopted, 20, 'two inodes adopted each round');
  t.ok(durable > 0, `${durable} files marked durable`);
  expectEveryCrashPointClean(t, base, logPath, seed, 500);
  t.end();
});
