/**
 * Rmapfs.rename with noReplace (RENAME_NOREPLACE) and Rmapfs.exchange
 * (RENAME_EXCHANGE): the names, the directories' '..' and link counts, the
 * ctimes, what is refused (and that a refusal changes nothing), and the
 * offline check clean after each, also once the image is closed and opened
 * again.
 */
import t, { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** Names of a directory (no '.'/'..') -> inode numbers, sorted by name. */
function entries(fsx: Rmapfs, dir: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const e of fsx.readdir(dir).filter((e) => e.name !== '.' && e.name !== '..').sort((x, y) => (x.name < y.name ? -1 : 1))) out[e.name] = e.ino;
  return out;
}

/** ctime as one comparable number (ns). */
function ctimeOf(fsx: Rmapfs, ino: number): bigint {
  const c = fsx.stat(ino).ctime;
  return BigInt(c.sec) * 1_000_000_000n + BigInt(c.nsec);
}

/** Waits until the clock has moved on, so that a ctime set now differs from one set before. */
function tick(): void {
  const until = Date.now() + 2;
  while (Date.now() < until) { /* the clock's granularity is coarser than a transaction */ }
}

function open(t: Test): { image: string; fsx: () => Rmapfs; reopen: () => void } {
  const image = scratchImage(t, { size: 16 << 20 });
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  return { image, fsx: () => fsx, reopen: () => { fsx.close(); fsx = Rmapfs.open(image); } };
}

t.test('RENAME_NOREPLACE: EEXIST onto any existing name, a plain rename otherwise', (t) => {
  const { fsx: f, reopen } = open(t);
  const fsx = f();
  const root = fsx.rootIno;
  const a = fsx.create(root, 'a', S_IFREG | 0o644, 0, 0).ino;
  const b = fsx.create(root, 'b', S_IFREG | 0o644, 0, 0).ino;
  fsx.link(a, root, 'a2');
  const sub = fsx.mkdir(root, 'sub', 0o755, 0, 0).ino;
  t.throws(() => fsx.rename(root, 'a', root, 'b', { noReplace: true }), { code: 'EEXIST' }, 'onto another file: EEXIST');
  t.throws(() => fsx.rename(root, 'a', root, 'a2', { noReplace: true }), { code: 'EEXIST' }, 'onto a link to the same file: EEXIST too');
  t.throws(() => fsx.rename(root, 'sub', root, 'a', { noReplace: true }), { code: 'EEXIST' }, 'a directory onto a file: EEXIST first');
  t.throws(() => fsx.rename(root, 'nothing', root, 'c', { noReplace: true }), { code: 'ENOENT' }, 'no source: ENOENT');
  t.same(entries(fsx, root), { a, a2: a, b, sub }, 'nothing changed');
  fsx.rename(root, 'a', sub, 'moved', { noReplace: true });
  t.same(entries(fsx, root), { a2: a, b, sub }, 'renamed away from the root');
  t.same(entries(fsx, sub), { moved: a }, 'into sub');
  const sub2 = fsx.mkdir(root, 'sub2', 0o755, 0, 0).ino;
  fsx.rename(root, 'sub2', sub, 'sub2', { noReplace: true });
  t.equal(fsx.stat(root).nlink, 3, 'a directory moved: the root lost a link');
  t.equal(fsx.stat(sub).nlink, 3, 'and sub gained one');
  t.equal(fsx.lookup(sub2, '..'), sub, "its '..' follows");
  t.same(check(fsx), [], 'check clean');
  reopen();
  t.same(check(f()), [], 'check clean after a reopen');
  t.equal(f().lookup(sub, 'moved'), a, 'the rename is on disk');
  t.end();
});

t.test('RENAME_EXCHANGE in one directory: the names swap, nothing else moves', (t) => {
  const { fsx: f, reopen } = open(t);
  const fsx = f();
  const root = fsx.rootIno;
  const a = fsx.create(root, 'a', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(a, 0, Buffer.from('A'));
  const d = fsx.mkdir(root, 'd', 0o755, 0, 0).ino;
  const rootLinks = fsx.stat(root).nlink;
  const before = { a: ctimeOf(fsx, a), d: ctimeOf(fsx, d), root: ctimeOf(fsx, root) };
  tick();
  fsx.exchange(root, 'a', root, 'd');
  t.same(entries(fsx, root), { a: d, d: a }, 'a names the directory, d the file');
  t.equal(fsx.stat(fsx.lookup(root, 'a')).mode & S_IFDIR, S_IFDIR, "the entry's type follows the inode");
  t.equal(fsx.read(fsx.lookup(root, 'd'), 0, 10).toString(), 'A', 'd reads as the file');
  t.equal(fsx.stat(root).nlink, rootLinks, 'the parent keeps its link count');
  t.equal(fsx.lookup(d, '..'), root, "the directory's '..' unchanged");
  t.ok(ctimeOf(fsx, a) > before.a && ctimeOf(fsx, d) > before.d, 'both inodes have a new ctime');
  t.ok(ctimeOf(fsx, root) > before.root, 'and the directory too');
  fsx.link(a, root, 'hard');
  fsx.exchange(root, 'd', root, 'hard');
  t.same(entries(fsx, root), { a: d, d: a, hard: a }, 'two links to one file: nothing to swap');
  t.same(check(fsx), [], 'check clean');
  reopen();
  t.same(entries(f(), root), { a: d, d: a, hard: a }, 'the swap is on disk');
  t.same(check(f()), [], 'check clean after a reopen');
  t.end();
});

t.test("RENAME_EXCHANGE across directories: '..' and link counts follow each directory", (t) => {
  const { fsx: f, reopen } = open(t);
  const fsx = f();
  const root = fsx.rootIno;
  const p = fsx.mkdir(root, 'p', 0o755, 0, 0).ino;
  const q = fsx.mkdir(root, 'q', 0o755, 0, 0).ino;
  const dp = fsx.mkdir(p, 'dir', 0o755, 0, 0).ino;
  fsx.create(dp, 'inside', S_IFREG | 0o644, 0, 0);
  const fq = fsx.create(q, 'file', S_IFREG | 0o644, 0, 0).ino;
  const dq = fsx.mkdir(q, 'dir2', 0o755, 0, 0).ino;
  t.same([fsx.stat(p).nlink, fsx.stat(q).nlink], [3, 3], 'p and q each hold one directory');

  // A directory for a file: the directory changes parent and takes its link along.
  fsx.exchange(p, 'dir', q, 'file');
  t.same(entries(fsx, p), { dir: fq }, 'p/dir is the file');
  t.same(entries(fsx, q), { dir2: dq, file: dp }, 'q/file is the directory');
  t.equal(fsx.lookup(dp, '..'), q, "the directory's '..' is q");
  t.same([fsx.stat(p).nlink, fsx.stat(q).nlink], [2, 4], 'p lost a link, q gained one');
  t.same(check(fsx), [], 'check clean');

  // Two directories across parents: each '..' follows, the counts stay.
  fsx.mkdir(p, 'dir3', 0o755, 0, 0);
  const d3 = fsx.lookup(p, 'dir3');
  fsx.exchange(p, 'dir3', q, 'dir2');
  t.equal(fsx.lookup(p, 'dir3'), dq, 'p/dir3 is the old q/dir2');
  t.equal(fsx.lookup(q, 'dir2'), d3, 'q/dir2 the old p/dir3');
  t.same([fsx.lookup(dq, '..'), fsx.lookup(d3, '..')], [p, q], "both '..' follow");
  t.same([fsx.stat(p).nlink, fsx.stat(q).nlink], [3, 4], 'both counts as they were');
  t.same(check(fsx), [], 'check clean');
  reopen();
  t.same(check(f()), [], 'check clean after a reopen');
  t.equal(f().lookup(dp, 'inside') > 0, true, 'the moved directory keeps its contents');
  t.end();
});

t.test('RENAME_EXCHANGE refusals change nothing', (t) => {
  const { fsx: f } = open(t);
  const fsx = f();
  const root = fsx.rootIno;
  const top = fsx.mkdir(root, 'top', 0o755, 0, 0).ino;
  const mid = fsx.mkdir(top, 'mid', 0o755, 0, 0).ino;
  const leaf = fsx.create(mid, 'leaf', S_IFREG | 0o644, 0, 0).ino;
  const other = fsx.create(root, 'other', S_IFREG | 0o644, 0, 0).ino;
  const snapshot = (): unknown => [entries(fsx, root), entries(fsx, top), entries(fsx, mid), fsx.stat(root).nlink, fsx.stat(top).nlink, fsx.stat(mid).nlink];
  const was = snapshot();
  t.throws(() => fsx.exchange(root, 'other', root, 'missing'), { code: 'ENOENT' }, 'no target: ENOENT');
  t.throws(() => fsx.exchange(root, 'missing', root, 'other'), { code: 'ENOENT' }, 'no source: ENOENT');
  t.throws(() => fsx.exchange(root, 'top', mid, 'leaf'), { code: 'EINVAL' }, 'a directory into its own subtree: EINVAL');
  t.throws(() => fsx.exchange(mid, 'leaf', root, 'top'), { code: 'EINVAL' }, 'the same, named the other way round: EINVAL');
  t.throws(() => fsx.exchange(top, 'mid', mid, 'leaf'), { code: 'EINVAL' }, 'a directory into itself: EINVAL');
  t.throws(() => fsx.exchange(top, '..', root, 'other'), { code: 'ENOENT' }, "'..' is not a name to swap");
  t.same(snapshot(), was, 'nothing changed');
  t.equal(fsx.lookup(mid, 'leaf'), leaf, 'leaf where it was');
  t.equal(fsx.lookup(root, 'other'), other, 'other where it was');
  t.same(check(fsx), [], 'check clean');
  t.end();
});
