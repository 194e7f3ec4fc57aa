/**
 * The buffer cache on both kinds of target: an xfile, and an image file
 * opened as the data device. Every target is wrapped in a SpyTarget so the
 * tests see exactly which blocks were read and written, and what reaches the
 * target is checked by reading it back around the cache.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RmapfsError, corruption } from '../../src/errors';
import { BufCache, MIN_CACHE_BLOCKS } from '../../src/io/buf-cache';
import type { Buf, BufOps } from '../../src/io/buf-cache';
import { Device, DeviceTarget } from '../../src/io/device';
import { Xfile, XfileTarget } from '../../src/io/xfile';
import { native } from '../../src/native';
import { SpyTarget } from '../lib/spy-target';

const BS = 4096;
/** Device image size in blocks: room for the 1000-distinct-blocks test. */
const DEVICE_BLOCKS = 2048;

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-bufcache-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

interface Fixture {
  spy: SpyTarget;
  /** A block's bytes read from the target without going through any cache. */
  readRaw(bno: number): Buffer;
  /** Puts bytes on the target without going through any cache. */
  writeRaw(bno: number, data: Buffer): void;
}

type Kind = 'xfile' | 'device';

let images = 0;

function fixture(t: Test, kind: Kind): Fixture {
  if (kind === 'xfile') {
    const xfile = new Xfile('bufcache-test');
    const spy = new SpyTarget(new XfileTarget(xfile));
    t.teardown(() => spy.close());
    return {
      spy,
      readRaw(bno) {
        const b = Buffer.alloc(BS, 0xaa);
        xfile.read(bno * BS, b, 0, BS);
        return b;
      },
      writeRaw(bno, data) {
        xfile.write(bno * BS, data, 0, BS);
      },
    };
  }
  const image = path.join(dir, `cache-${images++}.img`);
  fs.writeFileSync(image, '');
  fs.truncateSync(image, DEVICE_BLOCKS * BS);
  const spy = new SpyTarget(new DeviceTarget(new Device(image)));
  t.teardown(() => {
    spy.close();
    fs.rmSync(image, { force: true });
  });
  const fd = fs.openSync(image, 'r+');
  t.teardown(() => fs.closeSync(fd));
  return {
    spy,
    readRaw(bno) {
      const b = Buffer.alloc(BS, 0xaa);
      t.equal(fs.readSync(fd, b, 0, BS, bno * BS), BS);
      return b;
    },
    writeRaw(bno, data) {
      fs.writeSync(fd, data, 0, BS, bno * BS);
    },
  };
}

/** A recognisable block: its number and a salt in the first bytes, a pattern after. */
function pattern(bno: number, salt: number): Buffer {
  const b = Buffer.alloc(BS);
  for (let i = 8; i < BS; i++) b[i] = (bno * 31 + salt * 7 + i * 13) & 0xff;
  b.writeUInt32BE(bno, 0);
  b.writeUInt32BE(salt, 4);
  return b;
}

function isZero(b: Buffer): boolean {
  return b.every((x) => x === 0);
}

/** Checks a block holds pattern(bno, salt), with a readable message when not. */
function sameBlock(t: Test, got: Buffer, bno: number, salt: number, what: string): void {
  const want = pattern(bno, salt);
  if (got.equals(want)) {
    t.pass(`${what}: block ${bno} holds pattern ${salt}`);
  } else {
    t.fail(`${what}: block ${bno} holds pattern ${salt}`, {
      found: `bno ${got.readUInt32BE(0)} salt ${got.readUInt32BE(4)}${isZero(got) ? ' (all zeroes)' : ''}`,
    });
  }
}

function write(cache: BufCache, bno: number, salt: number, ops: BufOps | null = null): Buf {
  const buf = cache.get(bno, ops);
  pattern(bno, salt).copy(buf.data);
  cache.markDirty(buf);
  return buf;
}

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

for (const kind of ['xfile', 'device'] as const) {
  t.test(`${kind}: misses, hits, get, write-back`, async (t) => {
    const fx = fixture(t, kind);
    const cache = new BufCache(fx.spy);
    t.equal(cache.blockSize, BS);
    fx.writeRaw(7, pattern(7, 1));

    const a = cache.read(5, null);
    t.ok(isZero(a.data), 'an unwritten block reads as zeroes');
    t.equal(a.bno, 5);
    t.equal(a.dirty, false);
    t.equal(a.cached, true);
    t.match(cache.stats(), { hits: 0, misses: 1, blocksRead: 1, blocksWritten: 0, cachedBlocks: 1, dirtyBlocks: 0, cachedBytes: BS });
    t.equal(cache.read(5, null), a, 'a hit returns the same Buf');
    t.match(cache.stats(), { hits: 1, misses: 1, blocksRead: 1, cachedBlocks: 1 });
    t.same(fx.spy.reads, [5], 'the target was read once');

    const b = cache.read(7, null);
    sameBlock(t, b.data, 7, 1, 'read of a block written around the cache');
    t.match(cache.stats(), { hits: 1, misses: 2, blocksRead: 2, cachedBlocks: 2 });
    t.equal(cache.peek(7), b, 'peek finds a cached block');
    t.equal(cache.peek(8), undefined, 'peek does not read');
    t.equal(cache.stats().misses, 2, 'peek counts no miss');

    // get: a zeroed block, never read from the target.
    const c = cache.get(9, null);
    t.ok(isZero(c.data), 'get of an uncached block is zeroed');
    fx.writeRaw(10, pattern(10, 2));
    t.ok(isZero(cache.get(10, null).data), 'get ignores what the target holds');
    b.data[100] ^= 0xff;
    t.equal(cache.get(7, null), b, 'get of a cached block returns that Buf');
    t.ok(isZero(b.data), '... zeroed');
    t.same(fx.spy.reads, [5, 7], 'get never reads the target');
    t.equal(cache.stats().cachedBlocks, 4);

    // Write, mark dirty, flush: the data reaches the target only at flush.
    pattern(9, 3).copy(c.data);
    cache.markDirty(c);
    cache.markDirty(c);
    t.equal(c.dirty, true);
    t.equal(cache.stats().dirtyBlocks, 1, 'marking twice counts once');
    t.ok(isZero(fx.readRaw(9)), 'nothing on the target before flush');
    t.same(fx.spy.writes, [], 'no writes before flush');
    cache.flush();
    t.equal(c.dirty, false, 'clean after flush');
    t.match(cache.stats(), { blocksWritten: 1, dirtyBlocks: 0, cachedBlocks: 4 });
    t.same(fx.spy.writes, [9], 'flush wrote the one dirty block');
    t.equal(fx.spy.flushes, 1, 'flush flushed the target');
    sameBlock(t, fx.readRaw(9), 9, 3, 'on the target after flush');
    const fresh = new BufCache(fx.spy);
    sameBlock(t, fresh.read(9, null).data, 9, 3, 'through a fresh cache');

    cache.flush();
    t.equal(cache.stats().blocksWritten, 1, 'a second flush writes nothing');
    t.equal(fx.spy.flushes, 2, '... but still flushes the target');

    // Several dirty blocks go out in block order.
    fx.spy.reset();
    for (const bno of [40, 12, 33, 3]) write(cache, bno, 4);
    t.equal(cache.stats().dirtyBlocks, 4);
    cache.flush();
    t.same(fx.spy.writes, [3, 12, 33, 40], 'flush writes in block order');
    for (const bno of [3, 12, 33, 40]) sameBlock(t, fx.readRaw(bno), bno, 4, 'after an ordered flush');
  });

  t.test(`${kind}: memory is bounded, LRU order`, async (t) => {
    const fx = fixture(t, kind);
    t.equal(new BufCache(fx.spy, { maxBlocks: 5 }).maxBlocks, MIN_CACHE_BLOCKS, 'maxBlocks is at least MIN_CACHE_BLOCKS');
    t.equal(new BufCache(fx.spy).maxBlocks, 8192, 'default maxBlocks');

    const cache = new BufCache(fx.spy, { maxBlocks: MIN_CACHE_BLOCKS });
    let maxSeen = 0;
    for (let bno = 0; bno < 1000; bno++) {
      cache.read(bno, null);
      maxSeen = Math.max(maxSeen, cache.stats().cachedBlocks);
    }
    t.equal(maxSeen, 64, 'never more than 64 blocks cached');
    t.match(cache.stats(), { misses: 1000, hits: 0, blocksRead: 1000, evictions: 936, cachedBlocks: 64, cachedBytes: 64 * BS });
    t.ok(cache.peek(999) !== undefined && cache.peek(936) !== undefined, 'the newest 64 are cached');
    t.equal(cache.peek(935), undefined, 'the 65th newest is gone');
    t.equal(cache.peek(0), undefined, 'the oldest is gone');

    // LRU: a block touched recently survives; the least recently used goes.
    const lru = new BufCache(fx.spy, { maxBlocks: 64 });
    for (let bno = 0; bno < 64; bno++) lru.read(bno, null);
    t.equal(lru.stats().evictions, 0, 'full but nothing evicted yet');
    lru.read(0, null); // hit: block 0 becomes the most recent
    lru.read(64, null);
    t.ok(lru.peek(0) !== undefined, 'recently read block 0 survives');
    t.equal(lru.peek(1), undefined, 'block 1, now the least recent, was evicted');
    t.ok(lru.peek(2) !== undefined, 'block 2 is still there');
    lru.peek(2); // peek is not a use
    lru.get(3, null); // get is
    lru.read(65, null);
    t.equal(lru.peek(2), undefined, 'peek does not refresh: block 2 evicted');
    lru.read(66, null);
    t.ok(lru.peek(3) !== undefined, 'get refreshes: block 3 survives');
    t.equal(lru.peek(4), undefined, 'block 4 evicted instead');
    t.equal(lru.stats().evictions, 3);
    t.equal(lru.stats().cachedBlocks, 64);
    // An evicted block is read again on its next use.
    const before = lru.stats().blocksRead;
    lru.read(1, null);
    t.equal(lru.stats().blocksRead, before + 1, 'an evicted block is read again');
  });

  t.test(`${kind}: writeBackOnEvict=false keeps dirty blocks`, async (t) => {
    const fx = fixture(t, kind);
    const cache = new BufCache(fx.spy, { maxBlocks: 64, writeBackOnEvict: false });
    t.equal(cache.writeBackOnEvict, false);
    for (let bno = 0; bno < 32; bno++) write(cache, bno, 5);
    for (let bno = 100; bno < 300; bno++) cache.read(bno, null);
    let stillDirty = 0;
    for (let bno = 0; bno < 32; bno++) if (cache.peek(bno)?.dirty === true) stillDirty++;
    t.equal(stillDirty, 32, 'all 32 dirty blocks stayed cached through 200 reads');
    t.match(cache.stats(), { cachedBlocks: 64, dirtyBlocks: 32, evictions: 168, blocksWritten: 0 });
    t.same(fx.spy.writes, [], 'nothing was written back on eviction');
    t.ok(isZero(fx.readRaw(0)), 'the target does not have the dirty data yet');

    cache.flush();
    t.equal(cache.stats().dirtyBlocks, 0);
    for (let bno = 0; bno < 32; bno++) sameBlock(t, fx.readRaw(bno), bno, 5, 'after flush');
    for (let bno = 300; bno < 364; bno++) cache.read(bno, null);
    let left = 0;
    for (let bno = 0; bno < 32; bno++) if (cache.peek(bno) !== undefined) left++;
    t.equal(left, 0, 'once clean, the formerly dirty blocks are evicted like any other');
    sameBlock(t, cache.read(17, null).data, 17, 5, 're-read after eviction');
  });

  t.test(`${kind}: writeBackOnEvict=false, more dirty blocks than maxBlocks`, async (t) => {
    const fx = fixture(t, kind);
    const cache = new BufCache(fx.spy, { maxBlocks: 64, writeBackOnEvict: false });
    const bufs: Buf[] = [];
    for (let bno = 0; bno < 100; bno++) bufs.push(write(cache, bno, 6));
    t.same(fx.spy.writes, [], 'nothing was written back on eviction');
    t.equal(cache.stats().evictions, 0, 'no block was evicted');
    const uncached = bufs.filter((b) => !b.cached).map((b) => b.bno);
    t.same(uncached, [], 'every dirtied buffer is in the cache');
    t.equal(cache.stats().cachedBlocks, 100, 'the cache grew past maxBlocks to hold 100 dirty blocks');
    t.equal(cache.stats().dirtyBlocks, 100, '100 dirty blocks');

    cache.flush();
    const lost: number[] = [];
    for (let bno = 0; bno < 100; bno++) if (!fx.readRaw(bno).equals(pattern(bno, 6))) lost.push(bno);
    t.same(lost, [], 'every dirtied block reached the target on flush');
    t.equal(cache.stats().dirtyBlocks, 0, 'no dirty blocks after flush');
    for (let bno = 1000; bno < 1100; bno++) cache.read(bno, null);
    t.ok(cache.stats().cachedBlocks <= 64, 'after flush the cache shrinks back to maxBlocks');
  });

  t.test(`${kind}: writeBackOnEvict=true writes dirty blocks back`, async (t) => {
    const fx = fixture(t, kind);
    const cache = new BufCache(fx.spy, { maxBlocks: 64, writeBackOnEvict: true });
    for (let bno = 0; bno < 200; bno++) write(cache, bno, 7);
    const s = cache.stats();
    t.ok(s.cachedBlocks <= 64, `cache stays bounded (${s.cachedBlocks} blocks)`);
    t.equal(s.evictions, 200 - s.cachedBlocks, 'every block not cached was evicted');
    t.equal(s.blocksWritten, s.evictions, 'each eviction wrote its block back first');
    t.equal(s.dirtyBlocks, s.cachedBlocks, 'the blocks still cached are dirty');
    t.same(fx.spy.writes, Array.from({ length: s.evictions }, (_, i) => i), 'written back oldest first');
    t.equal(cache.peek(0), undefined, 'block 0 was evicted');
    sameBlock(t, fx.readRaw(0), 0, 7, 'evicted block on the target');
    sameBlock(t, cache.read(0, null).data, 0, 7, 'evicted block re-read through the cache');
    cache.flush();
    for (let bno = 0; bno < 200; bno++) sameBlock(t, fx.readRaw(bno), bno, 7, 'after flush');
    t.equal(cache.stats().dirtyBlocks, 0);
  });

  for (const writeBackOnEvict of [false, true]) {
    t.test(`${kind}: markDirty re-adopts an evicted buffer (writeBackOnEvict=${writeBackOnEvict})`, async (t) => {
      const fx = fixture(t, kind);
      const cache = new BufCache(fx.spy, { maxBlocks: 64, writeBackOnEvict });
      const held = cache.read(0, null);
      for (let bno = 1; bno <= 64; bno++) cache.read(bno, null);
      t.equal(held.cached, false, 'the held buffer was evicted');
      t.equal(cache.peek(0), undefined);
      pattern(0, 8).copy(held.data);
      cache.markDirty(held);
      t.equal(held.cached, true, 're-adopted');
      t.equal(cache.peek(0), held, 'the index holds the caller\'s buffer again');
      t.match(cache.stats(), { dirtyBlocks: 1, cachedBlocks: 64 });
      cache.flush();
      sameBlock(t, fx.readRaw(0), 0, 8, 'the write through the evicted buffer reached the target');
      t.equal(cache.stats().dirtyBlocks, 0);
    });
  }

  t.test(`${kind}: markDirty on a stale buffer throws`, async (t) => {
    const fx = fixture(t, kind);
    fx.writeRaw(0, pattern(0, 9));
    const cache = new BufCache(fx.spy, { maxBlocks: 64 });
    const stale = cache.read(0, null);
    for (let bno = 1; bno <= 64; bno++) cache.read(bno, null);
    t.equal(stale.cached, false, 'evicted');
    const current = cache.read(0, null);
    t.not(current, stale, 'a second copy of block 0 was read');
    stale.data.fill(0x5a);
    const e = caught(() => cache.markDirty(stale));
    t.ok(e instanceof RmapfsError, 'an RmapfsError');
    t.equal((e as RmapfsError).code, 'EIO');
    t.match((e as RmapfsError).message, /block 0 .*stale buffer/);
    t.equal(cache.peek(0), current, 'the current copy stays cached');
    t.equal(current.dirty, false);
    t.equal(cache.stats().dirtyBlocks, 0);
    cache.flush();
    sameBlock(t, fx.readRaw(0), 0, 9, 'the stale data never reached the target');
  });

  t.test(`${kind}: verifiers`, async (t) => {
    const fx = fixture(t, kind);
    const BAD = 0xbadbad00;
    let verified: number[] = [];
    let prepared: number[] = [];
    const ops: BufOps = {
      name: 'test block',
      verifyRead(buf) {
        verified.push(buf.bno);
        if (buf.data.readUInt32BE(0) === BAD) throw corruption(`test block ${buf.bno}: bad magic`);
      },
      prepareWrite(buf) {
        prepared.push(buf.bno);
        buf.data.writeUInt32BE(native.crc32c(buf.data, 0, BS - 4, 0), BS - 4);
      },
    };
    const bad = Buffer.alloc(BS);
    bad.writeUInt32BE(BAD, 0);
    fx.writeRaw(3, bad);
    const cache = new BufCache(fx.spy, { maxBlocks: 64, writeBackOnEvict: true });

    const e = caught(() => cache.read(3, ops));
    t.ok(e instanceof RmapfsError, 'a block that fails its verifier throws');
    t.equal((e as RmapfsError).code, 'EFSCORRUPTED');
    t.same(verified, [3]);
    t.equal(cache.peek(3), undefined, 'the bad block is not cached');
    t.equal(cache.stats().cachedBlocks, 0);
    t.equal((caught(() => cache.read(3, ops)) as RmapfsError).code, 'EFSCORRUPTED', 'the second read throws too');
    t.same(verified, [3, 3], '... after calling the verifier again');
    t.same(fx.spy.reads, [3, 3], '... on a fresh read from the target');

    verified = [];
    const good = cache.read(4, ops);
    t.same(verified, [4], 'a good block is verified on its miss');
    t.equal(good.ops, ops);
    t.equal(cache.read(4, ops), good);
    t.same(verified, [4], 'not again on a hit with the same ops');
    const plain = cache.read(5, null);
    t.same(verified, [4], 'no verifier, no call');
    t.equal(cache.read(5, ops), plain);
    t.same(verified, [4, 5], 'the first read with a verifier of a block cached without one verifies it');
    t.equal(plain.ops, ops, '... and adopts the ops');

    // prepareWrite runs on flush, and on write-back at eviction.
    const w = write(cache, 10, 10, ops);
    t.same(prepared, [], 'prepareWrite not called before write-back');
    cache.flush();
    t.same(prepared, [10], 'prepareWrite called once on flush');
    const onDisk = fx.readRaw(10);
    t.equal(onDisk.readUInt32BE(BS - 4), native.crc32c(pattern(10, 10), 0, BS - 4, 0), 'the stamped crc32c is on the target');
    t.ok(onDisk.subarray(0, BS - 4).equals(pattern(10, 10).subarray(0, BS - 4)), 'with the data');
    t.equal(w.data.readUInt32BE(BS - 4), onDisk.readUInt32BE(BS - 4), 'the stamp is in the cached copy too');

    prepared = [];
    write(cache, 11, 11, ops);
    write(cache, 12, 12, null);
    for (let bno = 100; bno < 200; bno++) cache.read(bno, null);
    t.same(prepared, [11], 'prepareWrite called when a dirty block is written back on eviction (not for one without ops)');
    t.equal(fx.readRaw(11).readUInt32BE(BS - 4), native.crc32c(pattern(11, 11), 0, BS - 4, 0), 'evicted block stamped');
    sameBlock(t, fx.readRaw(12), 12, 12, 'block without ops written as is');
  });

  t.test(`${kind}: invalidate, discardAll, purgeClean`, async (t) => {
    const fx = fixture(t, kind);
    const cache = new BufCache(fx.spy, { maxBlocks: 64 });

    const b = write(cache, 1, 11);
    t.equal(cache.stats().dirtyBlocks, 1);
    cache.invalidate(1);
    t.match(cache.stats(), { dirtyBlocks: 0, cachedBlocks: 0 });
    t.equal(b.dirty, false, 'invalidated buffer is clean');
    t.equal(b.cached, false, 'and out of the cache');
    cache.invalidate(1);
    cache.invalidate(42);
    t.pass('invalidating an uncached block is a no-op');
    cache.flush();
    t.same(fx.spy.writes, [], 'the invalidated dirty block was never written');
    t.ok(isZero(fx.readRaw(1)), 'the target does not have it');
    fx.writeRaw(2, pattern(2, 1));
    const c = cache.read(2, null);
    fx.writeRaw(2, pattern(2, 2));
    sameBlock(t, cache.read(2, null).data, 2, 1, 'a cached block hides a change on the target');
    cache.invalidate(2);
    t.not(cache.read(2, null), c, 'after invalidate the block is read again');
    sameBlock(t, cache.peek(2)!.data, 2, 2, '... with the target\'s current contents');

    for (const bno of [20, 21, 22]) write(cache, bno, 12);
    for (const bno of [30, 31, 32]) cache.read(bno, null);
    t.match(cache.stats(), { cachedBlocks: 7, dirtyBlocks: 3 });
    cache.discardAll();
    t.match(cache.stats(), { cachedBlocks: 0, dirtyBlocks: 0, cachedBytes: 0 });
    for (const bno of [2, 20, 21, 22, 30, 31, 32]) t.equal(cache.peek(bno), undefined, `discardAll dropped ${bno}`);
    cache.flush();
    t.same(fx.spy.writes, [], 'discardAll threw the dirty blocks away unwritten');

    for (const bno of [5, 3, 4]) write(cache, bno, 13);
    for (const bno of [50, 51, 52]) cache.read(bno, null);
    cache.purgeClean();
    t.match(cache.stats(), { cachedBlocks: 3, dirtyBlocks: 3 });
    for (const bno of [3, 4, 5]) t.equal(cache.peek(bno)?.dirty, true, `purgeClean kept dirty block ${bno}`);
    for (const bno of [50, 51, 52]) t.equal(cache.peek(bno), undefined, `purgeClean dropped clean block ${bno}`);
    cache.flush();
    t.same(fx.spy.writes, [3, 4, 5], 'the kept dirty blocks are written on flush');
    for (const bno of [3, 4, 5]) sameBlock(t, fx.readRaw(bno), bno, 13, 'after purgeClean + flush');
    cache.purgeClean();
    t.equal(cache.stats().cachedBlocks, 0, 'once clean, purgeClean drops them too');
  });
}

t.test('readAhead: the blocks not cached in one read per run, verified; a cached one kept, a bad one left out', async (t) => {
  const fx = fixture(t, 'device');
  const cache = new BufCache(fx.spy);
  for (let b = 20; b < 28; b++) fx.writeRaw(b, pattern(b, 3));
  fx.writeRaw(25, pattern(99, 3)); // a block whose first bytes name another: the verifier refuses it
  const ops: BufOps = {
    name: 'numbered',
    verifyRead(buf) { if (buf.data.readUInt32BE(0) !== buf.bno) throw corruption(`block ${buf.bno} names ${buf.data.readUInt32BE(0)}`); },
    prepareWrite() {},
  };
  const dirty = write(cache, 22, 5, ops); // changed in the cache only: the device's older copy must not replace it
  fx.spy.reads.length = 0;
  cache.readAhead(20, 8, ops);
  t.same(fx.spy.reads, [20, 23], 'two runs around the cached block, one read each');
  t.equal(cache.peek(22), dirty, 'the cached block is kept');
  sameBlock(t, cache.peek(22)!.data, 22, 5, 'the changed block');
  t.equal(cache.peek(25), undefined, 'a block that fails verification stays out');
  fx.spy.reads.length = 0;
  for (const b of [20, 21, 23, 24, 26, 27]) sameBlock(t, cache.read(b, ops).data, b, 3, 'read after the read-ahead');
  t.same(fx.spy.reads, [], 'each was a hit');
  t.ok(caught(() => cache.read(25, ops)) instanceof RmapfsError, 'the bad block still fails its own read');
  t.end();
});

t.test('cleanBlocks and adopt: a later cache takes a closed one\'s clean blocks unread, each verified at its first read', async (t) => {
  const fx = fixture(t, 'device');
  const ops: BufOps = {
    name: 'numbered',
    verifyRead(buf) { if (buf.data.readUInt32BE(0) !== buf.bno) throw corruption(`block ${buf.bno} names ${buf.data.readUInt32BE(0)}`); },
    prepareWrite() {},
  };
  const first = new BufCache(fx.spy);
  for (let b = 30; b < 34; b++) fx.writeRaw(b, pattern(b, 4));
  for (let b = 30; b < 34; b++) first.read(b, ops);
  write(first, 34, 4, ops); // dirty: not the device's contents, so never handed on
  t.same(first.cleanBlocks().map((i) => i.bno), [30, 31, 32, 33], 'the clean blocks, least recently used first');
  const images = first.cleanBlocks();
  images[2]!.data.writeUInt32BE(7, 0); // as if the device held damage there: the adopter must still see it

  const later = new BufCache(fx.spy);
  sameBlock(t, later.read(31, ops).data, 31, 4, 'a block cached before the adoption');
  fx.spy.reads.length = 0;
  later.adopt(images);
  t.equal(later.stats().cachedBlocks, 4, 'the other three adopted beside it');
  for (const b of [30, 33]) sameBlock(t, later.read(b, ops).data, b, 4, 'an adopted block');
  t.same(fx.spy.reads, [], 'adopted blocks are hits: the target is not read');
  t.ok(caught(() => later.read(32, ops)) instanceof RmapfsError, 'an adopted block is verified at its first read, as a miss is');
  t.end();
});
