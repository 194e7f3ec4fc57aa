/**
 * Crash consistency of the online directory repair (issue 13): round after
 * round under one write log, a leaf of a directory of a few hundred entries
 * gets a bad entry (a name whose hash is wrong, pointing nowhere: check sees
 * the record and the entry count; the repair drops it), announced to the log
 * first ("damaged AG:directory,inode matching ..." -- only those messages
 * are the damage), then repairDirectory runs with writers creating, rewriting and
 * removing files in that directory and in the root between its slices;
 * "repaired AG" goes to the log once its commit is forced. Every flush point
 * and torn points inside each flush epoch are replayed (replay-check.ts):
 * each must check clean apart from that damage until its repaired mark --
 * the directory the old one or the new one, never a new root over blocks not
 * yet on disk -- with every file marked durable intact.
 */
import t from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { repairDirectory } from '../../src/repair/dir-repair';
import { Btree } from '../../src/btree/btree';
import { OFF_NUMRECS } from '../../src/btree/btree-block';
import { ForkBtreeStorage } from '../../src/inode/fork-btree';
import { DIRENT_SIZE, dirBtreeOps } from '../../src/dir/dir';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

const ROUNDS = 14;
/** Files in the repaired directory before the rounds: a tree of some 30 leaves and a node above them. */
const FILES = 300;
/**
 * What check says of the damage: the bad record, the entry count it is not
 * in, and -- a directory with a record that does not verify is not walked --
 * every file in it unnamed. A torn new tree shows other directory problems.
 */
const DAMAGE_TEXT = 'bogus-|entries, its btree holds|in use but no directory entry names';

/**
 * Appends to a leaf of directory `dirIno` with room for it a record named
 * `name` with the hash of the leaf's last record (wrong for the name: the key
 * order holds, the record does not verify) and inode 0. In the caller's
 * transaction; the inode's entry count is left as it was. False when no
 * leaf has room (a rebuilt tree's leaves have one slot each, which the
 * writers may have taken).
 */
function addBadEntry(fsx: Rmapfs, dirIno: number, name: string): boolean {
  const tree = new Btree(dirBtreeOps, new ForkBtreeStorage(fsx.inodes.get(dirIno), 'data', fsx.fs.alloc, fsx.fs.geo));
  const cur = tree.cursor();
  for (let ok = cur.first(); ok;) {
    const leaf = cur.ptrs[0]!;
    const b = tree.readBlock(leaf, 0).data;
    const n = b.readUInt16BE(OFF_NUMRECS);
    const last = tree.geo.recOffset(n - 1);
    const hash = b.readUInt32BE(last);
    cur.idx[0] = n - 1;
    ok = cur.increment();
    // The next leaf must start above (hash, cidx + 1): a hash shared across leaves is skipped.
    if (n < tree.geo.maxRecs(0) && (!ok || cur.recordAt().block.readUInt32BE(cur.recordAt().offset) !== hash)) {
      const buf = tree.readBlock(leaf, 0);
      const at = tree.geo.recOffset(n);
      buf.data.fill(0, at, at + DIRENT_SIZE);
      buf.data.writeUInt32BE(hash, at);
      buf.data.writeUInt16BE(b.readUInt16BE(last + 4) + 1, at + 4);
      buf.data.writeUInt8(8, at + 6);
      buf.data.writeUInt8(name.length, at + 7);
      buf.data.write(name, at + 16, 'latin1');
      buf.data.writeUInt16BE(n + 1, OFF_NUMRECS);
      fsx.fs.cache.markDirty(buf);
      return true;
    }
  }
  return false;
}

t.test('directory repairs with writers in it and elsewhere: every crash point checks clean', async (t) => {
  const seed = testSeed(1313);
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, 'dirr');
  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  const writers = new CrashWriters(fsx, recorder, new Rng(seed), img.ag1Dir);
  const dirIno = fsx.lookup(fsx.rootIno, img.ag1Dir);
  const agno = fsx.fs.geo.inoAgno(dirIno);
  const dropped: string[] = [];
  let slices = 0;
  try {
    for (let i = 0; i < FILES; i++) fsx.create(dirIno, `many-${i}`, S_IFREG | 0o644, 0, 0);
    fsx.fsync();
    for (let round = 0; round < ROUNDS; round++) {
      writers.work(6);
      const bad = `bogus-${round}`;
      recorder.mark(`damaged ${agno}:directory,inode matching ${DAMAGE_TEXT}`);
      // A name added to a full leaf splits it: room for the bad entry.
      for (let k = 0; !fsx.fs.run(() => addBadEntry(fsx, dirIno, bad)); k++) fsx.create(dirIno, `room-${round}-${k}`, S_IFREG | 0o644, 0, 0);
      writers.work(3);
      fsx.fsync();
      const r = await repairDirectory(fsx, dirIno, {
        sliceMs: 1e9, maxUnits: 16, betweenSlices: () => { slices++; writers.work(1); },
      });
      const said = r.changes.find((c) => c.includes(bad));
      if (said === undefined) {
        t.fail(`round ${round}: '${bad}' not dropped: ${r.changes.join(' | ')}`);
        break;
      }
      dropped.push(said);
      // Its commit on disk before the mark: from here the directory must check clean.
      fsx.fsync();
      recorder.mark(`repaired ${agno}`);
      writers.work(6);
    }
    fsx.fsync();
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(dropped.length, ROUNDS, `${ROUNDS} repairs dropped the bad entry (${dropped[0] ?? 'none'})`);
  t.ok(slices >= ROUNDS, `the repairs yielded to the writers ${slices} times`);
  t.ok(writers.durable > 0, `${writers.durable} files marked durable`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 500);
  t.end();
});
