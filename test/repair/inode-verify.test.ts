/**
 * One damaged inode among the inodes of its block (issue 13): each inode is
 * verified where it is loaded, so its neighbours read on; a neighbour's
 * write does not give it a good crc (its damage stays until repaired); the
 * online core repair and, for the root inode the mount refuses, the offline
 * repair give it its identity back.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { onlineRepair } from '../../src/fsck/online';
import { selectStructures } from '../../src/fsck/table';
import { FSCK_CORRECTED, repairDevice } from '../../src/fsck/offline';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { repairInodeCore } from '../../src/repair/inode-repair';
import { OFF_I_CRC, S_IFLNK, S_IFREG, inodeCrc } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { Model, quietHooks, remount } from '../lib/damaged-files';

interface Setup {
  image: string;
  model: Model;
  victim: number;
  neighbour: number;
}

/** Files with content; a victim and a neighbour in one inode block (neither the root). */
function setup(t: Test, seed: number): Setup {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  const rng = new Rng(testSeed(seed));
  const model = new Model();
  const inos: number[] = [];
  for (let i = 0; i < 6; i++) {
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    const data = Buffer.alloc(BLOCK_SIZE + rng.int(3000));
    for (let j = 0; j < data.length; j++) data[j] = rng.int(256);
    model.write(fsx, ino, 0, data);
    inos.push(ino);
  }
  const geo = fsx.fs.geo;
  const victim = inos[1]!;
  const neighbour = inos.find((i) => i !== victim && geo.inoLocation(i).fsbno === geo.inoLocation(victim).fsbno)!;
  t.ok(neighbour !== undefined, 'two files share an inode block');
  fsx.close();
  return { image, model, victim, neighbour };
}

/** Overwrites bytes of inode ino on the device, its crc made to match (as `rmapfs db set` does) unless the crc is what is written. */
function damage(image: string, ino: number, field: number, bytes: Buffer): void {
  const fsx = Rmapfs.open(image, { readOnly: true });
  const { fsbno, offset } = fsx.fs.geo.inoLocation(ino);
  fsx.close();
  const block = Buffer.alloc(BLOCK_SIZE);
  const fd = fs.openSync(image, 'r+');
  fs.readSync(fd, block, 0, BLOCK_SIZE, fsbno * BLOCK_SIZE);
  bytes.copy(block, offset + field);
  if (field !== OFF_I_CRC) block.writeUInt32BE(inodeCrc(block, offset), offset + OFF_I_CRC);
  fs.writeSync(fd, block, 0, BLOCK_SIZE, fsbno * BLOCK_SIZE);
  fs.closeSync(fd);
}

/** Gives inode ino a crc that cannot match (the complement of the one it has). */
function spoilCrc(image: string, ino: number): void {
  const fsx = Rmapfs.open(image, { readOnly: true });
  const { fsbno, offset } = fsx.fs.geo.inoLocation(ino);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((~fsx.fs.cache.read(fsbno, null).data.readUInt32BE(offset + OFF_I_CRC)) >>> 0);
  fsx.close();
  damage(image, ino, OFF_I_CRC, crc);
}

async function repairAll(fsx: Rmapfs): Promise<string[]> {
  const reply = await onlineRepair(fsx, selectStructures(null, null), null, { forceRebuild: false, measureHeap: false, cancelled: () => false }, quietHooks);
  return (reply.files as FileRepairResult[]).flatMap((f) => f.changes);
}

t.test('a damaged inode answers EFSCORRUPTED; the other inodes of its block read on', async (t) => {
  const { image, model, victim, neighbour } = setup(t, 31);
  damage(image, victim, 0, Buffer.alloc(4)); // the magic
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.throws(() => fsx.stat(victim), { code: 'EFSCORRUPTED' }, 'the damaged inode');
  t.equal(fsx.stat(neighbour).ino, neighbour, 'its neighbour stats');
  t.ok(fsx.read(neighbour, 0, 1 << 20).equals(model.files.get(neighbour)!), 'and reads');
  t.ok(check(fsx).some((p) => p.includes(`inode ${victim}`) && p.includes('bad magic')), 'check names the damaged inode');
  const said = await repairAll(fsx);
  t.ok(said.some((c) => c === 'magic restored (it read 0x0)'), `repaired: ${said.join('; ')}`);
  fsx = remount(image, fsx);
  t.same(check(fsx), [], 'clean as the device holds it');
  model.unchanged(t, fsx);
});

t.test("a neighbour's write does not give a damaged inode a good crc", async (t) => {
  const { image, model, victim, neighbour } = setup(t, 32);
  spoilCrc(image, victim);
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.throws(() => fsx.stat(victim), { code: 'EFSBADCRC' }, 'the damaged inode');
  // The neighbour changes (its inode too: size, times), and the block goes to the log and in place.
  model.write(fsx, neighbour, 100, Buffer.from('written beside a damaged inode'));
  fsx.fsync();
  t.throws(() => fsx.stat(victim), { code: 'EFSBADCRC' }, 'still damaged in the cache');
  fsx = remount(image, fsx);
  t.throws(() => fsx.stat(victim), { code: 'EFSBADCRC' }, 'still damaged on the device');
  t.ok(check(fsx).some((p) => p.includes(`inode ${victim}`) && p.includes('bad crc32c')), 'check names it');
  const said = await repairAll(fsx);
  t.ok(said.some((c) => c.startsWith('bad crc32c made anew')), `repaired: ${said.join('; ')}`);
  fsx = remount(image, fsx);
  t.same(check(fsx), [], 'clean as the device holds it');
  model.unchanged(t, fsx);
});

t.test('a damaged root inode: the mount refuses it in one line, the offline repair fixes it', async (t) => {
  const { image, model } = setup(t, 33);
  let root = 0;
  {
    const fsx = Rmapfs.open(image, { readOnly: true });
    root = fsx.rootIno;
    fsx.close();
  }
  damage(image, root, 0, Buffer.from('XXXX'));
  t.throws(() => Rmapfs.open(image), { code: 'EFSCORRUPTED', message: new RegExp(`^\\S+: the root inode ${root} is damaged \\(.*bad magic\\): run rmapfs repair \\S+$`) },
    'the mount refuses it');
  const report = await repairDevice(image);
  t.equal(report.status, FSCK_CORRECTED, `corrected: ${report.error ?? ''}`);
  t.ok(report.wholeDevice.some((l) => l.startsWith(`root inode ${root} (`) && l.includes('magic restored (it read 0x58585858)')), report.wholeDevice.join('; '));
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.same(check(fsx), [], 'clean');
  model.unchanged(t, fsx);
});

/** A file of whole blocks (so the end of its last mapped block is its true end), its size then set to `size`. */
async function sizeDamaged(t: Test, size: number): Promise<{ fsx: Rmapfs; ino: number; model: Model; said: string[] }> {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const model = new Model();
  const ino = fsx.create(fsx.rootIno, 'blocks', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 5; i++) model.write(fsx, ino, 2 * i * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, i + 1));
  fsx.fs.run(() => { fsx.inodes.get(ino).size = size; });
  t.ok(check(fsx).some((p) => p.includes(`inode ${ino}`)), 'check finds the size');
  return { fsx, ino, model, said: await repairAll(fsx) };
}

t.test('a size short of the mapped blocks is set to the end of the last one, and said so', async (t) => {
  const { fsx, model, said } = await sizeDamaged(t, 0);
  const end = 9 * BLOCK_SIZE;
  t.ok(said.some((c) => c.startsWith(`size 0 -> ${end} (blocks were mapped past it;`) && c.includes('exact end within it is lost')), said.join('; '));
  t.same(check(fsx), [], 'clean');
  model.unchanged(t, fsx);
});

t.test('a size past the largest file is set to the end of the last mapped block', async (t) => {
  const { fsx, model, said } = await sizeDamaged(t, 2 ** 60);
  // Printed exactly (2n ** 60n), not as the double 2 ** 60 prints (1152921504606847000).
  t.ok(said.some((c) => c.startsWith(`size ${2n ** 60n} -> ${9 * BLOCK_SIZE} (past the largest file;`)), said.join('; '));
  t.same(check(fsx), [], 'clean');
  model.unchanged(t, fsx);
});

t.test("a regular file whose type became symlink gets its type back from its directory entry", async (t) => {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const model = new Model();
  const ino = fsx.create(fsx.rootIno, 'file', S_IFREG | 0o640, 0, 0).ino;
  model.write(fsx, ino, 0, Buffer.alloc(2 * BLOCK_SIZE + 100, 7)); // too long for a symlink: the forks say file
  fsx.fs.run(() => { fsx.inodes.get(ino).mode = S_IFLNK | 0o640; });
  t.ok(check(fsx).some((p) => p.includes(`inode ${ino}: file type symlink, its directory entry 'file' says regular file`)), 'check blames the type');
  const said = await repairAll(fsx);
  t.ok(said.includes('type symlink -> regular file (from its directory entries)'), said.join('; '));
  t.notOk(said.some((c) => c.includes('target')), 'no symlink repair ran');
  t.equal(fsx.stat(ino).mode, S_IFREG | 0o640, 'a regular file again, its permissions kept');
  t.same(check(fsx), [], 'clean');
  model.unchanged(t, fsx);
});

t.test("the repair of one inode does not bless a neighbour's bad crc", async (t) => {
  const { image, model, victim, neighbour } = setup(t, 34);
  damage(image, victim, 0, Buffer.alloc(4)); // the magic
  spoilCrc(image, neighbour);
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  // One inode's repair writes the block: the other's bad crc must go out bad.
  const r = await repairInodeCore(fsx, victim);
  t.ok(r.changes.includes('magic restored (it read 0x0)'), r.changes.join('; '));
  fsx = remount(image, fsx);
  t.equal(fsx.stat(victim).ino, victim, 'the repaired inode reads');
  t.throws(() => fsx.stat(neighbour), { code: 'EFSBADCRC' }, 'its neighbour is still damaged on the device');
  const said = await repairAll(fsx);
  t.ok(said.some((c) => c.startsWith('bad crc32c made anew')), said.join('; '));
  fsx = remount(image, fsx);
  t.same(check(fsx), [], 'clean');
  model.unchanged(t, fsx);
});
