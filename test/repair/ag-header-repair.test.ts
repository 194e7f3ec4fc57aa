/**
 * The small repairers on a live filesystem: a free list rebuilt from the
 * rmap while the filesystem keeps allocating between slices; an AG header
 * that fails its verifier (free list count past its size, a root outside the
 * AG) recomputed, its root found from the rmap; the summary counts; a
 * secondary superblock. Each leaves a filesystem that checks clean with
 * every file unchanged.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairAgHeader, repairFreeList, repairSecondarySuperblock, repairSummaryCounters } from '../../src/repair/ag-header-repair';
import { ExtentBitmap } from '../../src/repair/bitmap';
import type { AllocGroup } from '../../src/alloc/ag';
import { S_IFREG } from '../../src/inode/inode-format';
import { OWN_AG } from '../../src/format/owners';
import { decodeRmapOwner } from '../../src/rmap/rmap-btree';
import {
  AGFL_SIZE, OFF_AGFL, OFF_AGFL_COUNT, OFF_FREE_EXTENTS, OFF_FREE_INODES, SLOT_ROOT, slotOffset,
} from '../../src/format/ag-header';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { blockCrc, OFF_CRC } from '../../src/io/meta-header';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** Files of known content, spread over the AGs. */
function populate(fsx: Rmapfs, n: number, prefix = 'f'): Map<number, Buffer> {
  const data = new Map<number, Buffer>();
  for (let i = 0; i < n; i++) {
    const ino = fsx.create(fsx.rootIno, `${prefix}${i}`, S_IFREG | 0o644, 0, 0).ino;
    const b = Buffer.alloc(4096 * (1 + (i % 3)), i % 251);
    fsx.write(ino, 0, b);
    data.set(ino, b);
  }
  return data;
}

function unchanged(t: Test, fsx: Rmapfs, data: Map<number, Buffer>): void {
  let bad = 0;
  for (const [ino, b] of data) if (!fsx.read(ino, 0, b.length).equals(b)) bad++;
  t.equal(bad, 0, 'every file unchanged');
}

/** The "ag" owner's blocks in no free-space or rmap btree: what the free list must hold. */
function freeListFromRmap(ag: AllocGroup): number[] {
  const owned = new ExtentBitmap();
  ag.rmap.forEach((b, off) => { if (decodeRmapOwner(b, off) === OWN_AG) owned.add(b.readUInt32BE(off), b.readUInt32BE(off + 4)); });
  for (const tree of [ag.bno, ag.cnt, ag.rmap]) tree.visitBlocks((ptr) => { owned.subtract(ptr, 1); });
  const out: number[] = [];
  owned.walk((start, len) => { for (let b = start; b < start + len; b++) out.push(b); });
  return out;
}

/** Changes an AG header's bytes on the device, behind the filesystem's back (closed), crc made right or not. */
function patchHeader(image: string, agBlocks: number, agno: number, patch: (h: Buffer) => void, fixCrc: boolean): void {
  const fd = fs.openSync(image, 'r+');
  try {
    const h = Buffer.alloc(BLOCK_SIZE);
    const at = (agno * agBlocks + 1) * BLOCK_SIZE;
    fs.readSync(fd, h, 0, BLOCK_SIZE, at);
    patch(h);
    if (fixCrc) h.writeUInt32BE(blockCrc(h), OFF_CRC);
    fs.writeSync(fd, h, 0, BLOCK_SIZE, at);
  } finally {
    fs.closeSync(fd);
  }
}

t.test('free list: a wrong entry and a lost block, rebuilt from the rmap while files are written between slices', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const data = populate(fsx, 200);
  const ag = fsx.fs.alloc.ag(1);
  // Entry 0 becomes a free block: that one is now free and listed, the one it replaced lost.
  const free = ag.findFree({ minLen: 1, maxLen: 1, goal: null })!.startblock;
  fsx.fs.run(() => {
    const hdr = ag.header();
    hdr.data.writeUInt32BE(free, OFF_AGFL);
    fsx.fs.cache.markDirty(hdr);
  });
  t.ok(check(fsx).some((p) => /free list/.test(p)), 'check sees the damage as the free list\'s');
  ag.markSick('agfl', 'test damage');
  let n = 0;
  const r = await repairFreeList(fsx, 1, {
    sliceMs: 1e9, maxUnits: 4, betweenSlices: () => { for (const [ino, b] of populate(fsx, 2, `s${n++}-`)) data.set(ino, b); },
  });
  t.ok(n > 0, `${n} slices with writes between`);
  t.ok(r.fixed.length > 0, `fixed: ${r.fixed.join(', ')}; pause ${r.commitPauseMs.toFixed(2)} ms`);
  t.notOk(ag.health.isSick('agfl'), 'no longer known sick');
  t.same([...ag.agflBlocks()].sort((a, b) => a - b), freeListFromRmap(ag), 'the free list is the "ag" blocks in no btree');
  t.ok(ag.agflCount >= ag.freelistNeed() && ag.agflCount <= AGFL_SIZE, `refilled to its target (${ag.agflCount})`);
  t.same(check(fsx), [], 'clean');
  unchanged(t, fsx, data);
  t.end();
});

t.test('AG header: a free list count past its size and a root outside the AG (the verifier fails), recomputed', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  let fsx = Rmapfs.open(image);
  const data = populate(fsx, 300);
  const agBlocks = fsx.fs.geo.agBlocks;
  const before = fsx.fs.alloc.ag(1).cnt.storage.getRoot().ptr;
  fsx.close();
  patchHeader(image, agBlocks, 1, (h) => {
    h.writeUInt32BE(AGFL_SIZE + 5, OFF_AGFL_COUNT);
    h.writeUInt32BE(agBlocks + 7, slotOffset('cnt') + SLOT_ROOT);
    h.writeUInt32BE(h.readUInt32BE(OFF_FREE_INODES) + 3, OFF_FREE_INODES);
  }, true);
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.throws(() => fsx.fs.alloc.ag(1).header(), { code: 'EFSCORRUPTED' }, 'the header fails its verifier');
  const r = repairAgHeader(fsx, 1);
  t.ok(r.fixed.includes('cntRoot') && r.fixed.includes('freeInodes'), `fixed: ${r.fixed.join(', ')}`);
  t.ok(r.fixed.some((f) => f.startsWith('free list')), 'the free list rebuilt from the rmap too');
  const ag = fsx.fs.alloc.ag(1);
  t.equal(ag.cnt.storage.getRoot().ptr, before, 'the cntbt root found again from the rmap');
  t.same([...ag.agflBlocks()].sort((a, b) => a - b), freeListFromRmap(ag), 'the free list is the "ag" blocks in no btree');
  t.ok(ag.agflCount >= ag.freelistNeed(), 'the free list refilled');
  t.same(check(fsx), [], 'clean');
  unchanged(t, fsx, data);
  t.end();
});

t.test('summary counters and a secondary superblock', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 3 });
  let fsx = Rmapfs.open(image);
  const data = populate(fsx, 100);
  const agBlocks = fsx.fs.geo.agBlocks;
  const statfs = fsx.statfs();
  fsx.fs.run(() => {
    const hdr = fsx.fs.alloc.ag(2).header();
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(OFF_FREE_EXTENTS) + 9, OFF_FREE_EXTENTS);
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(OFF_FREE_INODES) + 9, OFF_FREE_INODES);
    fsx.fs.cache.markDirty(hdr);
  });
  t.not(fsx.statfs().ffree, statfs.ffree, 'statfs is off');
  const c = repairSummaryCounters(fsx);
  t.same(c.fixed, ['AG 2 freeExtents', 'AG 2 freeInodes'], 'what it changed');
  t.same(fsx.statfs(), statfs, 'statfs is right again');
  t.same(check(fsx), [], 'clean');
  fsx.close();
  // AG 1's superblock copy: a bad crc (any field changed, crc left).
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.from('XX'), 0, 2, agBlocks * BLOCK_SIZE + 64 + 200);
  fs.closeSync(fd);
  fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  t.ok(check(fsx).some((p) => /secondary/.test(p)), 'check sees the damaged copy');
  const s = repairSecondarySuperblock(fsx, 1);
  t.ok(s.commitPauseMs >= 0, `fixed: ${s.fixed.join(', ') || '(bytes outside the fields)'}`);
  t.same(check(fsx), [], 'clean');
  unchanged(t, fsx, data);
  t.end();
});
