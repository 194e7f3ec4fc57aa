/**
 * Cache snapshots: whatever transactions do after a snapshot opens, it still
 * answers what every block held at that moment -- or says it cannot.
 */
import t from 'tap';
import { Buf, BufCache } from '../../src/io/buf-cache';
import type { BufOps, CacheSnapshot } from '../../src/io/buf-cache';
import { Xfile, XfileTarget } from '../../src/io/xfile';

function cacheOnXfile(maxBlocks = 1024): BufCache {
  const target = new XfileTarget(new Xfile('snapshot-test'));
  t.teardown(() => target.close());
  return new BufCache(target, { maxBlocks });
}

/** Byte 0 of block bno as the snapshot has it. */
function seen(snap: CacheSnapshot, bno: number): number {
  const b = Buffer.alloc(4096);
  snap.readBlock(bno, b, 0);
  return b[0]!;
}

function write(cache: BufCache, bno: number, value: number): void {
  const b = cache.read(bno, null);
  b.data.fill(value);
  cache.markDirty(b);
}

t.test('committed changes, new, freed and evicted blocks: the snapshot keeps the old contents', (t) => {
  const cache = cacheOnXfile();
  for (let bno = 0; bno < 200; bno++) write(cache, bno, bno % 200);
  cache.flush();
  cache.purgeClean(); // nothing cached: every block is read from the target from here on
  const snap = cache.openSnapshot();
  t.equal(cache.openSnapshots, 1);

  cache.beginTx();
  write(cache, 3, 103);
  cache.commitTx();
  t.equal(cache.read(3, null).data[0], 103, 'the cache moved on');
  t.equal(seen(snap, 3), 3, 'the snapshot did not');

  cache.beginTx();
  write(cache, 4, 104);
  cache.abortTx();
  t.equal(snap.has(4), false, 'an aborted change leaves nothing to keep');

  cache.beginTx();
  cache.read(5, null); // read, not changed
  cache.commitTx();
  t.equal(snap.has(5), false, 'a block only read is not copied');

  // A block not cached, freed (invalidated), then rewritten around the cache.
  t.equal(cache.peek(10), undefined, 'block 10 is not cached');
  cache.beginTx();
  cache.invalidate(10);
  cache.commitTx();
  cache.target.writeBlocks(10, 1, Buffer.alloc(4096, 0xee), 0);
  t.equal(seen(snap, 10), 10, 'freed while uncached, rewritten on the target: still the old contents');

  // A new block written whole over one not cached (get, no read).
  cache.beginTx();
  const n = cache.get(20, null);
  n.data.fill(0x77);
  cache.markDirty(n);
  cache.commitTx();
  t.equal(seen(snap, 20), 20, 'a block made new keeps what the target held');

  // Changed twice: the first pre-image is the snapshot's.
  cache.beginTx();
  write(cache, 3, 203);
  cache.commitTx();
  t.equal(seen(snap, 3), 3, 'the oldest image wins');
  t.equal(seen(snap, 6), 6, 'an untouched block reads as it is');
  t.equal(snap.imageCount, 3, 'kept: 3, 10, 20');
  snap.close();
  t.equal(cache.openSnapshots, 0, 'closed');
  cache.beginTx();
  write(cache, 7, 107);
  cache.commitTx();
  t.equal(snap.imageCount, 0, 'a closed snapshot keeps nothing');
  t.end();
});

t.test('a dirty block is handed out with its crc made, as write-back would', (t) => {
  const cache = cacheOnXfile();
  const ops: BufOps = {
    name: 'stamped',
    verifyRead() {},
    prepareWrite(buf) { buf.data[4095] = buf.data[0]! ^ 0x5a; },
    stampLsn() {},
  };
  const b = cache.get(1, ops);
  b.data.fill(1);
  cache.markDirty(b); // dirty, never prepared: its "crc" (the last byte) is stale
  const snap = cache.openSnapshot();
  const out = Buffer.alloc(4096);
  snap.readBlock(1, out, 0);
  t.equal(out[4095], 1 ^ 0x5a, 'a live dirty block gets its crc made in the copy');
  t.equal(b.data[4095], 1, 'not in the cache');
  cache.beginTx();
  const b2 = cache.read(1, ops);
  b2.data.fill(2);
  cache.markDirty(b2);
  cache.commitTx();
  snap.readBlock(1, out, 0);
  t.same([out[0], out[4095]], [1, 1 ^ 0x5a], 'a kept dirty image too');
  snap.close();
  t.end();
});

t.test('blocks written around the cache in a transaction are kept before they are overwritten', (t) => {
  const cache = cacheOnXfile();
  for (let bno = 0; bno < 10; bno++) write(cache, bno, bno);
  cache.flush();
  cache.purgeClean();
  write(cache, 4, 4); // cached (dirty) before the transaction
  const snap = cache.openSnapshot();
  cache.beginTx();
  const fresh = new Buf(8, Buffer.alloc(4096, 0x88), null); // not cached: what the target holds is the snapshot's
  const known = new Buf(4, Buffer.alloc(4096, 0x44), null);
  cache.writeAround([fresh, known]);
  cache.commitTx();
  t.same([seen(snap, 8), seen(snap, 4)], [8, 4], 'both as they were');
  const now = Buffer.alloc(4096);
  cache.target.readBlocks(8, 1, now, 0);
  t.equal(now[0], 0x88, 'while the target holds the new contents');
  snap.close();
  t.end();
});

t.test('what a snapshot cannot follow spoils it', (t) => {
  const cache = cacheOnXfile();
  for (let bno = 0; bno < 10; bno++) write(cache, bno, bno);
  const snap = cache.openSnapshot();
  write(cache, 2, 99); // no transaction: no pre-image
  t.match(snap.spoiled, /block 2 changed outside a transaction/);
  snap.close();

  const small = cache.openSnapshot(2);
  for (const bno of [1, 2, 3]) {
    cache.beginTx();
    write(cache, bno, 50);
    cache.commitTx();
  }
  t.match(small.spoiled, /more than 2 blocks changed/);
  t.equal(small.imageCount, 0, 'a spoiled snapshot drops what it held');
  small.close();

  const other = cache.openSnapshot();
  cache.discardAll();
  t.match(other.spoiled, /discarded/);
  other.close();
  cache.beginTx();
  t.throws(() => cache.openSnapshot(), { code: 'EINVAL' }, 'not inside a transaction');
  cache.abortTx();
  t.end();
});
