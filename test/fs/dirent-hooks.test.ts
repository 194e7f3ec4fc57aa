/**
 * Directory entry hooks: what directory salvage and the link-count scan keep
 * current while they run. Every namespace operation tells them each entry it
 * adds or removes (a rename over a name, and ".." on a move, as a remove and
 * an add), once the transaction commits -- and nothing of one that aborted.
 * Summed over a run, the updates are exactly the difference between the
 * directories before and after.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import type { DirentUpdate } from '../../src/alloc/alloc';
import { Directory } from '../../src/dir/dir';
import { S_IFDIR, S_IFMT, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

const FILE = S_IFREG | 0o644;
const DIR = S_IFDIR | 0o755;

function show(u: DirentUpdate): string {
  return `${u.op} ${u.dir}/${u.name.toString()} -> ${u.ino}`;
}

/** Every entry of every directory, ".." included, as "dir/name -> ino". */
function entries(fsx: Rmapfs): Set<string> {
  const out = new Set<string>();
  const walk = (dirIno: number): void => {
    const dir = new Directory(fsx.inodes.handle(dirIno), fsx.fs.alloc, fsx.fs.geo);
    out.add(`${dirIno}/.. -> ${dir.parent}`);
    dir.forEach((d) => {
      out.add(`${dirIno}/${d.name.toString()} -> ${d.ino}`);
      if ((fsx.stat(d.ino).mode & S_IFMT) === S_IFDIR) walk(d.ino);
    });
  };
  walk(fsx.rootIno);
  return out;
}

t.test('each operation tells the hook of the entries it changed, at commit', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const seen: string[] = [];
  const hook = (u: DirentUpdate): void => { seen.push(show(u)); };
  fsx.fs.alloc.addDirentHook(hook, () => t.fail('the hook never throws'));
  const root = fsx.rootIno;
  const a = fsx.create(root, 'a', FILE, 0, 0).ino;
  t.same(seen.splice(0), [`add ${root}/a -> ${a}`], 'create');
  const d = fsx.mkdir(root, 'd', DIR, 0, 0).ino;
  t.same(seen.splice(0), [`add ${root}/d -> ${d}`, `add ${d}/.. -> ${root}`], 'mkdir: its name and its ".."');
  fsx.link(a, d, 'a2');
  t.same(seen.splice(0), [`add ${d}/a2 -> ${a}`], 'link');
  const b = fsx.create(root, 'b', FILE, 0, 0).ino;
  seen.splice(0);
  fsx.rename(root, 'b', d, 'a2');
  t.same(seen.splice(0), [`remove ${d}/a2 -> ${a}`, `add ${d}/a2 -> ${b}`, `remove ${root}/b -> ${b}`], 'rename over a name');
  const e = fsx.mkdir(root, 'e', DIR, 0, 0).ino;
  seen.splice(0);
  fsx.rename(root, 'e', d, 'e');
  t.same(seen.splice(0), [`add ${d}/e -> ${e}`, `remove ${root}/e -> ${e}`, `remove ${e}/.. -> ${root}`, `add ${e}/.. -> ${d}`],
    'a directory moved: its name, and its ".."');
  fsx.rmdir(d, 'e');
  t.same(seen.splice(0), [`remove ${d}/e -> ${e}`, `remove ${e}/.. -> ${d}`], 'rmdir: its name and its ".."');
  fsx.unlink(root, 'a');
  t.same(seen.splice(0), [`remove ${root}/a -> ${a}`], 'unlink');
  t.throws(() => fsx.fs.run(() => {
    new Directory(fsx.inodes.handle(root), fsx.fs.alloc, fsx.fs.geo).add(Buffer.from('never'), a, 8);
    throw new Error('abort');
  }), /abort/);
  t.same(seen, [], 'an aborted transaction tells nothing');
  fsx.fs.alloc.removeDirentHook(hook);
  fsx.create(root, 'unheard', FILE, 0, 0);
  t.same(seen, [], 'a removed hook hears nothing');
  t.end();
});

t.test('the updates of a random run add up to the change of every directory', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const root = fsx.rootIno;
  for (let i = 0; i < 20; i++) fsx.create(root, `f${i}`, FILE, 0, 0);
  const model = entries(fsx);
  fsx.fs.alloc.addDirentHook((u) => {
    const line = `${u.dir}/${u.name.toString()} -> ${u.ino}`;
    if (u.op === 'add') {
      t.notOk(model.has(line), `added once: ${line}`);
      model.add(line);
    } else {
      t.ok(model.delete(line), `removed what was there: ${line}`);
    }
  }, () => t.fail('the hook never throws'));
  const dirs = [root, fsx.mkdir(root, 'x', DIR, 0, 0).ino, fsx.mkdir(root, 'y', DIR, 0, 0).ino];
  let seed = 7;
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  for (let i = 0; i < 400; i++) {
    const dir = dirs[rand(dirs.length)]!;
    const other = dirs[rand(dirs.length)]!;
    const name = `n${rand(30)}`;
    try {
      switch (rand(5)) {
        case 0: fsx.create(dir, name, FILE, 0, 0); break;
        case 1: fsx.unlink(dir, name); break;
        case 2: fsx.rename(dir, name, other, `n${rand(30)}`); break;
        case 3: fsx.link(fsx.lookup(dir, name), other, `n${rand(30)}`); break;
        default: fsx.mkdir(dir, name, DIR, 0, 0); fsx.rmdir(dir, name);
      }
    } catch {
      // ENOENT, EEXIST, EISDIR...: the operation changed nothing.
    }
  }
  t.same([...model].sort(), [...entries(fsx)].sort(), 'the hook\'s model is every directory as it is');
  t.end();
});
