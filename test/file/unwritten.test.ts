/**
 * Unwritten extents: preallocation maps space without writing it, reads of
 * it are zeroes whatever the blocks hold, and a write converts exactly the
 * blocks it touches (zeroes around the data in them), in the block map and
 * the rmap together, so a crash before the log force shows zeroes.
 *
 * Every test writes a pattern straight onto the device under the unwritten
 * extents ("stale" data, as a reused block holds) and expects never to read it.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG } from '../../src/inode/inode-format';
import type { Extent } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { rmapFind } from '../../src/rmap/rmap';
import { RMAP_UNWRITTEN } from '../../src/rmap/rmap-btree';
import type { RmapUpdate } from '../../src/alloc/alloc';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const STALE = 0xee;

function extentsOf(fsx: Rmapfs, ino: number): Extent[] {
  return new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).extents();
}

/** The file's extents as "fileoff+count[u]" (u: unwritten). */
function shape(fsx: Rmapfs, ino: number): string {
  return extentsOf(fsx, ino).map((e) => `${e.fileoff}+${e.blockcount}${e.unwritten ? 'u' : ''}`).join(' ');
}

/** Whether the rmap record under each extent's first block says unwritten as the map does. */
function rmapAgrees(fsx: Rmapfs, ino: number): boolean {
  const geo = fsx.fs.geo;
  return extentsOf(fsx, ino).every((e) => {
    const r = rmapFind(fsx.fs.alloc.ag(geo.agnoOf(e.fsbno)).rmap, geo.agbnoOf(e.fsbno));
    return r !== null && r.owner === ino && ((r.flags & RMAP_UNWRITTEN) !== 0) === e.unwritten;
  });
}

/** Puts a pattern in every unwritten block of the file, behind the filesystem's back. */
function staleUnder(fsx: Rmapfs, ino: number): void {
  for (const e of extentsOf(fsx, ino)) {
    if (!e.unwritten) continue;
    const bytes = Buffer.alloc(e.blockcount * BLOCK_SIZE, STALE);
    fsx.fs.device.write(e.fsbno * BLOCK_SIZE, bytes, 0, bytes.length);
  }
}

function newFile(fsx: Rmapfs, name: string): number {
  return fsx.create(fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
}

t.test('preallocation maps unwritten space, writes nothing, reads zeroes', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const f = newFile(fsx, 'f');
  const free = fsx.fs.alloc.freeBlocks();
  fsx.preallocate(f, 0, 64 * BLOCK_SIZE);
  t.equal(shape(fsx, f), '0+64u', 'one unwritten extent');
  t.ok(rmapAgrees(fsx, f), 'the rmap record is unwritten too');
  t.equal(fsx.stat(f).size, 64 * BLOCK_SIZE, 'mode 0 grows the size');
  t.equal(fsx.stat(f).blocks, 64 * 8, 'st_blocks counts the preallocated blocks');
  t.ok(free - fsx.fs.alloc.freeBlocks() >= 64, 'the space is taken');
  staleUnder(fsx, f);
  t.ok(fsx.read(f, 0, 64 * BLOCK_SIZE).equals(Buffer.alloc(64 * BLOCK_SIZE)), 'reads as zeroes over stale blocks');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('a write into unwritten space converts just the blocks it touches', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const f = newFile(fsx, 'f');
  fsx.preallocate(f, 0, 16 * BLOCK_SIZE);
  staleUnder(fsx, f);
  const data = Buffer.alloc(BLOCK_SIZE + 300, 0x5a);
  const pos = 5 * BLOCK_SIZE + 1000; // from within block 5 into block 6
  fsx.write(f, pos, data);
  t.equal(shape(fsx, f), '0+5u 5+2 7+9u', 'blocks 5 and 6 written, the rest unwritten');
  t.ok(rmapAgrees(fsx, f), 'the rmap split the same way');
  const want = Buffer.alloc(16 * BLOCK_SIZE);
  data.copy(want, pos);
  t.ok(fsx.read(f, 0, 16 * BLOCK_SIZE).equals(want), 'zeroes around the data, never the stale bytes');
  t.same(check(fsx), [], 'check clean');
  // The rest of it, block by block from both ends: the extents join again.
  for (let b = 0; b < 16; b++) if (b !== 5 && b !== 6) fsx.write(f, b * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, b + 1));
  t.equal(shape(fsx, f), '0+16', 'all written: one extent again');
  t.ok(rmapAgrees(fsx, f), 'one written rmap record');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('a write over a hole, unwritten space and written data at once', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const f = newFile(fsx, 'f');
  fsx.write(f, 0, Buffer.alloc(2 * BLOCK_SIZE, 1)); // written 0..1
  fsx.preallocate(f, 4 * BLOCK_SIZE, 4 * BLOCK_SIZE); // unwritten 4..7, hole 2..3
  staleUnder(fsx, f);
  const data = Buffer.alloc(5 * BLOCK_SIZE, 2);
  fsx.write(f, BLOCK_SIZE + 10, data); // blocks 1..6
  const want = Buffer.alloc(8 * BLOCK_SIZE);
  want.fill(1, 0, 2 * BLOCK_SIZE);
  data.copy(want, BLOCK_SIZE + 10);
  t.ok(fsx.read(f, 0, 8 * BLOCK_SIZE).equals(want), 'contents');
  t.match(shape(fsx, f), /7\+1u$/, 'block 7 still unwritten');
  t.ok(rmapAgrees(fsx, f), 'rmap agrees');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('the conversion reaches live rmap hooks as unmap-unwritten then map-written', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const f = newFile(fsx, 'f');
  fsx.preallocate(f, 0, 8 * BLOCK_SIZE);
  const seen: RmapUpdate[] = [];
  const hook = (u: RmapUpdate): void => { if (u.owner === f) seen.push(u); };
  fsx.fs.alloc.addRmapHook(hook, () => t.fail('hook failed'));
  t.teardown(() => fsx.fs.alloc.removeRmapHook(hook));
  fsx.write(f, 3 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 7));
  t.same(seen.map((u) => `${u.op} ${u.blockcount} off ${u.offset}${u.flags & RMAP_UNWRITTEN ? ' u' : ''}`),
    ['unmap 1 off 3 u', 'map 1 off 3'], 'one block changed state');
  t.end();
});

t.test('a crash before the log force shows the preallocated blocks as zeroes, not the write', (t) => {
  const image = scratchImage(t);
  let fsx = Rmapfs.open(image);
  const f = newFile(fsx, 'f');
  fsx.preallocate(f, 0, 8 * BLOCK_SIZE);
  fsx.fsync();
  staleUnder(fsx, f);
  fsx.write(f, 2 * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 9)); // in place on the device, not yet in the log
  fsx.fs.abandon();
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.equal(shape(fsx, f), '0+8u', 'still unwritten after replay');
  t.ok(fsx.read(f, 0, 8 * BLOCK_SIZE).equals(Buffer.alloc(8 * BLOCK_SIZE)), 'zeroes');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('truncate frees blocks preallocated past EOF; a write past EOF converts them', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const f = newFile(fsx, 'f');
  fsx.write(f, 0, Buffer.alloc(100, 1));
  fsx.fallocate(f, 1 /* KEEP_SIZE */, 0, 8 * BLOCK_SIZE);
  t.equal(fsx.stat(f).size, 100, 'size kept');
  t.equal(fsx.stat(f).blocks, 8 * 8, 'st_blocks counts blocks past EOF');
  staleUnder(fsx, f);
  fsx.write(f, 3 * BLOCK_SIZE, Buffer.alloc(10, 2));
  t.equal(shape(fsx, f), '0+1 1+2u 3+1 4+4u', 'the write past EOF converted its block only');
  const want = Buffer.alloc(3 * BLOCK_SIZE + 10);
  want.fill(1, 0, 100);
  want.fill(2, 3 * BLOCK_SIZE);
  t.ok(fsx.read(f, 0, 8 * BLOCK_SIZE).equals(want), 'zeroes between the old EOF and the write');
  fsx.truncate(f, 3 * BLOCK_SIZE + 10); // the same size: the blocks past it go
  t.equal(shape(fsx, f), '0+1 1+2u 3+1', 'truncate to the size freed what lay past it');
  fsx.truncate(f, 50);
  t.equal(shape(fsx, f), '0+1', 'truncate down freed the rest');
  t.equal(fsx.stat(f).blocks, 8, 'one block left');
  t.same(check(fsx), [], 'check clean');
  t.end();
});
