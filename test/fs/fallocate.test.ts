/**
 * fallocate(2) modes in process (Rmapfs.fallocate, src/file/fallocate.ts):
 * the argument rules, KEEP_SIZE, punch hole and zero range on unaligned
 * ranges, past EOF, over holes and unwritten extents, a block map changing
 * form in the middle of the call, and ENOSPC part way through a zero-range
 * leaving nothing changed. Each case compares the file with a model of its
 * bytes, its extents' states, st_blocks, and ends with a clean check.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { FORK_BTREE, FORK_EXTENTS, MAX_INLINE_EXTENTS, S_IFREG } from '../../src/inode/inode-format';
import type { Extent } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { MAX_FILE_SIZE } from '../../src/file/file';
import {
  FALLOC_FL_COLLAPSE_RANGE, FALLOC_FL_INSERT_RANGE, FALLOC_FL_KEEP_SIZE, FALLOC_FL_NO_HIDE_STALE, FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
} from '../../src/file/fallocate';
import type { RmapUpdate } from '../../src/alloc/alloc';
import { RMAP_UNWRITTEN } from '../../src/rmap/rmap-btree';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { caught } from '../lib/caught';
import { FileModel } from '../lib/file-model';
import { Rng, testSeed } from '../lib/rng';
import { repairInodeCore } from '../../src/repair/inode-repair';

const B = BLOCK_SIZE;
const KEEP = FALLOC_FL_KEEP_SIZE;
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const ZERO = FALLOC_FL_ZERO_RANGE;

function extentsOf(fsx: Rmapfs, ino: number): Extent[] {
  return new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).extents();
}

/** The file's extents as "fileoff+count[u]" (u: unwritten); adjacent extents of one state are joined. */
function shape(fsx: Rmapfs, ino: number): string {
  const runs: { off: number; n: number; u: boolean }[] = [];
  for (const e of extentsOf(fsx, ino)) {
    const last = runs[runs.length - 1];
    if (last !== undefined && last.off + last.n === e.fileoff && last.u === e.unwritten) last.n += e.blockcount;
    else runs.push({ off: e.fileoff, n: e.blockcount, u: e.unwritten });
  }
  return runs.map((r) => `${r.off}+${r.n}${r.u ? 'u' : ''}`).join(' ');
}

/** A file of `blocks` blocks, each byte its block number + 1 (nothing is zero). */
function patterned(fsx: Rmapfs, name: string, blocks: number): { ino: number; model: Buffer } {
  const ino = fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
  const model = Buffer.alloc(blocks * B);
  for (let b = 0; b < blocks; b++) model.fill((b % 250) + 1, b * B, (b + 1) * B);
  fsx.write(ino, 0, model);
  return { ino, model };
}

/** The file reads as the model (its size too), and unwritten blocks' stale bytes never show. */
function same(t: Test, fsx: Rmapfs, ino: number, model: Buffer, what: string): void {
  t.equal(fsx.stat(ino).size, model.length, `${what}: size`);
  t.ok(fsx.read(ino, 0, model.length + B).equals(model), `${what}: contents`);
}

const code = (fn: () => unknown): string | undefined => (caught(fn) as { code?: string } | undefined)?.code;

t.test('argument rules, as fallocate(2) gives them; nothing changes', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino, model } = patterned(fsx, 'f', 4);
  const dir = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  const link = fsx.symlink(fsx.rootIno, 'l', 'f', 0, 0).ino;
  const blocks = fsx.stat(ino).blocks;
  t.equal(code(() => fsx.fallocate(ino, 0, 0, 0)), 'EINVAL', 'length 0');
  t.equal(code(() => fsx.fallocate(ino, PUNCH, 0, 0)), 'EINVAL', 'length 0 punch');
  t.equal(code(() => fsx.fallocate(ino, 0, -1, B)), 'EINVAL', 'negative offset');
  t.equal(code(() => fsx.fallocate(ino, 0, 0, -B)), 'EINVAL', 'negative length');
  t.equal(code(() => fsx.fallocate(ino, FALLOC_FL_PUNCH_HOLE, 0, B)), 'EOPNOTSUPP', 'punch without KEEP_SIZE');
  t.equal(code(() => fsx.fallocate(ino, PUNCH | ZERO, 0, B)), 'EOPNOTSUPP', 'punch and zero at once');
  t.equal(code(() => fsx.fallocate(ino, FALLOC_FL_COLLAPSE_RANGE, 0, B)), 'EOPNOTSUPP', 'collapse range');
  t.equal(code(() => fsx.fallocate(ino, FALLOC_FL_INSERT_RANGE, 0, B)), 'EOPNOTSUPP', 'insert range');
  t.equal(code(() => fsx.fallocate(ino, FALLOC_FL_NO_HIDE_STALE, 0, B)), 'EOPNOTSUPP', 'no-hide-stale');
  t.equal(code(() => fsx.fallocate(ino, 0x100, 0, B)), 'EOPNOTSUPP', 'an unknown flag');
  t.equal(code(() => fsx.fallocate(ino, KEEP, MAX_FILE_SIZE - B, 2 * B)), 'EFBIG', 'past the largest file');
  t.equal(code(() => fsx.fallocate(ino, ZERO, MAX_FILE_SIZE, 1)), 'EFBIG', 'zero range past the largest file');
  t.equal(code(() => fsx.fallocate(dir, 0, 0, B)), 'EISDIR', 'a directory');
  t.equal(code(() => fsx.fallocate(link, 0, 0, B)), 'ENODEV', 'a symlink');
  same(t, fsx, ino, model, 'after the refusals');
  t.equal(fsx.stat(ino).blocks, blocks, 'no blocks taken');
  fsx.fallocate(ino, KEEP, MAX_FILE_SIZE + 1 - B, B - 1); // the last block a file can have
  t.equal(fsx.stat(ino).blocks, blocks + 8, 'the last block of the largest file preallocated');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('KEEP_SIZE: blocks past EOF, counted, read as nothing, freed by truncate', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino, model } = patterned(fsx, 'f', 2);
  fsx.fallocate(ino, KEEP, B + 100, 10 * B);
  t.equal(shape(fsx, ino), '0+2 2+10u', 'unwritten past EOF, up to the range end rounded up');
  same(t, fsx, ino, model, 'size kept');
  t.equal(fsx.stat(ino).blocks, 12 * 8, 'st_blocks counts them');
  fsx.fallocate(ino, 0, 0, 4 * B); // mode 0 inside: the size grows over unwritten blocks
  const grown = Buffer.concat([model, Buffer.alloc(2 * B)]);
  same(t, fsx, ino, grown, 'mode 0 grew the size over them');
  fsx.truncate(ino, 3 * B);
  t.equal(shape(fsx, ino), '0+2 2+1u', 'truncate freed what lay past the new size');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('the inode core repair leaves the size of a file with unwritten blocks past EOF alone', async (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino, model } = patterned(fsx, 'f', 2);
  fsx.fallocate(ino, KEEP, 0, 10 * B);
  fsx.fs.run(() => { fsx.inodes.get(ino).nblocks = 3; }); // something for the repair to do
  const r = await repairInodeCore(fsx, ino);
  t.same(r.changes, ['block count 3 -> 10'], 'the block count, not the size');
  same(t, fsx, ino, model, 'after the repair');
  t.same(check(fsx), [], 'check clean');
});

t.test('punch hole: whole blocks freed (busy until the log force), partial ones zeroed', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino, model } = patterned(fsx, 'f', 32);
  fsx.fsync();
  fsx.fallocate(ino, PUNCH, 3 * B + 100, 7 * B - 50); // bytes 3B+100 .. 10B+50
  model.fill(0, 3 * B + 100, 10 * B + 50);
  t.equal(shape(fsx, ino), '0+4 10+22', 'blocks 4..9 unmapped');
  t.equal(fsx.stat(ino).blocks, 26 * 8, 'st_blocks down by 6 blocks');
  t.ok(fsx.fs.alloc.busyCount() > 0, 'the freed blocks are busy');
  fsx.fsync();
  t.equal(fsx.fs.alloc.busyCount(), 0, 'reusable after the log force');
  same(t, fsx, ino, model, 'unaligned punch');
  fsx.fallocate(ino, PUNCH, 20 * B + 1, 10); // within one block
  model.fill(0, 20 * B + 1, 20 * B + 11);
  same(t, fsx, ino, model, 'punch inside one block');
  t.equal(shape(fsx, ino), '0+4 10+22', 'nothing unmapped');
  fsx.fallocate(ino, PUNCH, 2 * B, 10 * B); // over the hole punched before
  model.fill(0, 2 * B, 12 * B);
  same(t, fsx, ino, model, 'punch over a hole');
  t.equal(shape(fsx, ino), '0+2 12+20', 'its edges went too');
  fsx.fallocate(ino, KEEP, 32 * B, 8 * B);
  fsx.fallocate(ino, PUNCH, 30 * B, 100 * B); // past EOF
  model.fill(0, 30 * B);
  same(t, fsx, ino, model, 'punch past EOF keeps the size');
  t.equal(shape(fsx, ino), '0+2 12+18', 'blocks past EOF freed too');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('zero range: whole blocks become unwritten in place, partial ones zeroed, holes allocated', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino, model } = patterned(fsx, 'f', 16);
  fsx.fallocate(ino, PUNCH, 12 * B, 2 * B); // a hole at 12..13
  model.fill(0, 12 * B, 14 * B);
  const before = extentsOf(fsx, ino);
  const free = fsx.fs.alloc.freeBlocks();
  fsx.fallocate(ino, ZERO, 2 * B + 7, 4 * B); // bytes 2B+7 .. 6B+7: blocks 3..5 whole
  model.fill(0, 2 * B + 7, 6 * B + 7);
  t.equal(shape(fsx, ino), '0+3 3+3u 6+6 14+2', 'blocks 3..5 unwritten');
  t.equal(extentsOf(fsx, ino).find((e) => e.fileoff === 3)?.fsbno, before[0]!.fsbno + 3, 'in place: the same disk blocks');
  t.equal(fsx.fs.alloc.freeBlocks(), free, 'nothing freed or allocated');
  same(t, fsx, ino, model, 'unaligned zero range');
  fsx.fallocate(ino, ZERO, 10 * B + 5, 5 * B); // over written 10..11, the hole 12..13, written 14..15 (partial)
  model.fill(0, 10 * B + 5, 15 * B + 5);
  t.equal(shape(fsx, ino), '0+3 3+3u 6+5 11+4u 15+1', 'the hole got unwritten blocks, 14 whole went unwritten');
  same(t, fsx, ino, model, 'zero range over a hole');
  fsx.fallocate(ino, ZERO, 2 * B, 6 * B); // over unwritten 3..5 and beyond
  model.fill(0, 2 * B, 8 * B);
  t.equal(shape(fsx, ino), '0+2 2+6u 8+3 11+4u 15+1', 'unwritten extents overlapped');
  same(t, fsx, ino, model, 'zero range over unwritten');
  fsx.fallocate(ino, ZERO | KEEP, 15 * B + 10, 4 * B); // past EOF, keeping the size
  model.fill(0, 15 * B + 10);
  t.equal(shape(fsx, ino), '0+2 2+6u 8+3 11+4u 15+1 16+4u', 'unwritten past EOF (the partial block 19 too)');
  same(t, fsx, ino, model, 'zero range past EOF with KEEP_SIZE');
  fsx.fallocate(ino, ZERO, 18 * B, B + 1); // past EOF, growing
  const grown = Buffer.concat([model, Buffer.alloc(3 * B + 1)]);
  t.equal(shape(fsx, ino), '0+2 2+6u 8+3 11+4u 15+1 16+4u', 'already there');
  same(t, fsx, ino, grown, 'zero range growing the file');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('zero range tells live rmap hooks of each state change', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const { ino } = patterned(fsx, 'f', 8);
  const seen: string[] = [];
  const hook = (u: RmapUpdate): void => {
    if (u.owner === ino) seen.push(`${u.op} ${u.blockcount} off ${u.offset}${u.flags & RMAP_UNWRITTEN ? ' u' : ''}`);
  };
  fsx.fs.alloc.addRmapHook(hook, () => t.fail('hook failed'));
  t.teardown(() => fsx.fs.alloc.removeRmapHook(hook));
  fsx.fallocate(ino, ZERO, 2 * B, 3 * B);
  t.same(seen, ['unmap 3 off 2', 'map 3 off 2 u'], 'written blocks 2..4 unmapped, mapped unwritten');
  t.end();
});

t.test('a block map changing form in the middle of the call', (t) => {
  // One AG: a file's first block goes to the first free one, right after the file written before it.
  const fsx = Rmapfs.open(scratchImage(t, { agCount: 1 }));
  t.teardown(() => fsx.close());
  const formatOf = (ino: number): number => fsx.inodes.get(ino).format;
  // btree -> inline: 26 blocks preallocated (one extent), every other one written: 26 extents, a btree. Zeroing
  // them all turns each written one unwritten, joining its neighbours: 26 -> 1 extents on the way.
  const a = fsx.create(fsx.rootIno, 'a', S_IFREG | 0o644, 0, 0).ino;
  fsx.preallocate(a, 0, 26 * B);
  for (let b = 0; b < 26; b += 2) fsx.write(a, b * B, Buffer.alloc(B, 1));
  t.equal(formatOf(a), FORK_BTREE, 'a: in a btree');
  fsx.fallocate(a, ZERO, 0, 26 * B);
  t.equal(shape(fsx, a), '0+26u', 'a: one unwritten extent');
  t.equal(formatOf(a), FORK_EXTENTS, 'a: back inline');
  same(t, fsx, a, Buffer.alloc(26 * B), 'a');
  // inline -> btree: 11 written blocks with holes between (another file's blocks between them on disk), then a
  // zero range over all of it: each hole gets its own unwritten extent, past 12 extents in the middle of the call.
  const b = fsx.create(fsx.rootIno, 'b', S_IFREG | 0o644, 0, 0).ino;
  const c = fsx.create(fsx.rootIno, 'c', S_IFREG | 0o644, 0, 0).ino;
  const model = Buffer.alloc(21 * B);
  for (let i = 0; i < 22; i += 2) {
    fsx.write(b, i * B, Buffer.alloc(B, i + 1));
    fsx.write(c, i * B, Buffer.alloc(B, i + 1));
    model.fill(i + 1, i * B, (i + 1) * B);
  }
  t.equal(extentsOf(fsx, b).length, 11, 'b: 11 extents');
  t.equal(formatOf(b), FORK_EXTENTS, 'b: inline');
  fsx.fallocate(b, ZERO, B + 100, 18 * B);
  model.fill(0, B + 100, 19 * B + 100);
  t.ok(extentsOf(fsx, b).length > MAX_INLINE_EXTENTS, `b: more extents than fit inline (${shape(fsx, b)})`);
  t.equal(formatOf(b), FORK_BTREE, 'b: spilled into a btree');
  same(t, fsx, b, model, 'b');
  // inline -> btree in a punch: d's 12 extents of 2 blocks, e's blocks between them on disk; a hole punched in the
  // middle of one makes 13.
  const d = fsx.create(fsx.rootIno, 'd', S_IFREG | 0o644, 0, 0).ino;
  const e = fsx.create(fsx.rootIno, 'e', S_IFREG | 0o644, 0, 0).ino;
  const dm = Buffer.alloc(30 * B);
  for (let i = 0; i < 22; i += 2) {
    fsx.write(d, i * B, Buffer.alloc(2 * B, i + 1));
    fsx.write(e, i * B, Buffer.alloc(B, 1));
    dm.fill(i + 1, i * B, (i + 2) * B);
  }
  fsx.truncate(d, 30 * B);
  fsx.fallocate(d, KEEP, 22 * B, 8 * B);
  t.equal(extentsOf(fsx, d).length, MAX_INLINE_EXTENTS, `d: 12 extents (${extentsOf(fsx, d).map((e) => `${e.fileoff}+${e.blockcount}@${e.fsbno}`).join(' ')})`);
  t.equal(formatOf(d), FORK_EXTENTS, 'd: inline');
  fsx.fallocate(d, PUNCH, 24 * B + 100, 2 * B); // splits the unwritten extent (22..29): 13
  t.equal(formatOf(d), FORK_BTREE, 'd: spilled in the punch');
  same(t, fsx, d, dm, 'd');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('ENOSPC in the middle of a large zero-range changes nothing', (t) => {
  const fsx = Rmapfs.open(scratchImage(t, { size: 16 << 20, agCount: 1 }));
  t.teardown(() => fsx.close());
  // A file of written blocks with holes between, spanning much more than the free space left.
  const { ino, model } = patterned(fsx, 'f', 64);
  for (let b = 1; b < 64; b += 4) {
    fsx.fallocate(ino, PUNCH, b * B, 2 * B);
    model.fill(0, b * B, (b + 2) * B);
  }
  fsx.fallocate(ino, KEEP, 64 * B, 1); // to be sure the file keeps blocks past EOF through it all
  const filler = fsx.create(fsx.rootIno, 'filler', S_IFREG | 0o644, 0, 0).ino;
  fsx.fsync();
  let pos = 0;
  for (const blocks of [64, 8, 1]) {
    for (;;) {
      try {
        pos += fsx.write(filler, pos, Buffer.alloc(blocks * B, 3));
      } catch {
        break;
      }
    }
  }
  fsx.fsync();
  t.ok(fsx.fs.alloc.availableBlocks() < 32, `a few blocks left outside the reserve pool (${fsx.fs.alloc.availableBlocks()})`);
  const shapeBefore = shape(fsx, ino);
  const free = fsx.fs.alloc.freeBlocks();
  const blocks = fsx.stat(ino).blocks;
  // Zero from within block 0 to past EOF without KEEP_SIZE: would convert, zero bytes of block 0, and grow.
  t.equal(code(() => fsx.fallocate(ino, ZERO, 100, 1024 * B)), 'ENOSPC', 'ENOSPC');
  t.equal(shape(fsx, ino), shapeBefore, 'the extents as they were (written ones not converted)');
  t.equal(fsx.stat(ino).blocks, blocks, 'st_blocks as it was');
  t.equal(fsx.fs.alloc.freeBlocks(), free, 'free space as it was');
  same(t, fsx, ino, model, 'contents and size as they were (block 0 not zeroed)');
  t.equal(code(() => fsx.fallocate(ino, 0, 0, 1024 * B)), 'ENOSPC', 'ENOSPC in a preallocation');
  t.equal(shape(fsx, ino), shapeBefore, 'the extents as they were');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('random writes, truncates and every mode against a model of the bytes, across a remount', (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const files = new FileModel(fsx, new Rng(testSeed(1517)));
  const inos = [files.create('x'), files.create('y'), files.create('z')];
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < 300; i++) files.randomChange(inos[i % inos.length]!);
    t.same(check(fsx), [], `round ${round}: check clean`);
    files.unchanged(t);
  }
  fsx.close();
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  files.fsx = fsx;
  t.same(check(fsx), [], 'clean after a remount');
  files.unchanged(t);
  t.end();
});
