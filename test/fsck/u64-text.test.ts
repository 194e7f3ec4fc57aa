/**
 * Inode numbers above 2^53 (only damage puts them on disk) print exactly: a
 * JS number would round 2^60 + 3 to 2^60. A directory entry's inode number
 * in check's report and the directory repair's, an inode's own number field
 * in the core repair's report, a u64 field as db reads it, a directory's
 * ".." in check's report, and an rmap record's owner in check's.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { Directory, DIRENT_SIZE, DOTDOT, decodeDirent } from '../../src/dir/dir';
import { OFF_NUMRECS } from '../../src/btree/btree-block';
import { decodeRmap } from '../../src/rmap/rmap-btree';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { INODES_PER_BLOCK } from '../../src/format/geometry';
import { INODE_FIELDS, OFF_I_INO, S_IFREG } from '../../src/inode/inode-format';
import { findField, readField } from '../../src/format/fields';
import { onlineRepair } from '../../src/fsck/online';
import { selectStructures } from '../../src/fsck/table';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { quietHooks, remount } from '../lib/damaged-files';

const BIG = (1n << 60n) + 3n;
const BIG_TEXT = BIG.toString(); // 1152921504606846979; as a number it prints 1152921504606846976

function putU64(b: Buffer, off: number, v: bigint): void {
  b.writeUInt32BE(Number(v >> 32n), off);
  b.writeUInt32BE(Number(v & 0xffffffffn), off + 4);
}

function beU64(v: number): Buffer {
  const b = Buffer.alloc(8);
  putU64(b, 0, BigInt(v));
  return b;
}

async function repairAll(fsx: Rmapfs): Promise<string[]> {
  const reply = await onlineRepair(fsx, selectStructures(null, null), null,
    { forceRebuild: false, measureHeap: false, cancelled: () => false }, quietHooks);
  return (reply.files as FileRepairResult[]).flatMap((f) => f.changes);
}

function populated(t: Test): { image: string; fsx: Rmapfs; dirIno: number; fileIno: number } {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  const dirIno = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  const fileIno = fsx.create(dirIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(fileIno, 0, Buffer.from('hello'));
  return { image, fsx, dirIno, fileIno };
}

t.test('a directory entry naming inode 2^60 + 3', async (t) => {
  const { image, fsx: first, dirIno, fileIno } = populated(t);
  // The entry's inode number is found by its value (the record layout is dir.ts's alone).
  first.fs.run(() => {
    const tree = new Directory(first.inodes.get(dirIno), first.fs.alloc, first.fs.geo).tree;
    tree.visitBlocks((ptr, level) => {
      if (level !== 0) return;
      const buf = first.fs.cache.read(ptr, tree.bufOps);
      for (let i = 0; i < 8; i++) {
        const off = tree.geo.recOffset(i);
        if (decodeDirent(buf.data, off).ino !== fileIno) continue;
        const at = buf.data.subarray(off, off + DIRENT_SIZE).indexOf(beU64(fileIno));
        putU64(buf.data, off + at, BIG);
        first.fs.cache.markDirty(buf);
      }
    });
  });
  const fsx = remount(image, first);
  t.teardown(() => fsx.close());
  const found = check(fsx);
  t.ok(found.some((l) => l.includes(`points to inode ${BIG_TEXT},`)), `check names it exactly: ${found.join(' | ')}`);
  const changes = await repairAll(fsx);
  t.ok(changes.some((c) => c.includes(`inode number ${BIG_TEXT} is not valid`)), `the repair names it exactly: ${changes.join(' | ')}`);
});

t.test("an inode's own number field damaged to 2^60 + 3", async (t) => {
  const { image, fsx: first, dirIno } = populated(t);
  // A file out of the root's inode block (a block that does not verify holding the root: no mount).
  let fileIno = 0;
  for (let i = 0; i < 2 * INODES_PER_BLOCK; i++) fileIno = first.create(dirIno, `g${i}`, S_IFREG | 0o644, 0, 0).ino;
  first.fsync();
  const { fsbno, offset } = first.fs.geo.inoLocation(fileIno);
  first.close();
  // Behind the filesystem's back (the crc is left wrong, as random damage leaves it).
  const fd = fs.openSync(image, 'r+');
  const field = Buffer.alloc(8);
  putU64(field, 0, BIG);
  fs.writeSync(fd, field, 0, 8, fsbno * BLOCK_SIZE + offset + OFF_I_INO);
  const block = Buffer.alloc(BLOCK_SIZE);
  fs.readSync(fd, block, 0, BLOCK_SIZE, fsbno * BLOCK_SIZE);
  fs.closeSync(fd);
  t.equal(String(readField(block, offset, findField(INODE_FIELDS, 'ino', 'inode'))), BIG_TEXT, 'db reads the field exactly');
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const changes = await repairAll(fsx);
  t.ok(changes.some((c) => c.includes(`inode number ${BIG_TEXT} -> ${fileIno}`)), `the core repair names it exactly: ${changes.join(' | ')}`);
  t.same(check(fsx), [], 'clean after the repair');
});

t.test('a directory\'s ".." naming inode 2^60 + 3', async (t) => {
  const { image, fsx: first, dirIno } = populated(t);
  first.fs.run(() => {
    const tree = new Directory(first.inodes.get(dirIno), first.fs.alloc, first.fs.geo).tree;
    tree.visitBlocks((ptr, level) => {
      if (level !== 0) return;
      const buf = first.fs.cache.read(ptr, tree.bufOps);
      for (let i = 0; i < buf.data.readUInt16BE(OFF_NUMRECS); i++) {
        const off = tree.geo.recOffset(i);
        const d = decodeDirent(buf.data, off);
        if (!d.name.equals(DOTDOT)) continue;
        const at = buf.data.subarray(off, off + DIRENT_SIZE).indexOf(beU64(d.ino));
        putU64(buf.data, off + at, BIG);
        first.fs.cache.markDirty(buf);
      }
    });
  });
  const fsx = remount(image, first);
  t.teardown(() => fsx.close());
  const found = check(fsx);
  t.ok(found.some((l) => l.includes(`".." is ${BIG_TEXT},`)), `check names it exactly: ${found.join(' | ')}`);
});

t.test("an rmap record's owner damaged to 2^60 + 3", async (t) => {
  const { image, fsx: first, fileIno } = populated(t);
  // The record's owner is found by its value (the record layout is rmap-btree.ts's alone).
  let changed = 0;
  first.fs.run(() => {
    for (const ag of first.fs.alloc.ags) {
      ag.rmap.visitBlocks((ptr, level) => {
        if (level !== 0) return;
        const buf = first.fs.cache.read(ag.rmap.storage.bnoOf(ptr), ag.rmap.bufOps);
        for (let i = 0; i < buf.data.readUInt16BE(OFF_NUMRECS); i++) {
          const off = ag.rmap.geo.recOffset(i);
          if (decodeRmap(buf.data, off).owner !== fileIno) continue;
          const at = buf.data.subarray(off, off + ag.rmap.ops.recSize).indexOf(beU64(fileIno));
          putU64(buf.data, off + at, BIG);
          first.fs.cache.markDirty(buf);
          changed++;
        }
      });
    }
  });
  t.equal(changed, 1, 'one record changed');
  const fsx = remount(image, first);
  t.teardown(() => fsx.close());
  const found = check(fsx);
  t.ok(found.some((l) => l.includes(`to inode ${BIG_TEXT}, which is not in use`)), `check names it exactly: ${found.join(' | ')}`);
  t.notOk(found.some((l) => l.includes(String(Number(BIG)))), 'no line rounds it');
});
