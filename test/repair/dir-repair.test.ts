/**
 * Online salvage of a directory (src/repair/dir-repair.ts): a leaf that does
 * not verify loses exactly its names (reported, with the block), a damaged
 * node or fork root loses none (the leaves are found through the rmap), an
 * entry pointing at a free inode is dropped and named, a wrong ".." is set
 * back to the directory that links it; and a writer creating and removing
 * names in the directory between the slices loses nothing. The rebuilt
 * directory checks clean (after reopening too), with every entry that
 * verified pointing where it did.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairDirectory } from '../../src/repair/dir-repair';
import { Directory, DOTDOT, DT_DIR, DT_REG, decodeDirent, DIRENT_SIZE } from '../../src/dir/dir';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { flipOnDisk, scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** The directory's entries (not "." and ".."), name -> inode. */
function entriesOf(fsx: Rmapfs, dir: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of fsx.readdir(dir)) if (e.name !== '.' && e.name !== '..') out.set(e.name, e.ino);
  return out;
}

function dirOf(fsx: Rmapfs, ino: number): Directory {
  return new Directory(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo);
}

/** A directory of `n` files (and two subdirectories) under /d; returns its inode. */
function populate(fsx: Rmapfs, n: number): number {
  const d = fsx.mkdir(fsx.rootIno, 'd', S_IFDIR | 0o755, 0, 0).ino;
  for (let i = 0; i < n; i++) fsx.create(d, `file-${i}`, S_IFREG | 0o644, 0, 0);
  fsx.mkdir(d, 'sub1', S_IFDIR | 0o755, 0, 0);
  fsx.mkdir(d, 'sub2', S_IFDIR | 0o755, 0, 0);
  return d;
}

/** The directory's blocks at a level, with the names of a leaf's entries. */
function blocksAt(fsx: Rmapfs, dir: number, level: number): { ptr: number; names: string[] }[] {
  const out: { ptr: number; names: string[] }[] = [];
  dirOf(fsx, dir).tree.visitBlocks((ptr, l, b) => {
    if (l !== level) return;
    const names: string[] = [];
    if (l === 0) for (let i = 0; i < b.readUInt16BE(6); i++) names.push(decodeDirent(b, 64 + i * DIRENT_SIZE).name.toString());
    out.push({ ptr, names });
  });
  return out;
}

/** Problems check finds that are not about the inodes whose names were lost (those await the orphanage). */
function problemsBeyond(fsx: Rmapfs, lostInodes: ReadonlySet<number>): string[] {
  return check(fsx).filter((p) => {
    const m = /inode (\d+): (is in use but no directory entry names it|link count)/.exec(p);
    // Several nameless inodes are one line: their count, the first few numbers.
    const some = /(\d+) inodes are in use but no directory entry names them: ([\d, ]+)/.exec(p);
    if (some !== null) return Number(some[1]) > lostInodes.size || !some[2]!.split(', ').every((n) => lostInodes.has(Number(n)));
    return m === null || !lostInodes.has(Number(m[1]));
  });
}

function open(t: Test, n: number): { image: string; fsx: Rmapfs; dir: number; before: Map<string, number> } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const dir = populate(fsx, n);
  return { image, fsx, dir, before: entriesOf(fsx, dir) };
}

t.test('a leaf that does not verify: exactly its names are lost, and reported with the block', async (t) => {
  const s = open(t, 300);
  const leaves = blocksAt(s.fsx, s.dir, 0);
  t.ok(leaves.length > 3 && dirOf(s.fsx, s.dir).tree.height > 1, `${leaves.length} leaves under a node`);
  const victim = leaves[2]!;
  const fsx = flipOnDisk(s.image, s.fsx, victim.ptr, 1000);
  t.teardown(() => fsx.close());
  t.ok(check(fsx).some((p) => /directory|crc/.test(p)), 'check sees the damage');
  const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 8 });
  t.equal(r.type, 'directory');
  t.equal(r.changes[0], `${victim.names.length} names lost (block ${victim.ptr} did not verify)`, r.changes[0]);
  const want = new Map(s.before);
  const lostInodes = new Set<number>();
  for (const name of victim.names) {
    lostInodes.add(want.get(name)!);
    want.delete(name);
  }
  t.same(entriesOf(fsx, s.dir), want, 'every other entry is there, pointing at its inode');
  t.same(problemsBeyond(fsx, lostInodes), [], 'clean but for the inodes whose names were lost');
  t.end();
});

t.test('a damaged node, a damaged fork root: the leaves are found through the rmap, nothing lost', async (t) => {
  for (const how of ['node', 'fork root'] as const) {
    const s = open(t, 300);
    let fsx = s.fsx;
    if (how === 'node') fsx = flipOnDisk(s.image, fsx, blocksAt(fsx, s.dir, 1)[0]!.ptr, 100);
    else fsx.fs.run(() => { fsx.inodes.get(s.dir).dataRoot = 7; });
    t.ok(check(fsx).length > 0, `${how}: check sees the damage`);
    const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 8 });
    t.same(r.changes, how === 'node' ? [`0 names lost (block ${blocksAtOnDisk(r)} did not verify)`] : [], `${how}: ${r.changes.join('; ') || 'no losses'}`);
    t.same(entriesOf(fsx, s.dir), s.before, `${how}: every entry is there`);
    t.same(check(fsx), [], `${how}: clean`);
    fsx.close();
    const again = Rmapfs.open(s.image);
    t.same(check(again), [], `${how}: clean after reopening`);
    t.same(entriesOf(again, s.dir), s.before, `${how}: every entry after reopening`);
    again.close();
  }
  t.end();
});

/** The block the report names (the damaged node: its number varies with allocation). */
function blocksAtOnDisk(r: { changes: string[] }): string {
  return /block (\S+) did not verify/.exec(r.changes[0] ?? '')?.[1] ?? '?';
}

t.test('an entry pointing at a free inode is dropped and named; a wrong ".." is set to the parent', async (t) => {
  const s = open(t, 40);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const gone = fsx.create(s.dir, 'gone', S_IFREG | 0o644, 0, 0).ino;
  fsx.unlink(s.dir, 'gone');
  const other = fsx.mkdir(fsx.rootIno, 'other', S_IFDIR | 0o755, 0, 0).ino;
  fsx.fs.run(() => {
    dirOf(fsx, s.dir).add(Buffer.from('dangling'), gone, DT_REG);
    dirOf(fsx, s.dir).replace(DOTDOT, other, DT_DIR);
  });
  t.ok(check(fsx).some((p) => /not in use/.test(p)) && check(fsx).some((p) => /"\.\." is/.test(p)), 'check sees both');
  const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 3 });
  t.same(r.changes.sort(), [
    `'..' was ${other}, set to ${fsx.rootIno} (the directory that links it)`,
    `entry 'dangling' dropped: inode ${gone} is free`,
  ], r.changes.join('; '));
  t.same(entriesOf(fsx, s.dir), s.before, 'the valid entries are all there');
  t.equal(dirOf(fsx, s.dir).parent, fsx.rootIno, '".." is the parent');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('a writer creating and removing names in the directory between the slices loses nothing', async (t) => {
  const s = open(t, 400);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const seed = testSeed(Date.now() % 100000);
  t.comment(`seed ${seed}`);
  const rng = new Rng(seed);
  const model = new Map(s.before);
  let made = 0;
  let slices = 0;
  const work = (): void => {
    for (let i = 0; i < 6; i++) {
      const names = [...model.keys()].filter((n) => n.startsWith('file-') || n.startsWith('new-'));
      if (rng.next() < 0.5 && names.length > 0) {
        const name = names[rng.int(names.length)]!;
        fsx.unlink(s.dir, name);
        model.delete(name);
      } else {
        const name = `new-${made++}`;
        model.set(name, fsx.create(s.dir, name, S_IFREG | 0o644, 0, 0).ino);
      }
    }
    if (rng.next() < 0.1) {
      // A subdirectory moved in and out: ".." of the moved one, the link counts.
      fsx.rename(s.dir, 'sub1', fsx.rootIno, 'sub1-away');
      fsx.rename(fsx.rootIno, 'sub1-away', s.dir, 'sub1');
    }
  };
  const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 2, betweenSlices: () => { slices++; work(); } });
  t.ok(slices > 40, `${slices} slices, each with creates and removes`);
  t.same(r.changes, [], 'nothing lost, nothing dropped');
  t.same(entriesOf(fsx, s.dir), model, 'the directory holds exactly what the writer left');
  t.same(check(fsx), [], 'clean');
  for (let i = 0; i < 60; i++) work();
  t.same(entriesOf(fsx, s.dir), model, 'the rebuilt directory keeps working');
  t.same(check(fsx), [], 'still clean');
  t.end();
});

t.test('not a directory; a cancelled repair keeps the old directory', async (t) => {
  const s = open(t, 50);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const file = fsx.lookup(s.dir, 'file-1');
  await t.rejects(repairDirectory(fsx, file), { code: 'ENOTDIR' });
  const root = fsx.inodes.get(s.dir).dataRoot;
  await t.rejects(repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 1, cancelled: () => true }), { code: 'ECANCELED' });
  t.equal(fsx.inodes.get(s.dir).dataRoot, root, 'the old tree is in place');
  t.same(check(fsx), [], 'clean');
  t.end();
});

/** Rewrites a block of the directory's tree in place (its crc made on the way out) and reopens the filesystem. */
function rewriteOnDisk(image: string, fsx: Rmapfs, dir: number, ptr: number, level: number, change: (b: Buffer) => void): Rmapfs {
  fsx.fs.run(() => {
    const buf = dirOf(fsx, dir).tree.readBlock(ptr, level);
    change(buf.data);
    fsx.fs.cache.markDirty(buf);
  });
  fsx.fsync();
  fsx.close();
  return Rmapfs.open(image);
}

/** Report lines that say names were lost or entries dropped (a zero count is none). */
const losses = (changes: readonly string[]): string[] =>
  changes.filter((c) => /dropped/.test(c) || (/^(\d+) names? lost/.exec(c)?.[1] ?? '0') !== '0');

t.test('a node whose level says leaf, a leaf counting an empty slot: no name is lost or reported lost', async (t) => {
  for (const how of ['node level zeroed', 'leaf count raised'] as const) {
    const s = open(t, 80);
    const target = how === 'node level zeroed' ? blocksAt(s.fsx, s.dir, 1)[0]! : blocksAt(s.fsx, s.dir, 0)[1]!;
    const maxLeaf = dirOf(s.fsx, s.dir).tree.geo.maxRecs(0);
    const fsx = rewriteOnDisk(s.image, s.fsx, s.dir, target.ptr, how === 'node level zeroed' ? 1 : 0, (b) => {
      // Either way the block still passes its verifier (count within a leaf's), as db's fuzz leaves it.
      if (how === 'node level zeroed') b.writeUInt16BE(0, 4);
      else b.writeUInt16BE(b.readUInt16BE(6) + 1, 6);
      t.ok(b.readUInt16BE(6) <= maxLeaf, `${how}: ${b.readUInt16BE(6)} records, a leaf holds ${maxLeaf}`);
    });
    t.ok(check(fsx).length > 0, `${how}: check sees the damage`);
    const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 8 });
    t.same(losses(r.changes), [], `${how}: ${r.changes.join('; ')}`);
    t.ok(r.changes.some((c) => c.startsWith(`block ${target.ptr}: `)), `${how}: the report says what block ${target.ptr} was`);
    t.same(entriesOf(fsx, s.dir), s.before, `${how}: every entry is there`);
    t.same(check(fsx), [], `${how}: clean`);
    fsx.close();
  }
  t.end();
});

t.test("an entry whose file type is not its inode's takes the inode's, and the report says so", async (t) => {
  const s = open(t, 40);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const file = fsx.lookup(s.dir, 'file-7');
  const sub = fsx.lookup(s.dir, 'sub1');
  fsx.fs.run(() => {
    dirOf(fsx, s.dir).replace(Buffer.from('file-7'), file, 0);
    dirOf(fsx, s.dir).replace(Buffer.from('sub1'), sub, DT_REG);
  });
  t.ok(check(fsx).some((p) => /entry 'file-7' has file type 0/.test(p)), 'check sees the type');
  const r = await repairDirectory(fsx, s.dir, { sliceMs: 1e9, maxUnits: 3 });
  t.same(r.changes.sort(), [
    `entry 'file-7': file type 0 -> ${DT_REG} (inode ${file}'s mode)`,
    `entry 'sub1': file type ${DT_REG} -> ${DT_DIR} (inode ${sub}'s mode)`,
  ], r.changes.join('; '));
  t.same(entriesOf(fsx, s.dir), s.before, 'every entry is there');
  t.same(check(fsx), [], 'clean');
  t.end();
});
