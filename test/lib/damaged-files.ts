/**
 * Damaged files for the file-level repair tests: a model of what files must
 * hold, a sparse file with hundreds of extents (a two-level block map), a
 * few bystanders, the damage, and one repair through the structure table
 * (onlineRepair, as `rmapfs repair` runs it) checked end to end.
 */
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { onlineRepair } from '../../src/fsck/online';
import { selectStructures } from '../../src/fsck/table';
import { FORK_LOCAL, S_IFREG, encodeExtent, decodeExtent } from '../../src/inode/inode-format';
import type { Extent } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { Rng, testSeed } from './rng';
import { scratchImage } from './fs';
import { check } from './check';

/** Files and what they must hold. */
export class Model {
  readonly files = new Map<number, Buffer>();

  write(fsx: Rmapfs, ino: number, pos: number, data: Buffer): void {
    fsx.write(ino, pos, data);
    const old = this.files.get(ino) ?? Buffer.alloc(0);
    const next = Buffer.alloc(Math.max(old.length, pos + data.length));
    old.copy(next);
    data.copy(next, pos);
    this.files.set(ino, next);
  }

  truncate(fsx: Rmapfs, ino: number, size: number): void {
    fsx.truncate(ino, size);
    const old = this.files.get(ino)!;
    const next = Buffer.alloc(size);
    old.copy(next, 0, 0, Math.min(size, old.length));
    this.files.set(ino, next);
  }

  unchanged(t: Test, fsx: Rmapfs): void {
    const bad: number[] = [];
    for (const [ino, want] of this.files) if (!fsx.read(ino, 0, want.length + 1).equals(want)) bad.push(ino);
    t.same(bad, [], `${this.files.size} files read back byte for byte`);
  }
}

/** A sparse file of `extents` one-block extents (every other block written: no two can merge). */
export function fragmentedFile(fsx: Rmapfs, model: Model, rng: Rng, name: string, extents: number): number {
  const ino = fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < extents; i++) {
    const block = Buffer.alloc(BLOCK_SIZE);
    for (let j = 0; j < BLOCK_SIZE; j += 512) block.writeUInt32BE(rng.int(0x7fffffff), j);
    model.write(fsx, ino, 2 * i * BLOCK_SIZE, block);
  }
  return ino;
}

/** Other files, small and large, that the repairs must leave alone. */
export function bystanders(fsx: Rmapfs, model: Model, rng: Rng, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const ino = fsx.create(fsx.rootIno, `other${i}`, S_IFREG | 0o644, 0, 0).ino;
    model.write(fsx, ino, 0, Buffer.alloc(1 + rng.int(3 * BLOCK_SIZE), 1 + rng.int(250)));
    out.push(ino);
  }
  return out;
}

/** The btree blocks of a file's block map: [fsbno, level]. */
function bmbtBlocks(fsx: Rmapfs, ino: number): [number, number][] {
  const blocks: [number, number][] = [];
  new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).btree!.visitBlocks((ptr, level) => { blocks.push([ptr, level]); });
  return blocks;
}

/** Zeroes a block on disk behind the filesystem's back; the filesystem reopened. */
function zeroOnDisk(image: string, fsx: Rmapfs, fsbno: number): Rmapfs {
  fsx.fsync();
  fsx.close();
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, fsbno * BLOCK_SIZE);
  fs.closeSync(fd);
  return Rmapfs.open(image);
}

/** Damage to one leaf record of the block map that the rmap contradicts (or that is wrong by itself). */
export type LeafRecordDamage = 'leaf record at free space' | 'leaf record moved in the file' | 'leaf record marked unwritten'
  | 'leaf record one block longer' | 'leaf record at the superblock';

export type FileDamage = LeafRecordDamage | 'zeroed leaf' | 'zeroed root' | 'wrong block count' | 'bad mode' | 'local fork in a file';

/** The extent a leaf record damage makes of the record (the file's extents are one block, every other block). */
function damagedExtent(fsx: Rmapfs, how: LeafRecordDamage, e: Extent): Extent {
  switch (how) {
    case 'leaf record at free space': {
      const free = fsx.fs.alloc.ag(1).findFree({ minLen: 1, maxLen: 1, goal: 0 })!;
      return { ...e, fsbno: fsx.fs.geo.fsbno(1, free.startblock) };
    }
    case 'leaf record moved in the file': return { ...e, fileoff: e.fileoff + 1 };
    case 'leaf record marked unwritten': return { ...e, unwritten: true };
    case 'leaf record one block longer': return { ...e, blockcount: e.blockcount + 1 };
    case 'leaf record at the superblock': return { ...e, fsbno: 0 };
  }
}

/** Damages file ino as `how` says; the filesystem (reopened when the damage went to disk). */
function damage(image: string, fsx: Rmapfs, ino: number, how: FileDamage): Rmapfs {
  const blocks = bmbtBlocks(fsx, ino);
  const leaves = blocks.filter(([, level]) => level === 0).map(([b]) => b);
  const root = blocks.find(([, level]) => level > 0)![0];
  switch (how) {
    case 'zeroed leaf': return zeroOnDisk(image, fsx, leaves[1]!);
    case 'zeroed root': return zeroOnDisk(image, fsx, root);
    case 'leaf record at free space':
    case 'leaf record moved in the file':
    case 'leaf record marked unwritten':
    case 'leaf record one block longer':
    case 'leaf record at the superblock':
      fsx.fs.run(() => {
        const tree = new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).btree!;
        const buf = fsx.fs.cache.read(leaves[0]!, tree.bufOps);
        const off = tree.geo.recOffset(5);
        encodeExtent(damagedExtent(fsx, how, decodeExtent(buf.data, off)), buf.data, off);
        fsx.fs.cache.markDirty(buf);
      });
      return fsx;
    case 'wrong block count':
      fsx.fs.run(() => { const inode = fsx.inodes.get(ino); inode.nblocks = inode.nblocks + 5; });
      return fsx;
    case 'bad mode':
      fsx.fs.run(() => { const inode = fsx.inodes.get(ino); inode.mode = 0o170644; });
      return fsx;
    case 'local fork in a file':
      fsx.fs.run(() => { fsx.inodes.get(ino).format = FORK_LOCAL; });
      return fsx;
  }
}

export const quietHooks = { foregroundWaiting: () => true, abortReason: () => null, send: () => undefined };

/** Closes and opens the filesystem again: what the repair wrote is read from the device, verified. */
export function remount(image: string, fsx: Rmapfs): Rmapfs {
  fsx.close();
  return Rmapfs.open(image);
}

/** Extents of the damaged file: a two-level block map (a leaf holds ~250). */
export const DAMAGED_FILE_EXTENTS = 300;

/**
 * Makes a filesystem with bystanders and a big sparse file, damages the file
 * as `how` says, checks the damage shows, repairs through the table, and
 * checks: the file repaired by path, clean, every file byte for byte, and
 * usable (a write and a truncate, clean again). The repairs' results.
 */
export async function damageAndRepair(t: Test, how: FileDamage): Promise<FileRepairResult[]> {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const mount = { fsx: Rmapfs.open(image) };
  t.teardown(() => mount.fsx.close());
  const rng = new Rng(testSeed(13));
  const model = new Model();
  bystanders(mount.fsx, model, rng, 10);
  const ino = fragmentedFile(mount.fsx, model, rng, 'big', DAMAGED_FILE_EXTENTS);
  t.same(check(mount.fsx), [], 'clean before the damage');
  mount.fsx = damage(image, mount.fsx, ino, how);
  const fsx = mount.fsx;
  const found = check(fsx);
  t.ok(found.some((p) => p.includes(`inode ${ino}`)), `check sees the damage: ${found[0]}`);
  const reply = await onlineRepair(fsx, selectStructures(null, null), null, { forceRebuild: false, measureHeap: false, cancelled: () => false }, quietHooks);
  t.ok(reply.ok, `repaired: ${String(reply.error ?? '')}`);
  const files = reply.files as FileRepairResult[];
  // What changed is the file's (the directory naming it may be looked at too -- a wrong mode also shows
  // as its entry's file type -- and found sound).
  const changed = files.filter((f) => f.changes.length > 0);
  t.ok(changed.length > 0 && changed.every((f) => f.ino === ino) && files.every((f) => f.error === undefined),
    `the file repaired: ${JSON.stringify(files.map((f) => [f.type, f.ino, f.changes]))}`);
  t.ok(files.filter((f) => f.ino === ino).every((f) => f.path === '/big'), 'reported by its path');
  t.same(check(fsx), [], 'clean after the repair');
  model.unchanged(t, fsx);
  model.write(fsx, ino, 2 * DAMAGED_FILE_EXTENTS * BLOCK_SIZE, Buffer.alloc(3 * BLOCK_SIZE, 7));
  model.truncate(fsx, ino, (2 * DAMAGED_FILE_EXTENTS - 40) * BLOCK_SIZE + 100);
  t.same(check(fsx), [], 'clean after writing to it');
  model.unchanged(t, fsx);
  mount.fsx = remount(image, fsx);
  t.same(check(mount.fsx), [], 'clean as the device holds it (unmounted and mounted again)');
  model.unchanged(t, mount.fsx);
  return files;
}
