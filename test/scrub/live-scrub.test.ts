/**
 * The live scrub in slices: foreground operations run between its slices
 * (creating, writing, truncating, unlinking, renaming, xattrs) and it must
 * neither report damage that is not there nor miss damage that is -- it
 * checks the filesystem as it was when it began. And it must really yield.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { scrubLive, scrubLiveSliced } from '../../src/scrub/live-scrub';
import { checkerFor } from '../../src/fsck/table';
import { scrubAgSteps } from '../../src/scrub/ag-scrub';
import { scrubInodesSteps } from '../../src/scrub/inode-scrub';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import type { ScrubSteps } from '../../src/scrub/common';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { db } from '../cli/cli';
import { BlockMap } from '../../src/file/bmap';
import { encodeRmapKey, RMAP_KEY_SIZE } from '../../src/rmap/rmap-btree';

/** Foreground work on fsx: n random operations touching every structure the scrub checks. */
function workload(fsx: Rmapfs, seed: number): (n: number) => void {
  const rng = new Rng(testSeed(seed));
  const root = fsx.rootIno;
  const files: { dir: number; name: string; ino: number }[] = [];
  const dirs = [root];
  return (n) => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (r < 0.3 || files.length < 5) {
        const dir = dirs[rng.int(dirs.length)]!;
        const name = `f${rng.int(1e9)}`;
        files.push({ dir, name, ino: fsx.create(dir, name, S_IFREG | 0o644, 0, 0).ino });
      } else if (r < 0.35) {
        dirs.push(fsx.mkdir(root, `d${rng.int(1e9)}`, S_IFDIR | 0o755, 0, 0).ino);
      } else if (r < 0.65) {
        fsx.write(files[rng.int(files.length)]!.ino, rng.int(300000), crypto.randomBytes(1 + rng.int(20000)));
      } else if (r < 0.72) {
        fsx.setxattr(files[rng.int(files.length)]!.ino, `user.k${rng.int(4)}`, crypto.randomBytes(rng.int(6000)));
      } else if (r < 0.82) {
        fsx.truncate(files[rng.int(files.length)]!.ino, rng.int(60000));
      } else if (r < 0.9) {
        const f = files[rng.int(files.length)]!;
        const to = dirs[rng.int(dirs.length)]!;
        const name = `r${rng.int(1e9)}`;
        fsx.rename(f.dir, f.name, to, name);
        f.dir = to;
        f.name = name;
      } else {
        const f = files.splice(rng.int(files.length), 1)[0]!;
        fsx.unlink(f.dir, f.name);
      }
    }
  };
}

function lines(problems: { structure: string; agno: number; fsbno: number; message: string }[]): string[] {
  return problems.map(formatProblem);
}

t.test('no false problems while the filesystem changes between every two slices', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const work = workload(fsx, 71);
  work(600);
  t.same(lines(scrubLive(fsx.fs, checkerFor(null)).problems), [], 'clean before');
  // maxUnits 1: a pause at every step the checkers offer, with foreground work in each.
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 1, betweenSlices: () => work(2) });
  t.same(lines(r.problems), [], 'no problems');
  t.ok(r.inodesChecked, 'the files were checked too');
  t.ok(r.slices > 200, `${r.slices} slices`);
  t.equal(r.restarts, 0, 'the view held');
  t.ok(r.blocksKept > 0, `${r.blocksKept} changed blocks kept for the view`);
  t.equal(fsx.fs.cache.openSnapshots, 0, 'the snapshot is closed');
  t.same(lines(scrubLive(fsx.fs, checkerFor(null)).problems), [], 'clean after, too');
  for (const agno of [0, 1]) {
    const one = await scrubLiveSliced(fsx.fs, checkerFor(agno), { maxUnits: 1, betweenSlices: () => work(2) });
    t.same(lines(one.problems), [], `AG ${agno} alone`);
    t.equal(one.inodesChecked, false);
  }
});

t.test('control: the same interleaving on the live filesystem reports damage that is not there', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const work = workload(fsx, 71);
  work(600);
  const problems = new ProblemList();
  function* live(): ScrubSteps<void> {
    for (const ag of fsx.fs.alloc.ags) yield* scrubAgSteps(ag, fsx.fs.geo, problems);
    yield* scrubInodesSteps(fsx.fs, problems);
  }
  const steps = live();
  try {
    while (steps.next().done !== true) work(2);
  } catch (e) {
    problems.add('scrub', -1, -1, `failed: ${e instanceof Error ? e.message : String(e)}`);
  }
  t.ok(problems.count > 0, `without the frozen view: ${problems.count} false problems, e.g. ${lines(problems.problems.slice(0, 1)).join('')}`);
  t.end();
});

t.test('real damage is found, exactly as a scrub in one go finds it, with work going on', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const static1 = fsx.create(fsx.rootIno, 'static', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(static1, 0, crypto.randomBytes(3 * 4096));
  workload(fsx, 5)(100);
  // Where the static file's rmap record sits: AG, leaf and index.
  const ext = new BlockMap(fsx.inodes.get(static1), fsx.fs.alloc, fsx.fs.geo).extents()[0]!;
  const agno = fsx.fs.geo.agnoOf(ext.fsbno);
  const key = Buffer.alloc(RMAP_KEY_SIZE);
  encodeRmapKey(fsx.fs.geo.agbnoOf(ext.fsbno), static1, 0, 0, key);
  const cur = fsx.fs.alloc.ag(agno).rmap.cursor();
  t.ok(cur.lookup(key, 0, 'eq'), 'the record is there');
  const leaf = cur.ptrs[0]!;
  const index = cur.idx[0]!;
  fsx.close();
  // It now names another owner (the workload never touches the static file).
  await db(t, image, `set block ${agno} ${leaf} rec[${index}].owner ${static1 + 1}`);
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const want = lines(scrubLive(fsx.fs, checkerFor(null)).problems);
  t.ok(want.length > 0, `damage: ${want.join('; ')}`);
  const work = workload(fsx, 9);
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 1, betweenSlices: () => work(2) });
  t.same(lines(r.problems), want, 'the same problems, and nothing else');
  t.ok(r.slices > 100, `${r.slices} slices`);
});

t.test('the scrub yields: timers run while it works on a bigger filesystem', async (t) => {
  const image = scratchImage(t, { size: 256 << 20, agCount: 4 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  for (let i = 0; i < 3000; i++) fsx.write(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(100, i));
  let ticks = 0;
  const timer = setInterval(() => { ticks++; }, 0);
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null));
  clearInterval(timer);
  t.same(lines(r.problems), []);
  t.ok(r.slices > 1, `${r.slices} slices`);
  t.ok(ticks > 0, `a timer ran ${ticks} times during the scrub`);
  // A FUSE request waiting ends the slice at once.
  const waiting = await scrubLiveSliced(fsx.fs, checkerFor(null), { sliceMs: 1e6, probeUs: 0, foregroundWaiting: () => true });
  t.same(lines(waiting.problems), []);
  t.ok(waiting.yieldsToForeground > 100 && waiting.yieldsToForeground === waiting.slices - 1,
    `${waiting.yieldsToForeground} slices cut short for the foreground`);
});

t.test('a spoiled view starts over; the last resort is one go; a reason to stop stops it', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const work = workload(fsx, 13);
  work(300);
  // A block changed outside any transaction: a snapshot cannot know what it held.
  let spoils = 1;
  const spoil = (): void => {
    if (spoils-- <= 0) return;
    const b = fsx.fs.cache.read(0, null);
    fsx.fs.cache.markDirty(b);
  };
  let r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 1, betweenSlices: () => { spoil(); work(1); } });
  t.equal(r.restarts, 1, 'started over once');
  t.same(lines(r.problems), []);
  spoils = 1000;
  r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 1, maxRestarts: 1, betweenSlices: spoil });
  t.equal(r.restarts, 2, 'spoiled every time: then in one go');
  t.same(lines(r.problems), []);
  let n = 0;
  await t.rejects(scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 1, abortReason: () => (++n > 3 ? 'enough' : null) }),
    { code: 'ECANCELED', message: /scrub stopped: enough/ });
  t.equal(fsx.fs.cache.openSnapshots, 0, 'no snapshot left open');
});
