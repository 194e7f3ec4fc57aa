/**
 * Crash consistency of the online block-map repair (issue 13): round after
 * round under one write log, a leaf record of a file's block-map btree (a
 * sparse file of 300 one-block extents) is damaged on the live filesystem --
 * moved in the file, marked unwritten, made one block longer, pointed at the
 * superblock: what the scrub's rmap cross-reference (or the map's own check)
 * finds -- announced to the log first ("damaged AG:bmap,rmapbt matching ..."
 * -- only the messages about that file's extents and block count are the
 * damage), then repairBlockMap runs with writers creating, rewriting and
 * removing files, and writes filling holes of the damaged file itself,
 * between its slices; "repaired AG" goes to the log once its commit is
 * forced. Every flush point and torn points inside each flush epoch are
 * replayed (replay-check.ts): each must check clean apart from that damage
 * until its repaired mark -- the old map or the new one, never a new root
 * over blocks not yet on disk -- with every file marked durable intact.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairBlockMap } from '../../src/repair/bmap-repair';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
import type { Extent } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { Rng, testSeed } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

const ROUNDS = 12;
/** One-block extents of the damaged file, every other file block: a two-level block map (a leaf holds ~250). */
const EXTENTS = 300;
/** The leaf record damaged (file block 2 * DAMAGED_RECORD: far below the holes the slices fill). */
const DAMAGED_RECORD = 5;
/** Holes of the file filled between the repair's slices, at most, per round. */
const HOLE_WRITES_PER_ROUND = 4;
/**
 * Writer operations between one repair's slices, at most: the point count (the writers' fsyncs) must not
 * hang on the machine's speed, and ~600 points keep the replay near a minute.
 */
const WRITES_DURING_REPAIR = 32;

const DAMAGES: readonly { what: string; apply: (e: Extent) => Extent }[] = [
  { what: 'moved in the file', apply: (e) => ({ ...e, fileoff: e.fileoff + 1 }) },
  { what: 'marked unwritten', apply: (e) => ({ ...e, unwritten: true }) },
  { what: 'one block longer', apply: (e) => ({ ...e, blockcount: e.blockcount + 1 }) },
  { what: 'at the superblock', apply: (e) => ({ ...e, fsbno: 0 }) },
];

/** The content of the file's block `fileBlock` as this test writes it. */
function blockContent(fileBlock: number): Buffer {
  const b = Buffer.alloc(BLOCK_SIZE, fileBlock & 0xff);
  b.writeUInt32BE(fileBlock, 0);
  return b;
}

t.test('block map repairs with writers elsewhere and in the file: every crash point checks clean', async (t) => {
  const seed = testSeed(1314);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, 'bmapr');
  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  const writers = new CrashWriters(fsx, recorder, new Rng(seed), img.ag1Dir);
  const ino = fsx.create(fsx.lookup(fsx.rootIno, img.ag1Dir), 'sparse', S_IFREG | 0o644, 0, 0).ino;
  const agno = fsx.fs.geo.inoAgno(ino);
  // What the file must hold: the blocks written, by file block.
  const written = new Set<number>();
  const writeBlock = (fileBlock: number): void => {
    fsx.write(ino, fileBlock * BLOCK_SIZE, blockContent(fileBlock));
    written.add(fileBlock);
  };
  const wrongBlocks = (): number[] => {
    const bad: number[] = [];
    for (const b of written) if (!fsx.read(ino, b * BLOCK_SIZE, BLOCK_SIZE).equals(blockContent(b))) bad.push(b);
    return bad;
  };
  let nextHole = 2 * (EXTENTS / 2) + 1;
  const repaired: string[] = [];
  let slices = 0;
  try {
    for (let i = 0; i < EXTENTS; i++) writeBlock(2 * i);
    fsx.fsync();
    for (let round = 0; round < ROUNDS; round++) {
      writers.work(6);
      const damage = DAMAGES[round % DAMAGES.length]!;
      // Only the file's extent and block-count disagreements are the damage: a torn new tree shows otherwise.
      recorder.mark(`damaged ${agno}:bmap,rmapbt matching ^(inode ${ino}: extent |rmap gives inode ${ino} )`);
      fsx.fs.run(() => {
        const tree = new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).btree!;
        let leaf = -1;
        tree.visitBlocks((ptr, level) => { if (level === 0 && leaf < 0) leaf = ptr; });
        const buf = fsx.fs.cache.read(leaf, tree.bufOps);
        const off = tree.geo.recOffset(DAMAGED_RECORD);
        encodeExtent(damage.apply(decodeExtent(buf.data, off)), buf.data, off);
        fsx.fs.cache.markDirty(buf);
      });
      writers.work(3);
      fsx.fsync();
      let holeWrites = 0;
      let writes = 0;
      const r = await repairBlockMap(fsx, ino, {
        sliceMs: 1e9, maxUnits: 16, betweenSlices: () => {
          slices++;
          if (writes++ < WRITES_DURING_REPAIR) writers.work(1);
          if (holeWrites < HOLE_WRITES_PER_ROUND && nextHole < 2 * EXTENTS) {
            holeWrites++;
            writeBlock(nextHole);
            nextHole += 2;
          }
        },
      });
      if (r.error !== undefined || !r.changes[0]!.startsWith('block map rebuilt from the rmap')) {
        t.fail(`round ${round} (${damage.what}): ${r.error ?? r.changes.join(' | ')}`);
        break;
      }
      const bad = wrongBlocks();
      if (bad.length > 0) {
        t.fail(`round ${round} (${damage.what}): file blocks ${bad.slice(0, 5).join(', ')} read wrong after the repair`);
        break;
      }
      repaired.push(damage.what);
      // Its commit on disk before the mark: from here the file must check clean.
      fsx.fsync();
      recorder.mark(`repaired ${agno}`);
      writers.work(6);
    }
    fsx.fsync();
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(repaired.length, ROUNDS, `${ROUNDS} repairs rebuilt the map and the file reads back (${[...new Set(repaired)].join(', ')})`);
  t.ok(slices >= 2 * ROUNDS, `the repairs yielded to the writers ${slices} times`);
  t.ok(writers.durable > 0, `${writers.durable} files marked durable`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 500);
  t.end();
});
