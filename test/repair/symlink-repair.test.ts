/**
 * Online repair of a symlink's target (src/repair/symlink-repair.ts): a
 * block-held target whose block map points elsewhere is recovered from the
 * block the rmap gives the inode; one whose block holds no target is
 * replaced by the dummy target and reported; a local target whose length is
 * damaged is salvaged from the size. Each checks clean after.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairSymlink, LOST_SYMLINK_TARGET } from '../../src/repair/symlink-repair';
import { S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const LONG = `/a/long/target/${'x'.repeat(300)}/end`;

t.test('a long target whose block map points elsewhere is recovered through the rmap', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const ino = fsx.symlink(fsx.rootIno, 'l', LONG, 0, 0).ino;
  let was = 0;
  fsx.fs.run(() => {
    const { buf, offset } = fsx.inodes.get(ino).dataFork();
    const e = decodeExtent(buf.data, offset);
    was = e.fsbno;
    encodeExtent({ ...e, fsbno: e.fsbno + 1000 }, buf.data, offset);
    fsx.fs.cache.markDirty(buf);
  });
  t.ok(check(fsx).length > 0, 'check sees it');
  const r = await repairSymlink(fsx, ino, { sliceMs: 1e9, maxUnits: 16 });
  t.equal(r.type, 'symlink');
  t.same(r.changes, [`target recovered from block ${was} (the block map pointed at ${was + 1000})`]);
  t.equal(fsx.readlink(ino).toString(), LONG, 'the target');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('a block that holds no target: the link gets the dummy target, reported', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const ino = fsx.symlink(fsx.rootIno, 'l', LONG, 0, 0).ino;
  const { buf, offset } = fsx.inodes.get(ino).dataFork();
  const block = decodeExtent(buf.data, offset).fsbno;
  fsx.fsync();
  fsx.close();
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, block * BLOCK_SIZE);
  fs.closeSync(fd);
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const r = await repairSymlink(fsx, ino, { sliceMs: 1e9, maxUnits: 16 });
  t.same(r.changes, [`target lost: replaced by '${LOST_SYMLINK_TARGET}'`]);
  t.equal(fsx.readlink(ino).toString(), LOST_SYMLINK_TARGET);
  t.same(check(fsx), [], 'clean (the old block freed)');
  t.end();
});

t.test('a local target with a damaged length is salvaged from the size; a NUL cuts it', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const a = fsx.symlink(fsx.rootIno, 'a', 'short/target', 0, 0).ino;
  const b = fsx.symlink(fsx.rootIno, 'b', 'cut/here', 0, 0).ino;
  fsx.fs.run(() => {
    fsx.inodes.get(a).nextents = 0;
    const ib = fsx.inodes.get(b);
    const { buf, offset } = ib.dataFork();
    buf.data[offset + 3] = 0;
    fsx.fs.cache.markDirty(buf);
  });
  t.equal(check(fsx).length, 2, 'check sees both');
  const ra = await repairSymlink(fsx, a);
  t.same(ra.changes, ['local target length 0 -> 12 (its size)']);
  t.equal(fsx.readlink(a).toString(), 'short/target');
  const rb = await repairSymlink(fsx, b);
  t.same(rb.changes, ["target's length did not verify: cut to the 3 bytes before its first NUL byte"]);
  t.equal(fsx.readlink(b).toString(), 'cut');
  t.same(check(fsx), [], 'clean');
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  await t.rejects(repairSymlink(fsx, f), { code: 'EINVAL' });
  t.end();
});
