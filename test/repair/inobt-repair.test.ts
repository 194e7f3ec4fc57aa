/**
 * Online repair of an AG's inode btree from its rmap and inode cores: a
 * damaged leaf record, a leaf with a bad crc, a wrong free count are rebuilt
 * away; and while the rmap is walked in slices the filesystem keeps creating
 * and removing files in the AG -- the result is what a fresh computation from
 * the rmap and the inodes says, and everything checks clean.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairInodeBtree } from '../../src/repair/inobt-repair';
import type { AllocGroup } from '../../src/alloc/ag';
import { decodeInobt, encodeInobt, INODES_PER_CHUNK } from '../../src/alloc/inode-btree';
import { S_IFDIR, S_IFREG, OFF_I_MODE } from '../../src/inode/inode-format';
import { CHUNK_BLOCKS, INODE_SIZE, INODES_PER_BLOCK } from '../../src/format/geometry';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { OWN_INODES } from '../../src/format/owners';
import { decodeRmapOwner } from '../../src/rmap/rmap-btree';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** The inode btree's records, as the tree holds them and as the rmap and the inode cores say they must be. */
function inobtViews(fsx: Rmapfs, ag: AllocGroup): { fresh: string; tree: string; header: string; counted: string } {
  const fresh: string[] = [];
  let inodes = 0;
  let free = 0;
  ag.rmap.forEach((b, off) => {
    if (decodeRmapOwner(b, off) !== OWN_INODES) return;
    const start = b.readUInt32BE(off);
    for (let bno = start; bno < start + b.readUInt32BE(off + 4); bno += CHUNK_BLOCKS) {
      let mask = '';
      let freecount = 0;
      for (let i = 0; i < INODES_PER_CHUNK; i++) {
        const blk = fsx.fs.cache.read(fsx.fs.geo.fsbno(ag.agno, bno + Math.floor(i / INODES_PER_BLOCK)), fsx.inodes.blockOps).data;
        const isFree = blk.readUInt16BE((i % INODES_PER_BLOCK) * INODE_SIZE + OFF_I_MODE) === 0;
        mask += isFree ? '1' : '0';
        if (isFree) freecount++;
      }
      fresh.push(`${bno * INODES_PER_BLOCK}:${freecount}:${mask}`);
      inodes += INODES_PER_CHUNK;
      free += freecount;
    }
  });
  const tree: string[] = [];
  ag.ino.forEach((b, off) => {
    const r = decodeInobt(b, off);
    let mask = '';
    for (let i = 0; i < INODES_PER_CHUNK; i++) mask += ((i < 32 ? r.freeLo >>> i : r.freeHi >>> (i - 32)) & 1) === 1 ? '1' : '0';
    tree.push(`${r.startino}:${r.freecount}:${mask}`);
  });
  return { fresh: fresh.join(' '), tree: tree.join(' '), header: `${ag.inodeCount}/${ag.freeInodes}`, counted: `${inodes}/${free}` };
}

/** Creates and removes files in AG agno (inside a directory there), its files' contents kept. */
function workload(mount: { fsx: Rmapfs }, agno: number, seed: number): { work: (n: number) => void; data: Map<number, Buffer> } {
  const rng = new Rng(seed);
  let fsx = mount.fsx;
  let made = 0;
  let dir = fsx.rootIno;
  for (let i = 0; fsx.fs.geo.inoAgno(dir) !== agno; i++) dir = fsx.mkdir(fsx.rootIno, `d${agno}-${seed}-${i}`, S_IFDIR | 0o755, 0, 0).ino;
  const files: { ino: number; name: string }[] = [];
  const data = new Map<number, Buffer>();
  const work = (n: number): void => {
    fsx = mount.fsx; // reopened after damage on disk
    for (let i = 0; i < n; i++) {
      if (files.length < 20 || rng.next() < (files.length < 300 ? 0.55 : 0.45)) {
        const name = `f${made++}`;
        const ino = fsx.create(dir, name, S_IFREG | 0o644, 0, 0).ino;
        const b = Buffer.alloc(1 + rng.int(3000), ino & 0xff);
        fsx.write(ino, 0, b);
        files.push({ ino, name });
        data.set(ino, b);
      } else {
        const [f] = files.splice(rng.int(files.length), 1);
        fsx.unlink(dir, f!.name);
        data.delete(f!.ino);
      }
    }
  };
  return { work, data };
}

function unchanged(t: Test, fsx: Rmapfs, data: Map<number, Buffer>): void {
  let bad = 0;
  for (const [f, b] of data) if (!fsx.read(f, 0, b.length).equals(b)) bad++;
  t.equal(bad, 0, `${data.size} files unchanged`);
}

type Damage = 'leaf record' | 'free mask' | 'wrong freecount' | 'leaf crc';

/** Damages AG ag's inode btree leaf (the last record, or a byte on disk for the crc). */
function damage(image: string, fsx: Rmapfs, agno: number, how: Damage): Rmapfs {
  const ag = fsx.fs.alloc.ag(agno);
  if (how === 'leaf crc') {
    // The last leaf's records changed on disk behind the filesystem's back.
    fsx.fsync();
    let leaf = -1;
    ag.ino.visitBlocks((ptr) => { leaf = ptr; });
    const fsbno = fsx.fs.geo.fsbno(agno, leaf);
    fsx.close();
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, fsbno * BLOCK_SIZE + 200);
    fs.closeSync(fd);
    return Rmapfs.open(image);
  }
  fsx.fs.run(() => {
    const cur = ag.ino.cursor();
    if (!cur.last()) throw new Error('empty inode btree');
    const r = decodeInobt(cur.record(), 0);
    if (how === 'wrong freecount') r.freecount++;
    else if (how === 'leaf record') r.startino += INODES_PER_CHUNK; // a chunk where there is none
    else {
      // The first inode (in use) marked free, count and mask agreeing: only the inode cores tell.
      r.freeLo = (r.freeLo | 1) >>> 0;
      r.freecount++;
    }
    const b = Buffer.alloc(16);
    encodeInobt(r, b);
    cur.update(b);
  });
  return fsx;
}

for (const how of ['leaf record', 'free mask', 'wrong freecount', 'leaf crc'] as const) {
  t.test(`a damaged inode btree (${how}) is rebuilt from the rmap and the inode cores`, async (t) => {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    const mount = { fsx: Rmapfs.open(image) };
    t.teardown(() => mount.fsx.close());
    const a0 = workload(mount, 0, testSeed(3));
    a0.work(300);
    const a1 = workload(mount, 1, testSeed(4));
    a1.work(100);
    t.same(check(mount.fsx), [], 'clean before the damage');
    mount.fsx = damage(image, mount.fsx, 0, how);
    const fsx = mount.fsx;
    t.ok(check(fsx).some((p) => /inode btree|inobt|inode/.test(p)), `check sees the damage: ${check(fsx)[0]}`);
    fsx.fs.alloc.ag(0).markSick('inobt', 'test damage');
    // Writers elsewhere keep going between the slices (the damaged AG gets no new inodes meanwhile).
    const r = await repairInodeBtree(fsx, 0, { sliceMs: 1e9, maxUnits: 4, betweenSlices: () => a1.work(3) });
    t.ok(r.chunks > 0 && r.btreeBlocks > 0, `rebuilt: ${r.chunks} chunks, ${r.freeInodes} free inodes, old ${r.oldBlocks} blocks`);
    t.notOk(fsx.fs.alloc.ag(0).health.isSick('inobt'), 'no longer known sick');
    const v = inobtViews(fsx, fsx.fs.alloc.ag(0));
    t.equal(v.tree, v.fresh, 'the inode btree is what the rmap and the inode cores say');
    t.equal(v.header, v.counted, 'the header counts what the tree holds');
    t.same(check(fsx), [], 'clean after the repair');
    a0.work(100);
    t.same(check(fsx), [], 'still clean after more creates and removes in the rebuilt AG');
    unchanged(t, fsx, a0.data);
    unchanged(t, fsx, a1.data);
    t.end();
  });
}

t.test('files created and removed in the AG between slices: the result equals a fresh computation', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const seed = testSeed(Date.now() % 100000);
  t.comment(`seed ${seed}`);
  const { work, data } = workload({ fsx }, 0, seed);
  work(600);
  const chunksBefore = fsx.fs.alloc.ag(0).ino.count();
  // Writers in the first slices (the walk goes on as long as they add records).
  let slices = 0;
  const r = await repairInodeBtree(fsx, 0, { sliceMs: 1e9, maxUnits: 2, betweenSlices: () => { if (slices++ < 150) work(6); } });
  t.ok(r.liveUpdates > 0, `${r.liveUpdates} live updates heard (${chunksBefore} chunks before, ${r.chunks} after)`);
  const v = inobtViews(fsx, fsx.fs.alloc.ag(0));
  t.equal(v.tree, v.fresh, 'inode btree = a fresh computation from the rmap and the inode cores');
  t.equal(v.header, v.counted, 'header counts = the tree');
  t.same(check(fsx), [], 'clean');
  t.ok(r.commitPauseMs >= 0, `commit pause ${r.commitPauseMs.toFixed(2)} ms`);
  work(200);
  unchanged(t, fsx, data);
  fsx.close();
  fsx = Rmapfs.open(image);
  t.same(check(fsx), [], 'clean after reopen');
  unchanged(t, fsx, data);
  fsx.close();
  t.end();
});

t.test('bad input: an AG past the end, a cancelled repair', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  for (let i = 0; i < 300; i++) fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0);
  await t.rejects(repairInodeBtree(fsx, 7), { code: 'EFSCORRUPTED' }, 'no AG 7');
  const rootBefore = fsx.fs.alloc.ag(0).ino.storage.getRoot().ptr;
  await t.rejects(repairInodeBtree(fsx, 0, { sliceMs: 1e9, maxUnits: 1, cancelled: () => true }), { code: 'ECANCELED' });
  t.equal(fsx.fs.alloc.ag(0).ino.storage.getRoot().ptr, rootBefore, 'the old inode btree is still in place');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('one damaged inode is the inode\'s problem, not the inode btree\'s (whose chunk check finds inodes at home)', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  // A file whose inode block is not the root directory's (opening the filesystem reads that one).
  const rootBlock = fsx.fs.geo.inoLocation(fsx.rootIno).fsbno;
  let ino = fsx.rootIno;
  for (let i = 0; fsx.fs.geo.inoLocation(ino).fsbno === rootBlock; i++) ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
  const { fsbno, offset } = fsx.fs.geo.inoLocation(ino);
  fsx.close();
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.from([0xa5]), 0, 1, fsbno * BLOCK_SIZE + offset + 100);
  fs.closeSync(fd);
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const problems = check(fsx);
  t.ok(problems.some((p) => p.includes(`inode ${ino}`) && p.includes('bad crc32c')), 'the inode is reported');
  t.same(problems.filter((p) => p.startsWith('inobt')), [], 'the inode btree is not blamed');
  t.end();
});
