/** Buffer cache transactions (rollback to pre-images) and write-ahead log tracking. */
import t from 'tap';
import { Buf, BufCache } from '../../src/io/buf-cache';
import { Xfile, XfileTarget } from '../../src/io/xfile';
import { Btree } from '../../src/btree/btree';
import { RegionBtreeStorage } from '../../src/btree/region-storage';
import { verifyBtree } from '../../src/btree/verify';
import { tinyBtreeOps } from '../lib/tiny-btree';

function cacheOnXfile(options: { trackLogging?: boolean; maxBlocks?: number } = {}): BufCache {
  const target = new XfileTarget(new Xfile('tx-test'));
  t.teardown(() => target.close());
  return new BufCache(target, { maxBlocks: options.maxBlocks ?? 1024, trackLogging: options.trackLogging ?? false });
}

t.test('abort puts changed, new and invalidated blocks back', (t) => {
  const cache = cacheOnXfile();
  const a = cache.get(1, null);
  a.data.fill(0xaa);
  cache.markDirty(a);
  cache.flush();
  const b = cache.get(2, null);
  b.data.fill(0xbb);
  cache.markDirty(b);

  cache.beginTx();
  const a2 = cache.read(1, null);
  a2.data.fill(0x11);
  cache.markDirty(a2);
  const c = cache.get(3, null);
  c.data.fill(0xcc);
  cache.markDirty(c);
  cache.invalidate(2);
  t.equal(cache.peek(2), undefined, 'invalidated inside the transaction');
  cache.abortTx();

  t.equal(cache.read(1, null).data[0], 0xaa, 'changed block has its old contents');
  t.notOk(cache.read(1, null).dirty, 'and is clean again');
  t.equal(cache.peek(3), undefined, 'a block new in the transaction is gone');
  const b2 = cache.peek(2);
  t.ok(b2 !== undefined && b2.dirty && b2.data[0] === 0xbb, 'the invalidated dirty block is back, still dirty');
  t.equal(cache.stats().dirtyBlocks, 1, 'dirty count restored');
  t.end();
});

t.test('commit keeps the changes; markDirty of a block not touched in the transaction is refused', (t) => {
  const cache = cacheOnXfile();
  const kept = cache.get(5, null);
  cache.beginTx();
  const x = cache.read(7, null);
  x.data.fill(7);
  cache.markDirty(x);
  t.throws(() => cache.markDirty(kept), { code: 'EIO' }, 'a buffer held from before the transaction cannot be dirtied in it');
  t.equal(cache.commitTx(), 1, 'one block touched');
  t.equal(cache.read(7, null).data[100], 7);
  t.throws(() => cache.commitTx(), { code: 'EINVAL' }, 'no transaction open');
  t.end();
});

t.test('a btree operation that fails halfway is rolled back whole', (t) => {
  const cache = cacheOnXfile();
  // Room for just a few blocks: inserts fail with ENOSPC in the middle of a split.
  (cache.target as XfileTarget).writeBlocks(20, 1, Buffer.alloc(4096), 0); // the region must exist on the target
  const storage = new RegionBtreeStorage(cache, Buffer.alloc(16, 1), 0, 1, 12);
  const tree = Btree.create(tinyBtreeOps, storage);
  const rec = Buffer.alloc(8);
  let inserted = 0;
  let failed = false;
  for (let i = 0; i < 1000 && !failed; i++) {
    rec.writeUInt32BE(i * 3, 0);
    cache.beginTx();
    const rootBefore = storage.getRoot();
    try {
      tree.insert(rec);
      cache.commitTx();
      inserted++;
    } catch (e) {
      t.equal((e as { code?: string }).code, 'ENOSPC', 'the failure is ENOSPC');
      cache.abortTx();
      storage.setRoot(rootBefore); // the storage's root lives outside the cache here
      failed = true;
    }
  }
  t.ok(failed, `the region filled up after ${inserted} inserts`);
  const v = verifyBtree(tree);
  t.ok(v.ok, `the tree verifies after the rolled-back insert${v.ok ? '' : `: ${v.problems[0]?.message}`}`);
  t.equal(v.records, inserted, 'exactly the committed records are there');
  t.end();
});

t.test('write-ahead: unlogged blocks cannot be written in place', (t) => {
  const cache = cacheOnXfile({ trackLogging: true });
  const a = cache.get(1, null);
  a.data.fill(1);
  cache.markDirty(a);
  const b = cache.get(2, null);
  cache.markDirty(b);
  t.equal(cache.unloggedCount, 2);
  t.throws(() => cache.flush(), { code: 'EIO' }, 'flush before the log force is refused');
  const taken = cache.takeUnlogged();
  t.same(taken.map((x) => x.bno), [1, 2], 'the log force takes both, in block order');
  t.equal(cache.unloggedCount, 0);
  cache.flush();
  t.equal(cache.stats().dirtyBlocks, 0, 'after the force they may go in place');
  a.data.fill(3);
  cache.markDirty(a);
  t.same(cache.takeUnlogged().map((x) => x.bno), [1], 'changed again: unlogged again');
  t.end();
});

t.test('blocks built outside the cache are written in place, cached copies forgotten (and back after an abort)', (t) => {
  const cache = cacheOnXfile({ trackLogging: true });
  const old = cache.get(7, null);
  old.data.fill(0x77);
  cache.markDirty(old);
  cache.takeUnlogged();
  cache.flush();
  for (const abort of [false, true]) {
    cache.read(7, null); // cached before
    cache.beginTx();
    const arena = Buffer.alloc(4 * cache.blockSize);
    const bufs = [5, 6, 7, 9].map((bno, i) => {
      const b = new Buf(bno, arena.subarray(i * cache.blockSize, (i + 1) * cache.blockSize), null);
      b.data.fill((abort ? 0x40 : 0x10) + bno);
      return b;
    });
    const written = cache.stats().blocksWritten;
    cache.writeAround(bufs);
    t.equal(cache.stats().blocksWritten - written, 4, 'four blocks written');
    t.equal(cache.unloggedCount, 0, 'nothing waits for the log');
    t.equal(cache.peek(7), undefined, 'the cached copy is forgotten');
    const raw = Buffer.alloc(cache.blockSize);
    for (const bno of [5, 6, 7, 9]) {
      cache.target.readBlocks(bno, 1, raw, 0);
      t.equal(raw[100], (abort ? 0x40 : 0x10) + bno, `block ${bno} is on the target`);
    }
    if (abort) {
      cache.abortTx();
      t.equal(cache.peek(7)?.data[100], 0x17, 'an abort brings the cached copy back');
      cache.invalidate(7);
    } else {
      cache.commitTx();
      t.equal(cache.read(7, null).data[100], 0x17, 'a read sees what the target holds');
    }
  }
  t.end();
});
