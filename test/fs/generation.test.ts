/**
 * Inode generations: a reused inode number never comes back with the
 * generation its earlier file had -- neither a slot freed and taken again in
 * its chunk (the generation counts up) nor a whole chunk freed and allocated
 * again (a new chunk starts from a random generation, as in XFS).
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { INODES_PER_BLOCK } from '../../src/format/geometry';
import { scratchImage } from '../lib/fs';

const FILE = S_IFREG | 0o644;

t.test('a slot freed and taken again gets the next generation', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const first = fsx.create(fsx.rootIno, 'a', FILE, 0, 0);
  fsx.unlink(fsx.rootIno, 'a');
  const again = fsx.create(fsx.rootIno, 'b', FILE, 0, 0);
  t.equal(again.ino, first.ino, 'the inode number is reused');
  t.equal(again.generation, (first.generation + 1) >>> 0, 'its generation moved on');
  t.equal(fsx.stat(again.ino).generation, again.generation, 'stat says the same');
  t.end();
});

t.test('an inode chunk freed and allocated again does not restart the generations', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 1 }));
  t.teardown(() => fsx.close());
  // The root's chunk stays; fill it, then a second chunk whose every inode is freed (the chunk goes).
  const names = (prefix: string): string[] => Array.from({ length: 64 }, (_, i) => `${prefix}${i}`);
  for (const n of names('keep')) fsx.create(fsx.rootIno, n, FILE, 0, 0);
  const before = new Map<number, number>();
  for (const n of names('old')) {
    const st = fsx.create(fsx.rootIno, n, FILE, 0, 0);
    before.set(st.ino, st.generation);
  }
  for (const n of names('old')) fsx.unlink(fsx.rootIno, n);
  fsx.fs.checkpoint(); // the chunk's blocks stop being busy: the next chunk may take them
  let reused = 0;
  const sameGeneration: number[] = [];
  for (const n of names('new')) {
    const st = fsx.create(fsx.rootIno, n, FILE, 0, 0);
    const old = before.get(st.ino);
    if (old === undefined) continue;
    reused++;
    if (st.generation === old) sameGeneration.push(st.ino);
  }
  t.ok(reused > 0, `inode numbers of the freed chunk came back (${reused})`);
  t.same(sameGeneration, [], 'none of them with its old generation');
  t.end();
});

t.test('an inode by file handle: in use answers, anything else is ESTALE without being read', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20, agCount: 2 }));
  t.teardown(() => fsx.close());
  const kept = fsx.create(fsx.rootIno, 'kept', FILE, 0, 0);
  const gone = fsx.create(fsx.rootIno, 'gone', FILE, 0, 0);
  fsx.unlink(fsx.rootIno, 'gone');
  t.equal(fsx.statByHandle(kept.ino).generation, kept.generation, 'an inode in use, with its generation');
  t.equal(fsx.statByHandle(fsx.rootIno).ino, fsx.rootIno, 'the root');
  t.throws(() => fsx.statByHandle(gone.ino), { code: 'ESTALE' }, 'a freed inode (its chunk lives on)');
  const geo = fsx.fs.geo;
  // Block 2000 of AG 1: free space, never an inode chunk; then past the AG's end, and nonsense.
  const inFreeSpace = geo.ino(1, 2000 * INODES_PER_BLOCK);
  const cachedBefore = fsx.fs.cache.peek(geo.fsbno(1, 2000)) !== undefined;
  t.throws(() => fsx.statByHandle(inFreeSpace), { code: 'ESTALE' }, 'a number in free space');
  t.equal(fsx.fs.cache.peek(geo.fsbno(1, 2000)) !== undefined, cachedBefore, 'whose block was not read');
  t.throws(() => fsx.statByHandle(geo.ino(1, geo.agLength(1) * INODES_PER_BLOCK)), { code: 'ESTALE' }, 'past the AG');
  t.throws(() => fsx.statByHandle(geo.ino(geo.agCount, 64)), { code: 'ESTALE' }, 'past the last AG');
  t.throws(() => fsx.statByHandle(-1), { code: 'ESTALE' }, 'negative');
  t.end();
});
