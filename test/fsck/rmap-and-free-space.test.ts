/**
 * Offline repair of an AG whose rmap AND free-space btrees are damaged
 * (issue 13, regress 115's seed 2): each is what the other is rebuilt from,
 * so the AG's space is computed from the rmap's collection (every inode's
 * forks and the static owners) and all three trees are rebuilt together
 * (rmap-repair.ts, `freeSpaceToo`). The files' metadata is not hit: the
 * image must check clean after and every file read back as it was.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { slotOffset } from '../../src/format/ag-header';
import { S_IFREG } from '../../src/inode/inode-format';
import { checkDevice } from '../../src/fsck/check';
import { FSCK_CLEAN, FSCK_CORRECTED, repairDevice } from '../../src/fsck/offline';
import { structureOfProblem } from '../../src/scrub/health-marks';
import { scratchCopy, scratchImage } from '../lib/fs';
import { Rng } from '../lib/rng';

/** Damaged AG. */
const AGNO = 1;

interface Manifest { [ino: number]: string }

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/**
 * 4 AGs, 2,000 files of 1-7 blocks, every third one removed: an rmap of two
 * levels and free space in many extents (free-space btrees that matter).
 */
function populated(t: Test): { image: string; manifest: Manifest } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 4 });
  const fsx = Rmapfs.open(image);
  const manifest: Manifest = {};
  const names: [string, number][] = [];
  for (let i = 0; i < 2000; i++) {
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    const data = crypto.randomBytes(500 + (i % 7) * 4000);
    fsx.write(ino, 0, data);
    manifest[ino] = sha(data);
    names.push([`f${i}`, ino]);
  }
  for (let i = 0; i < names.length; i += 3) {
    fsx.unlink(fsx.rootIno, names[i]![0]);
    delete manifest[names[i]![1]];
  }
  fsx.close();
  return { image, manifest };
}

function filesIntact(image: string, manifest: Manifest): string[] {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    return Object.entries(manifest).filter(([ino, want]) => {
      const n = Number(ino);
      try {
        return sha(fsx.read(n, 0, fsx.stat(n).size)) !== want;
      } catch {
        return true;
      }
    }).map(([ino]) => ino);
  } finally {
    fsx.close();
  }
}

/** Where AG AGNO's trees are: each root, and the rmap's leaves. */
function treeBlocks(image: string): { bnoRoot: number; cntRoot: number; rmapRoot: number; rmapLeaves: number[]; freeExtents: number; agStart: number } {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    const ag = fsx.fs.alloc.ag(AGNO);
    const h = ag.header().data;
    const rmapLeaves: number[] = [];
    ag.rmap.visitBlocks((ptr, level) => { if (level === 0) rmapLeaves.push(ptr); });
    return {
      bnoRoot: h.readUInt32BE(slotOffset('bno')), cntRoot: h.readUInt32BE(slotOffset('cnt')), rmapRoot: h.readUInt32BE(slotOffset('rmap')),
      rmapLeaves, freeExtents: ag.bno.count(), agStart: ag.start,
    };
  } finally {
    fsx.close();
  }
}

/** Random bytes over `len` bytes of block fsbno at `at` (a whole block by default). */
function scribble(image: string, fsbno: number, rng: Rng, at = 0, len = BLOCK_SIZE): void {
  const fd = fs.openSync(image, 'r+');
  const junk = Buffer.alloc(len);
  for (let i = 0; i < len; i++) junk[i] = rng.int(256);
  fs.writeSync(fd, junk, 0, len, fsbno * BLOCK_SIZE + at);
  fs.closeSync(fd);
}

t.test('offline repair of an AG whose rmap and free-space btrees are both damaged', async (t) => {
  const { image: template, manifest } = populated(t);
  const where = treeBlocks(template);
  t.ok(where.rmapLeaves.length >= 3 && where.freeExtents >= 50,
    `AG ${AGNO}: ${where.rmapLeaves.length} rmap leaves, ${where.freeExtents} free extents`);
  const middleLeaf = where.rmapLeaves[where.rmapLeaves.length >> 1]!;

  const cases: { name: string; blocks: (w: typeof where) => number[] }[] = [
    { name: 'an rmap leaf and the bnobt root', blocks: (w) => [middleLeaf, w.bnoRoot] },
    { name: 'an rmap leaf and both free-space btree roots', blocks: (w) => [middleLeaf, w.bnoRoot, w.cntRoot] },
    { name: 'the rmap root and the cntbt root', blocks: (w) => [w.rmapRoot, w.cntRoot] },
  ];
  for (const [n, c] of cases.entries()) {
    await t.test(c.name, async (t) => {
      const image = scratchCopy(t, template, `rmap-free-${n}.img`);
      const rng = new Rng(1000 + n);
      for (const agbno of c.blocks(where)) scribble(image, where.agStart + agbno, rng);
      const before = checkDevice(image);
      const structures = new Set(before.result.problems.map(structureOfProblem));
      t.ok(structures.has('rmapbt') && (structures.has('bnobt') || structures.has('cntbt')),
        `check sees both damaged: ${[...structures].join(', ')}`);
      const r = await repairDevice(image);
      t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
      const after = checkDevice(image);
      t.equal(after.status, FSCK_CLEAN, `check clean ${after.result.problems.slice(0, 5).map((p) => p.message).join('; ')}`);
      t.same(filesIntact(image, manifest), [], 'every file intact');
      t.equal((await repairDevice(image)).status, FSCK_CLEAN, 'a second repair finds nothing');
    });
  }
});
