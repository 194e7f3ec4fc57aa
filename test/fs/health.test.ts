/**
 * The health model (alloc/health.ts): one record per structure instance --
 * AG, filesystem, inode -- with how, when, during what and why; a failed
 * repair stays sick; every change an event; the inodes' records bounded.
 * Then through a real filesystem: the inode layer's verifiers mark an
 * inode's core and block map sick where they fail (InodeStore.damaged, the
 * fork btree's noteCorruption), a repair makes them healthy, and a fresh
 * open (a remount) knows nothing.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import { HealthBus, HealthRecord, InodeHealthTable } from '../../src/alloc/health';
import type { FsStructure, HealthEvent } from '../../src/alloc/health';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { onlineRepair } from '../../src/fsck/online';
import { selectStructures } from '../../src/fsck/table';
import { healthSummary, sickStructures } from '../../src/ctl/health-report';
import { scratchImage, flipOnDisk } from '../lib/fs';
import { db } from '../cli/cli';
import { caught } from '../lib/caught';
import type { RmapfsError } from '../../src/errors';

t.test('a record: unchecked, sick (the first finding kept), a failed repair, healthy; each change one event', async (t) => {
  const bus = new HealthBus();
  const events: HealthEvent[] = [];
  bus.listen((e) => events.push(e));
  const r = new HealthRecord<FsStructure>({ kind: 'filesystem' }, bus);
  t.equal(r.state('counters'), 'unchecked');
  r.markSick('counters', 'verifier', 'free count 7, want 9', 'allocating');
  r.markSick('counters', 'scrub', 'later finding', 'scrubbing');
  t.match(r.note('counters'), { how: 'verifier', what: 'free count 7, want 9', during: 'allocating' }, 'the first finding is kept');
  r.noteRepairFailed('counters', 'repair failed: EIO');
  t.equal(r.state('counters'), 'sick', 'a failed repair leaves it sick');
  t.equal(r.note('counters')?.repairFailed?.why, 'repair failed: EIO', '... and says why');
  r.markHealthy('counters', 'repair', 'rebuilding it');
  t.equal(r.state('counters'), 'healthy');
  r.markHealthy('counters', 'scrub', 'scrubbing');
  t.same(events.map((e) => [e.state, e.was, e.how, e.repairFailed ?? null]), [
    ['sick', 'unchecked', 'verifier', null],
    ['sick', 'sick', 'verifier', 'repair failed: EIO'],
    ['healthy', 'sick', 'repair', null],
  ], 'sick, the failed repair, healthy: no event for a second finding or a healthy one found healthy again');
});

t.test('the inodes\' records are bounded: healthy ones go first, then sick ones, counted', async (t) => {
  const table = new InodeHealthTable(() => 0, null, 4);
  table.markSick(100, 'bmap', 'verifier', 'bad crc');
  for (let ino = 200; ino < 206; ino++) table.markHealthy(ino, 'inode', 'scrub', 'scrubbing');
  t.equal(table.size, 4, 'kept to the bound');
  t.equal(table.state(100, 'bmap'), 'sick', 'the sick inode is kept past newer healthy ones');
  t.same(table.inodes(), [100, 203, 204, 205], 'the most recently checked healthy ones stay');
  for (let ino = 300; ino < 304; ino++) table.markSick(ino, 'inode', 'scrub', 'bad magic');
  t.same(table.inodes(), [300, 301, 302, 303], 'only sick ones left: the oldest went');
  t.equal(table.sickForgotten, 1, 'and the sick one dropped is counted');
  table.forget(301);
  t.equal(table.state(301, 'inode'), 'unchecked', 'a freed or reused inode number is unchecked');
});

/** A file of 300 one-block extents (a block-map btree) and a small one; returns the image and their numbers. */
function populated(t: Test): { image: string; big: number; small: number; data: Buffer } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 4 });
  const fsx = Rmapfs.open(image);
  const big = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
  const block = crypto.randomBytes(4096);
  for (let i = 0; i < 300; i++) fsx.write(big, 2 * i * 4096, block);
  const small = fsx.create(fsx.rootIno, 'small', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(small, 0, Buffer.from('hello'));
  fsx.close();
  return { image, big, small, data: block };
}

t.test('an inode core failing its verifier in use is sick (how verifier), its neighbour not; a repair heals it; a reopen forgets', async (t) => {
  const { image, big, small } = populated(t);
  await db(t, image, `set inode ${small} version 7`);
  let fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const health = fsx.fs.alloc.inodeHealth;
  t.equal((caught(() => fsx.stat(small)) as RmapfsError | undefined)?.code, 'EFSCORRUPTED', 'the damaged inode is EUCLEAN');
  t.ok(fsx.stat(big).size > 0, 'its neighbour reads');
  t.match(health.get(small)?.note('inode'), { how: 'verifier', what: /version 7/ }, 'the core is sick, found by the verifier');
  t.equal(health.state(big, 'inode'), 'unchecked', 'the neighbour is not');
  const report = sickStructures(fsx.fs.alloc, () => true);
  t.match(report, [{ ino: small, agno: fsx.fs.geo.inoAgno(small), structure: 'inode', how: 'verifier' }], 'status names the inode and its AG');
  t.match(healthSummary(fsx.fs.alloc).inodes, { sick: 1, healthy: 0, inodesKept: 1 });
  const reply = await onlineRepair(fsx, selectStructures(null, null), null, { forceRebuild: false, measureHeap: false, cancelled: () => false },
    { foregroundWaiting: null, abortReason: () => null, send: () => undefined });
  t.ok(reply.ok, `repaired: ${String(reply.error)}`);
  t.match(health.get(small)?.known('inode'), { state: 'healthy', how: 'repair' }, 'the repair made it healthy');
  t.same(sickStructures(fsx.fs.alloc, () => true), [], 'nothing sick');
  fsx.close();
  fsx = Rmapfs.open(image);
  t.equal(fsx.fs.alloc.inodeHealth.state(small, 'inode'), 'unchecked', 'a reopen starts unchecked');
  t.equal(fsx.fs.alloc.inodeHealth.size, 0, 'nothing kept');
});

t.test('a block-map btree block failing its crc in use makes the block map sick (ForkBtreeStorage.noteCorruption)', async (t) => {
  const { image, big } = populated(t);
  let fsx = Rmapfs.open(image);
  const root = fsx.inodes.get(big).dataRoot;
  t.ok(root > 0, 'the block map is a btree');
  fsx = flipOnDisk(image, fsx, root, 200);
  t.teardown(() => fsx.close());
  t.match((caught(() => fsx.read(big, 0, 4096)) as RmapfsError | undefined)?.code, /EFSBADCRC|EFSCORRUPTED/, 'reading through it fails');
  t.equal(fsx.fs.alloc.inodeHealth.state(big, 'bmap'), 'sick', 'the block map is sick');
  t.equal(fsx.fs.alloc.inodeHealth.state(big, 'inode'), 'unchecked', 'the core is not blamed');
  t.equal(fsx.fs.alloc.inodeHealth.get(big)?.note('bmap')?.how, 'verifier');
});
