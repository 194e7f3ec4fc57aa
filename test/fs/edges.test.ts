/** The edges: a full filesystem, a huge directory, a huge sequential file. */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

t.test('ENOSPC at the edge: writes and creates fail cleanly, and space comes back', (t) => {
  const image = scratchImage(t, { size: 8 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const root = fsx.rootIno;
  const freeAtStart = fsx.statfs().bfree;
  const f = fsx.create(root, 'big', S_IFREG | 0o644, 0, 0).ino;
  const chunk = Buffer.alloc(256 * 1024, 0x5a);
  let written = 0;
  let err: unknown;
  for (;;) {
    try {
      written += fsx.write(f, written, chunk);
    } catch (e) {
      err = e;
      break;
    }
  }
  t.equal((err as { code?: string }).code, 'ENOSPC', `ENOSPC after ${written} bytes`);
  t.equal(fsx.stat(f).size, written, 'the failed write changed nothing: size is what was written before');
  t.ok(fsx.read(f, 0, written).equals(Buffer.alloc(written, 0x5a)), 'the data written before ENOSPC is intact');
  // Smaller writes squeeze out the last blocks, then fail too.
  let small = 0;
  for (;;) {
    try {
      fsx.write(f, written + small, Buffer.alloc(4096, 1));
      small += 4096;
    } catch (e) {
      t.equal((e as { code?: string }).code, 'ENOSPC', `then ENOSPC for single blocks after ${small} more bytes`);
      break;
    }
  }
  let files = 0;
  for (;;) {
    try {
      fsx.create(root, `f${files}`, S_IFREG | 0o644, 0, 0);
      files++;
    } catch (e) {
      t.match((e as { code?: string }).code, /^ENOSPC$/, `creates fail with ENOSPC after ${files} more files`);
      break;
    }
  }
  t.same(check(fsx), [], 'check clean when full');
  fsx.unlink(root, 'big');
  for (let i = 0; i < files; i++) fsx.unlink(root, `f${i}`);
  fsx.fsync();
  t.same(check(fsx), [], 'check clean after deleting everything');
  t.ok(fsx.statfs().bfree >= freeAtStart - 64, `free space came back (${fsx.statfs().bfree} of ${freeAtStart})`);
  t.end();
});

t.test('a directory of 100,000 entries', (t) => {
  const image = scratchImage(t, { size: 512 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const dir = fsx.mkdir(fsx.rootIno, 'many', 0o755, 0, 0).ino;
  const N = 100_000;
  const t0 = Date.now();
  for (let i = 0; i < N; i++) fsx.create(dir, `file-${i}`, S_IFREG | 0o644, 0, 0);
  const createMs = Date.now() - t0;
  t.equal(fsx.readdir(dir).length, N + 2, 'readdir lists them all (and . and ..)');
  let found = 0;
  for (let i = 0; i < 2000; i++) {
    const k = (i * 7919) % N;
    if (fsx.stat(fsx.lookup(dir, `file-${k}`)).ino > 0) found++;
  }
  t.equal(found, 2000, 'random lookups find their files');
  t.throws(() => fsx.lookup(dir, 'file-100000'), { code: 'ENOENT' }, 'a missing name is ENOENT');
  for (let i = 0; i < N; i += 2) fsx.unlink(dir, `file-${i}`);
  t.equal(fsx.readdir(dir).length, N / 2 + 2, 'half unlinked');
  t.same(check(fsx), [], 'check clean');
  t.comment(`created ${N} entries in ${createMs} ms`);
  t.end();
});

t.test('a 1 GiB file written sequentially takes at most 4 extents', (t) => {
  const image = scratchImage(t, { size: 3 * 2 ** 30 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const f = fsx.create(fsx.rootIno, 'gig', S_IFREG | 0o644, 0, 0).ino;
  const chunk = Buffer.alloc(1 << 20, 0xa5);
  for (let pos = 0; pos < 1 << 30; pos += chunk.length) fsx.write(f, pos, chunk);
  const inode = fsx.inodes.get(f);
  const extents = new BlockMap(inode, fsx.fs.alloc, fsx.fs.geo).extents();
  t.equal(fsx.stat(f).size, 1 << 30);
  t.ok(extents.length <= 4, `${extents.length} extents: ${extents.map((e) => `${e.fileoff}+${e.blockcount}@${e.fsbno}`).join(' ')}`);
  t.ok(fsx.read(f, (1 << 30) - 4096, 4096).equals(Buffer.alloc(4096, 0xa5)), 'the last block reads back');
  t.same(check(fsx), [], 'check clean');
  t.end();
});
