/**
 * Online repair of link counts and the orphanage: wrong counts (too high,
 * too low, a directory's) are set right; a file and a directory that no
 * directory names (their entry removed behind the namespace's back) go to
 * /lost+found, never freed; a file unlinked while open is left alone; and
 * while the directories are read in slices a writer creates, links, unlinks,
 * renames and removes in them -- the hook keeps the counts equal to a fresh
 * recount, and everything checks clean afterwards (offline too).
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapfsError } from '../../src/errors';
import { Directory } from '../../src/dir/dir';
import { FORK_EXTENTS, S_IFDIR, S_IFMT, S_IFREG } from '../../src/inode/inode-format';
import { LinkCountScan, repairLinkCounts } from '../../src/repair/nlinks-repair';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { InodeScanCursor } from '../../src/inode/iscan';
import { checkDevice } from '../../src/fsck/check';
import { formatProblem } from '../../src/scrub/common';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const FILE = S_IFREG | 0o644;
const DIR = 0o755;

function setNlink(fsx: Rmapfs, ino: number, nlink: number): void {
  fsx.fs.run(() => { fsx.inodes.get(ino).nlink = nlink; });
}

/** Removes a name without the namespace's bookkeeping: the inode keeps its count and loses its name. */
function dropEntry(fsx: Rmapfs, dirIno: number, name: string): void {
  fsx.fs.run(() => { new Directory(fsx.inodes.get(dirIno), fsx.fs.alloc, fsx.fs.geo).remove(Buffer.from(name)); });
}

const lines = (rs: readonly FileRepairResult[]): string[] => rs.map((r) => `inode ${r.ino}: ${r.changes.join('; ')}`).sort();

/** Closes fsx and checks the image offline: clean. */
function closeAndCheck(t: Test, fsx: Rmapfs, image: string): void {
  fsx.close();
  const r = checkDevice(image);
  t.same(r.result.problems.map(formatProblem), [], 'check of the closed image is clean');
  t.equal(r.status, 0);
}

t.test('wrong link counts are set to the names counted', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  const high = fsx.create(root, 'high', FILE, 0, 0).ino;
  const low = fsx.create(root, 'low', FILE, 0, 0).ino;
  fsx.link(low, root, 'low2');
  const d = fsx.mkdir(root, 'd', DIR, 0, 0).ino;
  fsx.mkdir(d, 'sub', DIR, 0, 0);
  fsx.create(d, 'f', FILE, 0, 0);
  t.same(check(fsx), [], 'clean before the damage');
  setNlink(fsx, high, 5);
  setNlink(fsx, low, 1);
  setNlink(fsx, d, 7);
  t.equal(check(fsx).filter((l) => /link count/.test(l)).length, 3, 'check sees three wrong counts');
  const results = await repairLinkCounts(fsx, { maxUnits: 3 });
  t.same(lines(results), [`inode ${d}: link count 7 -> 3`, `inode ${high}: link count 5 -> 1`,
    `inode ${low}: link count 1 -> 2; named by /low, /low2`].sort());
  t.ok(results.every((r) => r.type === 'nlinks' && r.commitPauseMs > 0));
  t.same(check(fsx), [], 'clean after the repair');
  t.same(await repairLinkCounts(fsx), [], 'a second repair finds nothing to change');
  closeAndCheck(t, fsx, image);
});

t.test('a file and a directory no directory names go to /lost+found', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  const file = fsx.create(root, 'lonely', FILE, 0, 0).ino;
  fsx.write(file, 0, Buffer.from('still here'));
  const d = fsx.mkdir(root, 'gone', DIR, 0, 0).ino;
  const inner = fsx.create(d, 'inner', FILE, 0, 0).ino;
  const sub = fsx.mkdir(d, 'sub', DIR, 0, 0).ino;
  dropEntry(fsx, root, 'lonely');
  dropEntry(fsx, root, 'gone');
  // The file, the directory and the two under it: one line for the four, listing them.
  t.same(check(fsx).filter((l) => /no directory entry names/.test(l)).map((l) => l.replace(/^.*?: (?=\d+ inodes)/, '')),
    [`4 inodes are in use but no directory entry names them: ${[file, d, inner, sub].sort((x, y) => x - y).join(', ')}`], 'check sees the nameless files in one line');
  const results = await repairLinkCounts(fsx);
  const lf = fsx.lookup(root, 'lost+found');
  t.same(lines(results), [
    `inode ${file}: moved to /lost+found/${file}`,
    `inode ${d}: moved to /lost+found/${d}`,
    // The root kept the count of a subdirectory whose name went (fixed first: /lost+found comes later).
    `inode ${root}: link count 3 -> 2`,
  ].sort());
  const st = fsx.stat(lf);
  t.equal(st.mode, S_IFDIR | 0o700, '/lost+found is 0700');
  t.same([st.uid, st.gid, st.nlink], [0, 0, 3], 'owned by root, one subdirectory');
  t.equal(fsx.lookup(lf, String(file)), file);
  t.equal(fsx.lookup(lf, String(d)), d);
  t.equal(fsx.read(file, 0, 100).toString(), 'still here', 'the file is not freed');
  t.equal(fsx.lookup(d, 'inner'), inner, 'the directory keeps its entries');
  t.equal(fsx.lookup(d, '..'), lf, 'its ".." is /lost+found');
  t.same([fsx.stat(file).nlink, fsx.stat(d).nlink], [1, 3]);
  t.same(check(fsx), [], 'clean after the repair');
  // Another nameless file: /lost+found is there already, and the name is taken.
  const again = fsx.create(root, String(file), FILE, 0, 0).ino;
  dropEntry(fsx, root, String(file));
  fsx.fs.run(() => {
    const lfDir = new Directory(fsx.inodes.get(lf), fsx.fs.alloc, fsx.fs.geo);
    lfDir.add(Buffer.from(String(again)), file, 8);
  });
  setNlink(fsx, file, 2);
  const second = await repairLinkCounts(fsx);
  t.same(lines(second), [`inode ${again}: moved to /lost+found/${again}.1`]);
  closeAndCheck(t, fsx, image);
});

t.test('an entry pointed at another file: its own file goes to /lost+found, the report names both', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const d = fsx.mkdir(fsx.rootIno, 'd', DIR, 0, 0).ino;
  const a = fsx.create(d, 'a', FILE, 0, 0).ino;
  const b = fsx.create(d, 'b', FILE, 0, 0).ino;
  fsx.write(a, 0, Buffer.from('content of a'));
  fsx.write(b, 0, Buffer.from('content of b'));
  // The entry's inode number damaged (as db's fuzz of rec.ino does): 'a' names b now.
  fsx.fs.run(() => { new Directory(fsx.inodes.get(d), fsx.fs.alloc, fsx.fs.geo).replace(Buffer.from('a'), b, 8); });
  const found = check(fsx);
  t.ok(found.some((l) => l.includes(`inode ${a}: is in use but no directory entry names it`)), 'check sees the nameless file');
  t.ok(found.some((l) => l.includes(`inode ${b}: link count 1, found 2`)), 'check sees the count');
  const results = await repairLinkCounts(fsx);
  t.same(lines(results), [
    `inode ${a}: moved to /lost+found/${a}`,
    `inode ${b}: link count 1 -> 2; named by /d/a, /d/b: if one of these names was another file's, that file is now /lost+found/${a}`,
  ]);
  t.equal(fsx.read(fsx.lookup(fsx.lookup(fsx.rootIno, 'lost+found'), String(a)), 0, 100).toString(), 'content of a', 'its content is reachable');
  t.same(check(fsx), [], 'clean after the repair');
  closeAndCheck(t, fsx, image);
});

t.test('a cycle of directories no path from the root reaches: its entry point goes to /lost+found', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const root = fsx.rootIno;
  const a = fsx.mkdir(root, 'a', DIR, 0, 0).ino;
  const b = fsx.mkdir(a, 'b', DIR, 0, 0).ino;
  const c = fsx.mkdir(b, 'c', DIR, 0, 0).ino;
  const file = fsx.create(c, 'f', FILE, 0, 0).ino;
  fsx.write(file, 0, Buffer.from('below the cycle'));
  // Behind the namespace's back: c names a (a cycle a -> b -> c -> a), and the root's name for a goes.
  fsx.fs.run(() => { new Directory(fsx.inodes.get(c), fsx.fs.alloc, fsx.fs.geo).add(Buffer.from('up'), a, 4); });
  dropEntry(fsx, root, 'a');
  t.ok(check(fsx).some((l) => l.includes(`4 inodes are in use but no directory entry names them: ${[a, b, c, file].sort((x, y) => x - y).join(', ')}`)),
    'check sees the cycle and the file below it as unreached');
  const results = await repairLinkCounts(fsx);
  const moved = results.filter((r) => r.changes.some((l) => l.startsWith('moved to')));
  t.same(moved.map((r) => r.changes[0]), [`moved to /lost+found/${a} (no path from the root reached it: a cycle of directories, named 'up' in directory ${c})`],
    'the cycle is entered at one directory, moved out of the cycle into /lost+found');
  const lf = fsx.lookup(root, 'lost+found');
  t.equal(fsx.lookup(lf, String(a)), a);
  t.equal(fsx.lookup(a, '..'), lf, "its '..' is /lost+found");
  t.equal(fsx.read(fsx.lookup(fsx.lookup(fsx.lookup(a, 'b'), 'c'), 'f'), 0, 100).toString(), 'below the cycle', 'what hung below it is reached, content and all');
  t.same(check(fsx), [], 'clean after the repair');
  t.same(await repairLinkCounts(fsx), [], 'a second repair finds nothing to change');
  closeAndCheck(t, fsx, image);
});

t.test('a file unlinked while open is left alone', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const ino = fsx.create(fsx.rootIno, 'open', FILE, 0, 0).ino;
  fsx.write(ino, 0, Buffer.alloc(5000, 1));
  const open = new Set([ino]);
  fsx.setInUse((i) => open.has(i));
  fsx.unlink(fsx.rootIno, 'open');
  t.same(await repairLinkCounts(fsx), [], 'nothing to change');
  t.equal(fsx.stat(ino).nlink, 0);
  t.equal(fsx.orphanCount, 1, 'still an orphan');
  t.throws(() => fsx.lookup(fsx.rootIno, 'lost+found'), { code: 'ENOENT' }, 'no /lost+found made');
  open.delete(ino);
  fsx.releaseOrphan(ino);
  closeAndCheck(t, fsx, image);
});

t.test('a directory that cannot be read stops the repair before any change', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const file = fsx.create(fsx.rootIno, 'f', FILE, 0, 0).ino;
  const d = fsx.mkdir(fsx.rootIno, 'd', DIR, 0, 0).ino;
  fsx.create(d, 'inner', FILE, 0, 0);
  setNlink(fsx, file, 3);
  fsx.fs.run(() => { fsx.inodes.get(d).format = FORK_EXTENTS; });
  await t.rejects(repairLinkCounts(fsx), { code: 'EFSCORRUPTED', message: new RegExp(`directory ${d} .*repair directories first`) });
  t.equal(fsx.stat(file).nlink, 3, 'no count changed');
  t.throws(() => fsx.lookup(fsx.rootIno, 'lost+found'), { code: 'ENOENT' }, 'nothing adopted');
});

/** Random namespace changes (those the filesystem refuses are skipped): the writer between the scan's slices. */
function writer(fsx: Rmapfs, rng: Rng, dirs: number[]): (n: number) => void {
  const name = (): string => `n${rng.int(40)}`;
  const dir = (): number => dirs[rng.int(dirs.length)]!;
  return (n) => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      try {
        if (r < 0.3) fsx.create(dir(), name(), FILE, 0, 0);
        else if (r < 0.4) {
          const from = dir();
          const src = fsx.lookup(from, name());
          if ((fsx.stat(src).mode & S_IFMT) !== S_IFDIR) fsx.link(src, dir(), name());
        } else if (r < 0.55) fsx.unlink(dir(), name());
        else if (r < 0.75) fsx.rename(dir(), name(), dir(), name());
        else if (r < 0.85) dirs.push(fsx.mkdir(dir(), name(), DIR, 0, 0).ino);
        else fsx.rmdir(dir(), name());
      } catch (e) {
        if (!(e instanceof RmapfsError)) throw e;
      }
    }
  };
}

/** Every inode in use, with what the scan counted for it. */
function countsOf(fsx: Rmapfs, scan: LinkCountScan): string[] {
  const out: string[] = [];
  const iscan = new InodeScanCursor(fsx.fs.alloc, fsx.fs.geo);
  for (let ino = iscan.next(-1); ino !== null; ino = iscan.next(ino)) {
    out.push(`${ino}: ${scan.counts.nameCount(ino)} names, ${scan.counts.subdirCount(ino)} subdirs`);
  }
  return out;
}

t.test('names changed between the slices are counted as a fresh scan counts them', async (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const rng = new Rng(seed);
  const dirs = [fsx.rootIno];
  for (let i = 0; i < 4; i++) dirs.push(fsx.mkdir(fsx.rootIno, `d${i}`, DIR, 0, 0).ino);
  // A big directory: read in many units, changed while it is half read.
  const big = fsx.mkdir(fsx.rootIno, 'big', DIR, 0, 0).ino;
  for (let i = 0; i < 400; i++) fsx.create(big, `b${i}`, FILE, 0, 0);
  dirs.push(big, big, big);
  const work = writer(fsx, rng, dirs);
  work(200);
  const scan = new LinkCountScan(fsx);
  scan.open();
  try {
    await scan.collect({ maxUnits: 2, betweenSlices: () => work(3) });
    t.ok(scan.stats.liveUpdates > 50, `${scan.stats.liveUpdates} live updates in ${scan.stats.slices} slices`);
    const fresh = new LinkCountScan(fsx);
    await fresh.collect({});
    t.same(countsOf(fsx, scan), countsOf(fsx, fresh), 'the counts kept current equal a fresh recount');
    work(50);
    const later = new LinkCountScan(fsx);
    await later.collect({});
    t.same(countsOf(fsx, scan), countsOf(fsx, later), 'and stay current after the scan');
  } finally {
    scan.close();
  }
  t.end();
});

t.test('the repair with a writer between its slices leaves every count right', async (t) => {
  const seed = testSeed(1314);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const rng = new Rng(seed);
  const dirs = [fsx.rootIno];
  for (let i = 0; i < 4; i++) dirs.push(fsx.mkdir(fsx.rootIno, `d${i}`, DIR, 0, 0).ino);
  const work = writer(fsx, rng, dirs);
  work(300);
  const damaged = fsx.create(dirs[1]!, 'damaged', FILE, 0, 0).ino;
  setNlink(fsx, damaged, 9);
  setNlink(fsx, dirs[2]!, 1);
  const results = await repairLinkCounts(fsx, { maxUnits: 2, betweenSlices: () => work(3) });
  t.ok(results.some((r) => r.ino === damaged), 'the damaged file was fixed');
  t.same(check(fsx), [], 'clean after the repair');
  closeAndCheck(t, fsx, image);
});
