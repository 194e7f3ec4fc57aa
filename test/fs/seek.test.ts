/**
 * Rmapfs.seek: lseek(2)'s SEEK_DATA / SEEK_HOLE from the block map
 * (src/file/seek.ts). Whole blocks: a block with any written byte is data
 * from its first byte; unwritten extents are holes (as XFS reports them);
 * EOF is a hole; ENXIO at or past EOF, before 0, and for SEEK_DATA with no
 * data left. Then a model check: random writes, punches, zero ranges and
 * preallocations over a file of 600 blocks (its map well past the 12 inline
 * extents and the 64 the seek reads at a time), every block boundary and a
 * byte inside each against a brute force over the model.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import { BlockMap } from '../../src/file/bmap';
import { scratchImage } from '../lib/fs';
import { Rng } from '../lib/rng';

const B = BLOCK_SIZE;

/** The errno code seek throws, or its answer. */
function seek(fsx: Rmapfs, ino: number, offset: number, kind: 'data' | 'hole'): number | string {
  try {
    return fsx.seek(ino, offset, kind);
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

t.test('SEEK_DATA / SEEK_HOLE on a small sparse file', (t) => {
  const image = scratchImage(t, { size: 16 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  t.equal(seek(fsx, ino, 0, 'data'), 'ENXIO', 'empty file: SEEK_DATA 0 is ENXIO (0 is EOF)');
  t.equal(seek(fsx, ino, 0, 'hole'), 'ENXIO', 'empty file: SEEK_HOLE 0 is ENXIO');

  // Blocks 0-1 data, 2-3 hole, 4 data up to byte 100 of it.
  fsx.write(ino, 0, Buffer.alloc(2 * B, 1));
  fsx.write(ino, 4 * B, Buffer.alloc(100, 2));
  const size = 4 * B + 100;
  t.equal(fsx.stat(ino).size, size);
  const cases: Array<[number, 'data' | 'hole', number | string, string]> = [
    [0, 'data', 0, 'data at 0'],
    [5000, 'data', 5000, 'inside data: the offset itself'],
    [2 * B, 'data', 4 * B, 'in the hole: the next data block'],
    [3 * B + 7, 'data', 4 * B, 'inside a hole block: the next data block'],
    [4 * B + 50, 'data', 4 * B + 50, 'inside the last block'],
    [size - 1, 'data', size - 1, 'the last byte'],
    [size, 'data', 'ENXIO', 'at EOF: ENXIO'],
    [size + B, 'data', 'ENXIO', 'past EOF: ENXIO'],
    [-1, 'data', 'ENXIO', 'negative: ENXIO (as iomap)'],
    [0, 'hole', 2 * B, 'the first hole after data'],
    [2 * B + 9, 'hole', 2 * B + 9, 'inside a hole: the offset itself'],
    [4 * B, 'hole', size, 'after the last data: EOF'],
    [size - 1, 'hole', size, 'the last byte: EOF'],
    [size, 'hole', 'ENXIO', 'at EOF: ENXIO'],
    [-1, 'hole', 'ENXIO', 'negative: ENXIO'],
  ];
  for (const [offset, kind, want, what] of cases) t.equal(seek(fsx, ino, offset, kind), want, `SEEK_${kind.toUpperCase()} ${offset}: ${what}`);

  // Unwritten space is a hole, wherever it is; the size grown over a hole leaves a hole at the end.
  fsx.fallocate(ino, 0, 2 * B, 2 * B);
  t.equal(seek(fsx, ino, 2 * B, 'data'), 4 * B, 'preallocated blocks 2-3: still a hole for SEEK_DATA');
  t.equal(seek(fsx, ino, 0, 'hole'), 2 * B, 'and for SEEK_HOLE');
  fsx.write(ino, 3 * B + 10, Buffer.from('x'));
  t.equal(seek(fsx, ino, 2 * B, 'data'), 3 * B, 'a byte written into block 3: data from its first byte');
  t.equal(seek(fsx, ino, 3 * B, 'hole'), size, 'blocks 3-4 data: the hole is EOF');
  fsx.truncate(ino, 100 * B);
  t.equal(seek(fsx, ino, 3 * B, 'hole'), 5 * B, 'grown by truncate: the hole after block 4');
  t.equal(seek(fsx, ino, 5 * B, 'data'), 'ENXIO', 'a hole to EOF: SEEK_DATA is ENXIO');
  fsx.fallocate(ino, FALLOC_FL_KEEP_SIZE, 100 * B, 10 * B);
  t.equal(seek(fsx, ino, 99 * B, 'hole'), 99 * B, 'unwritten past EOF changes nothing');
  fsx.fallocate(ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 0, B);
  t.equal(seek(fsx, ino, 0, 'data'), B, 'a zeroed block (unwritten) is a hole');
  fsx.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, B, B);
  t.equal(seek(fsx, ino, 0, 'data'), 3 * B, 'punched: the next data is block 3');

  const dir = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  t.equal(fsx.stat(dir).mode & S_IFDIR, S_IFDIR);
  t.equal(seek(fsx, dir, 0, 'data'), 'EINVAL', 'a directory: EINVAL (the kernel never asks)');
  t.end();
});

t.test('the map read a piece at a time: runs of extents longer than one piece', (t) => {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const RUN = 200; // more than the 64 extents read at a time, three times over
  // 200 unwritten extents (every other block preallocated), then data.
  const u = fsx.create(fsx.rootIno, 'unwritten', S_IFREG | 0o644, 0, 0).ino;
  for (let b = 0; b < 2 * RUN; b += 2) fsx.fallocate(u, FALLOC_FL_KEEP_SIZE, b * B, B);
  fsx.write(u, 2 * RUN * B, Buffer.from('data'));
  t.ok(new BlockMap(fsx.inodes.get(u), fsx.fs.alloc, fsx.fs.geo).count > RUN, 'as many extents');
  t.equal(seek(fsx, u, 0, 'data'), 2 * RUN * B, 'SEEK_DATA past 200 unwritten extents');
  // 200 written extents one after another in the file, apart on disk (another file's block
  // between each two), so none merge: SEEK_HOLE must read past all of them.
  const w = fsx.create(fsx.rootIno, 'written', S_IFREG | 0o644, 0, 0).ino;
  const other = fsx.create(fsx.rootIno, 'other', S_IFREG | 0o644, 0, 0).ino;
  for (let b = 0; b < RUN; b++) {
    fsx.write(w, b * B, Buffer.alloc(B, 1));
    fsx.write(other, b * B, Buffer.alloc(B, 2));
  }
  fsx.truncate(w, (RUN + 10) * B);
  t.ok(new BlockMap(fsx.inodes.get(w), fsx.fs.alloc, fsx.fs.geo).count > RUN / 2, 'the written blocks did not merge');
  t.equal(seek(fsx, w, 0, 'hole'), RUN * B, 'SEEK_HOLE past 200 written extents');
  t.end();
});

t.test('SEEK_DATA / SEEK_HOLE against a model, over a map of many extents', (t) => {
  const image = scratchImage(t, { size: 32 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(14);
  const BLOCKS = 600;
  const ino = fsx.create(fsx.rootIno, 'model', S_IFREG | 0o644, 0, 0).ino;
  const data = new Array<boolean>(BLOCKS + 20).fill(false); // per block: written (reads as data)
  let size = 0;
  for (let step = 0; step < 800; step++) {
    const block = rng.int(BLOCKS);
    const len = 1 + rng.int(3);
    const pick = rng.int(10);
    if (pick < 6) {
      // A few bytes inside a block: the block becomes data.
      const at = block * B + rng.int(B - 8);
      fsx.write(ino, at, Buffer.from('12345678'));
      data[block] = true;
      size = Math.max(size, at + 8);
    } else if (pick < 7) {
      fsx.fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, block * B, len * B);
      for (let b = block; b < block + len; b++) data[b] = false;
    } else if (pick < 8) {
      fsx.fallocate(ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, block * B, len * B);
      for (let b = block; b < block + len; b++) data[b] = false;
    } else {
      fsx.fallocate(ino, FALLOC_FL_KEEP_SIZE, block * B, len * B); // holes get unwritten extents: still holes
    }
  }
  t.equal(fsx.stat(ino).size, size, 'the model has the size');
  const dataAt = (b: number): boolean => b * B < size && data[b];
  const want = (offset: number, kind: 'data' | 'hole'): number | string => {
    if (offset < 0 || offset >= size) return 'ENXIO';
    for (let b = Math.floor(offset / B); b * B < size; b++) {
      if (dataAt(b) === (kind === 'data')) return Math.min(size, Math.max(offset, b * B));
    }
    return kind === 'data' ? 'ENXIO' : size;
  };
  let extents = 0;
  for (let b = 0; b < BLOCKS + 20; b++) if (dataAt(b) && !dataAt(b - 1)) extents++;
  t.ok(extents > 2 * 64, `the written blocks make ${extents} runs (more than one piece of the map)`);
  let wrong = 0;
  for (let b = 0; b * B <= size + B; b++) {
    for (const offset of [b * B, b * B + 1 + rng.int(B - 1)]) {
      for (const kind of ['data', 'hole'] as const) {
        const got = seek(fsx, ino, offset, kind);
        if (got !== want(offset, kind)) {
          if (wrong++ < 5) t.fail(`SEEK_${kind.toUpperCase()} ${offset}: ${got}, the model says ${want(offset, kind)}`);
        }
      }
    }
  }
  t.equal(wrong, 0, 'every answer as the model');
  t.end();
});
