/**
 * Online repair of an inode core: a wrong block count, a mode with no file
 * type, a data fork format a regular file cannot have (emptied, then the
 * block map rebuilt from the rmap), a lost magic (the inode unreadable,
 * its neighbours not) -- each found by the scrub, repaired through the structure
 * table, then clean and every file byte for byte; and an inode nothing can
 * be saved of, cleared.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { onlineRepair } from '../../src/fsck/online';
import { selectStructures } from '../../src/fsck/table';
import { repairInodeCore } from '../../src/repair/inode-repair';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { S_IFIFO, S_IFREG, S_IFSOCK } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { INODES_PER_BLOCK } from '../../src/format/geometry';
import { BlockMap } from '../../src/file/bmap';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { Model, bystanders, damageAndRepair, quietHooks, remount } from '../lib/damaged-files';

t.test('a wrong block count is recomputed from the forks', async (t) => {
  const files = await damageAndRepair(t, 'wrong block count');
  t.ok(files.some((f) => f.type === 'inode' && f.changes.some((c) => /^block count \d+ -> \d+$/.test(c))), 'the block count was fixed');
});

t.test('a mode with no file type gets the type its forks say', async (t) => {
  const files = await damageAndRepair(t, 'bad mode');
  t.ok(files.some((f) => f.type === 'inode' && f.changes.some((c) => c.startsWith('mode 170644 -> 100644'))), 'a regular file again');
});

t.test('a local data fork in a regular file is emptied and its block map rebuilt from the rmap', async (t) => {
  const files = await damageAndRepair(t, 'local fork in a file');
  t.same(files.map((f) => f.type), ['inode', 'bmap'], 'the core, then the block map');
  t.same(files[0]!.leftFor, ['bmap'], 'the core left the block map to its repair');
});

t.test('an inode whose magic is gone gets its identity back', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(15));
  const model = new Model();
  const inos = bystanders(fsx, model, rng, 20);
  // Not in the root's block: a mount needs the root directory (that block is the offline repair's).
  const rootBlock = fsx.fs.geo.inoLocation(fsx.rootIno).fsbno;
  const victim = inos.find((i) => fsx.fs.geo.inoLocation(i).fsbno !== rootBlock)!;
  fsx.fsync();
  fsx.close();
  // The magic zeroed on disk, the crc left as it was: the inode fails to read.
  const { fsbno, offset } = fsx.fs.geo.inoLocation(victim);
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.alloc(4), 0, 4, fsbno * BLOCK_SIZE + offset);
  fs.closeSync(fd);
  fsx = Rmapfs.open(image);
  t.ok(check(fsx).some((p) => p.includes(`inode ${victim}`) && p.includes('bad')), 'check sees the damage');
  const reply = await onlineRepair(fsx, selectStructures(null, null), null, { forceRebuild: false, measureHeap: false, cancelled: () => false }, quietHooks);
  const files = reply.files as FileRepairResult[];
  const said = files.flatMap((f) => f.changes);
  t.ok(said.some((c) => c.includes('magic restored')), `the magic restored: ${said.join('; ')}`);
  t.ok(files.every((f) => f.error === undefined), 'no inode failed');
  t.same(check(fsx), [], 'clean after the repair');
  fsx = remount(image, fsx);
  t.same(check(fsx), [], 'clean as the device holds it');
  model.unchanged(t, fsx);
});

t.test('an inode nothing can be saved of is cleared (its directory entry left for the directory repair)', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(16));
  const model = new Model();
  bystanders(fsx, model, rng, 5);
  const empty = fsx.create(fsx.rootIno, 'empty', S_IFREG | 0o644, 0, 0).ino;
  fsx.fs.run(() => { fsx.inodes.get(empty).mode = 0o170644; });
  const r = await repairInodeCore(fsx, empty);
  t.ok(r.changes.some((c) => c.startsWith(`inode ${empty} cleared`)), r.changes.join('; '));
  t.equal(fsx.inodes.handle(empty).mode, 0, 'the inode is free');
  const left = check(fsx);
  t.ok(left.length > 0 && left.every((p) => p.includes(`points to inode ${empty}, which is not in use`)), `only the dangling entry is left: ${left.join(' | ')}`);
  model.unchanged(t, fsx);
});

t.test('an "inode" in a block no inode chunk holds is left alone (a damaged inode btree must not make file data into inodes)', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const model = new Model();
  const ino = fsx.create(fsx.rootIno, 'data', S_IFREG | 0o644, 0, 0).ino;
  model.write(fsx, ino, 0, Buffer.alloc(BLOCK_SIZE, 0xab));
  fsx.fsync();
  const fsbno = new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).extents()[0]!.fsbno;
  const geo = fsx.fs.geo;
  const fake = geo.ino(geo.agnoOf(fsbno), geo.agbnoOf(fsbno) * INODES_PER_BLOCK + 3);
  await t.rejects(repairInodeCore(fsx, fake), { code: 'EFSCORRUPTED' }, 'refused');
  fsx.fsync();
  model.unchanged(t, fsx);
  t.same(check(fsx), [], 'clean');
});

t.test('a FIFO and a socket with a size (past 2^63: the kernel refuses their attributes): size 0 again', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(17));
  const model = new Model();
  bystanders(fsx, model, rng, 5);
  const fifo = fsx.create(fsx.rootIno, 'fifo', S_IFIFO | 0o644, 0, 0).ino;
  const socket = fsx.create(fsx.rootIno, 'socket', S_IFSOCK | 0o644, 0, 0).ino;
  fsx.fs.run(() => {
    fsx.inodes.get(fifo).size = 2 ** 63 + 2 ** 62;
    fsx.inodes.get(socket).size = 4096;
  });
  const found = check(fsx);
  t.ok(found.some((p) => p.includes(`inode ${fifo}: fifo of size`)) && found.some((p) => p.includes(`inode ${socket}: socket of size 4096`)),
    `check sees both: ${found.join(' | ')}`);
  const reply = await onlineRepair(fsx, selectStructures(null, null), null, { forceRebuild: false, measureHeap: false, cancelled: () => false }, quietHooks);
  const changes = ((reply.files ?? []) as FileRepairResult[]).map((f) => `${f.ino}: ${f.changes.join('; ')}`);
  t.ok(changes.some((c) => c.startsWith(`${socket}: size 4096 -> 0 (a socket has no data)`)), changes.join(' | '));
  t.equal(fsx.stat(fifo).size, 0, 'the FIFO has size 0');
  t.same(check(fsx), [], 'clean after the repair');
  model.unchanged(t, fsx);
});
