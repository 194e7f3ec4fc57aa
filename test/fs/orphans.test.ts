/**
 * What a low-level FUSE server needs from the filesystem: readdir that can
 * resume from a cookie while the directory changes, and files unlinked while
 * open that live on (orphans) until released -- or until the next mount
 * after a crash.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

t.test('readdir resumes from cookies while entries come and go', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const dir = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  for (let i = 0; i < 1000; i++) fsx.create(dir, `e${i}`, S_IFREG | 0o644, 0, 0);
  const seen = new Map<string, number>();
  let cookie = 0;
  let page = 0;
  for (;;) {
    const batch = fsx.readdirFrom(dir, cookie, 37);
    if (batch.length === 0) break;
    for (const e of batch) seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
    cookie = batch[batch.length - 1]!.next;
    // Change the directory between pages: entries not yet listed may go, new ones may come.
    if (++page % 3 === 0) {
      fsx.unlink(dir, `e${999 - page}`);
      fsx.create(dir, `new${page}`, S_IFREG | 0o644, 0, 0);
    }
  }
  t.ok([...seen.values()].every((n) => n === 1), 'no entry listed twice');
  t.equal(seen.get('.'), 1);
  t.equal(seen.get('..'), 1);
  const survivors = fsx.readdir(dir).map((e) => e.name).filter((n) => n.startsWith('e'));
  const olds = survivors.filter((n) => !seen.has(n));
  t.same(olds, [], 'every entry present throughout was listed');
  t.end();
});

t.test('a file unlinked while in use lives on until released', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const free0 = fsx.statfs().bfree;
  const ino = fsx.create(fsx.rootIno, 'open', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(ino, 0, Buffer.alloc(100000, 9));
  const open = new Set([ino]);
  fsx.setInUse((i) => open.has(i));
  fsx.unlink(fsx.rootIno, 'open');
  t.throws(() => fsx.lookup(fsx.rootIno, 'open'), { code: 'ENOENT' }, 'the name is gone');
  t.equal(fsx.stat(ino).nlink, 0, 'no links');
  t.ok(fsx.read(ino, 0, 100000).equals(Buffer.alloc(100000, 9)), 'still readable');
  fsx.write(ino, 100000, Buffer.from('more'));
  t.equal(fsx.orphanCount, 1);
  t.same(check(fsx), [], 'an orphan is not corruption');
  open.delete(ino);
  fsx.releaseOrphan(ino);
  t.equal(fsx.orphanCount, 0);
  fsx.fsync();
  t.same(check(fsx), [], 'clean once it is freed');
  t.ok(fsx.statfs().bfree >= free0 - 16, 'its space came back');
  t.end();
});

t.test('orphans left by a crash are freed at the next read-write open', (t) => {
  const image = scratchImage(t);
  let fsx = Rmapfs.open(image);
  const ino = fsx.create(fsx.rootIno, 'open', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(ino, 0, Buffer.alloc(300000, 1));
  fsx.setInUse((i) => i === ino);
  fsx.unlink(fsx.rootIno, 'open');
  fsx.fsync();
  fsx.fs.abandon();
  const ro = Rmapfs.open(image, { readOnly: true });
  t.same(check(ro), [], 'offline, the orphan is reported as such, not as corruption');
  ro.close();
  fsx = Rmapfs.open(image);
  t.throws(() => fsx.stat(ino), 'the orphan is gone after a read-write open');
  t.same(check(fsx), [], 'and the filesystem checks clean');
  fsx.close();
  t.end();
});
