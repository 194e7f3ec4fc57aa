/**
 * The inode scan cursor: it visits exactly the inodes in use, in number
 * order, across AGs -- and, with inodes created and freed between its steps,
 * sees those above its position as they are when it gets there.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { InodeScanCursor } from '../../src/inode/iscan';
import { isInodeFree, decodeInobt, INODES_PER_CHUNK } from '../../src/alloc/inode-btree';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';

/** Every inode in use, from the inode btrees directly. */
function inodesInUse(fsx: Rmapfs): number[] {
  const out: number[] = [];
  for (const ag of fsx.fs.alloc.ags) {
    ag.ino.forEach((b, off) => {
      const r = decodeInobt(b, off);
      for (let i = 0; i < INODES_PER_CHUNK; i++) if (!isInodeFree(r, i)) out.push(fsx.fs.geo.ino(ag.agno, r.startino + i));
    });
  }
  return out.sort((a, b) => a - b);
}

t.test('visits every inode in use, in order, while inodes come and go', (t) => {
  const seed = testSeed(Date.now() % 100000);
  t.comment(`seed ${seed}`);
  const rng = new Rng(seed);
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const names: string[] = [];
  for (let i = 0; i < 500; i++) {
    names.push(`f${i}`);
    fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0);
  }
  for (let i = 0; i < 500; i += 3) fsx.unlink(fsx.rootIno, `f${i}`);
  const cursor = new InodeScanCursor(fsx.fs.alloc, fsx.fs.geo);
  const seen: number[] = [];
  // Bounded: a cursor that does not move on must fail, not loop.
  for (let ino = cursor.next(-1); ino !== null && seen.length < 10000; ino = cursor.next(ino)) seen.push(ino);
  t.same(seen, inodesInUse(fsx), 'a scan of a quiet filesystem sees exactly the inodes in use');

  // Now with changes between steps: what lies above the position must be seen as it is when reached.
  let made = 0;
  const visited: number[] = [];
  let bad = 0;
  for (let ino = cursor.next(-1); ino !== null && visited.length < 10000; ino = cursor.next(ino)) {
    visited.push(ino);
    cursor.forget();
    if (rng.next() < 0.2) fsx.create(fsx.rootIno, `n${made++}`, S_IFREG | 0o644, 0, 0);
    const want = inodesInUse(fsx).find((i) => i > ino) ?? null;
    const got = new InodeScanCursor(fsx.fs.alloc, fsx.fs.geo).next(ino);
    if (got !== want) bad++;
  }
  t.equal(bad, 0, `every step found the next inode in use (${made} created meanwhile)`);
  t.same(visited, [...visited].sort((a, b) => a - b), 'in number order');
  t.end();
});
