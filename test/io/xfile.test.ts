/**
 * The TypeScript xfile classes (Xfile, XfileTarget) over both backings
 * (memfd and the O_TMPFILE fallback), and the in-memory btree's use of an
 * xfile: memory held grows with the tree and truncate() gives it back.
 */
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { RmapfsError } from '../../src/errors';
import { Xfile, XfileTarget } from '../../src/io/xfile';
import { MemBtree } from '../../src/btree/mem-btree';
import { encodeRmap, decodeRmap, rmapBtreeOps, RMAP_REC_SIZE } from '../../src/rmap/rmap-btree';
import { Rng } from '../lib/rng';

const PAGE = 4096;

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

function bytes(length: number, seed: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seed + i * 29 + (i >> 8)) & 0xff;
  return b;
}

function isZero(b: Buffer): boolean {
  return b.every((x) => x === 0);
}

const kinds: Array<['memfd' | 'tmpfile', boolean]> = [['memfd', false], ['tmpfile', true]];

for (const [kind, forceTmpfile] of kinds) {
  t.test(`${kind}: reads, writes, size, truncate, discard`, async (t) => {
    const xf = new Xfile(`xfile-test-${kind}`, { forceTmpfile, tmpDir: os.tmpdir() });
    t.teardown(() => xf.close());
    t.equal(xf.kind, kind);
    t.equal(xf.name, `xfile-test-${kind}`);
    t.equal(xf.size, 0, 'a new xfile is empty');

    const dst = Buffer.alloc(10000, 0xaa);
    xf.read(123456, dst, 100, 5000);
    t.ok(isZero(dst.subarray(100, 5100)), 'reading an empty xfile gives zeroes');
    t.equal(dst[99], 0xaa, 'byte before the range untouched');
    t.equal(dst[5100], 0xaa, 'byte after the range untouched');

    // An unaligned write from the middle of a buffer, far from 0: a hole before it.
    const src = bytes(6000, 1);
    xf.write(10001, src, 3, 5000);
    t.equal(xf.size, 15001, 'size is the highest byte written + 1');
    const back = Buffer.alloc(7000, 0xaa);
    xf.read(9990, back, 0, 7000);
    t.ok(isZero(back.subarray(0, 11)), 'the hole before the data reads as zeroes');
    t.ok(back.subarray(11, 5011).equals(src.subarray(3, 5003)), 'the data round-trips at an unaligned position');
    t.ok(isZero(back.subarray(5011)), 'past EOF reads as zeroes (the 0xaa fill was overwritten)');
    const hole = Buffer.alloc(PAGE, 0xaa);
    xf.read(PAGE, hole, 0, PAGE);
    t.ok(isZero(hole), 'a whole page in the hole reads as zeroes');

    // A write across a page boundary, and one below the end: size does not shrink.
    const small = bytes(20, 7);
    xf.write(PAGE - 10, small, 0, 20);
    t.equal(xf.size, 15001, 'writing below the end keeps the size');
    const across = Buffer.alloc(24, 0xaa);
    xf.read(PAGE - 12, across, 0, 24);
    t.same([...across.subarray(0, 2)], [0, 0]);
    t.ok(across.subarray(2, 22).equals(small), 'a write across a page boundary round-trips');
    t.same([...across.subarray(22)], [0, 0]);
    xf.write(20000, Buffer.from('z'), 0, 1);
    t.equal(xf.size, 20001, 'a one-byte write extends the size');

    // truncate: shrinking drops data; growing again reads zeroes.
    xf.truncate(12000);
    t.equal(xf.size, 12000, 'truncated down');
    const edge = Buffer.alloc(40, 0xaa);
    xf.read(11980, edge, 0, 40);
    t.ok(edge.subarray(0, 20).equals(src.subarray(3 + 1979, 3 + 1999)), 'data before the cut survives');
    t.ok(isZero(edge.subarray(20)), 'nothing past the cut');
    xf.truncate(30000);
    t.equal(xf.size, 30000, 'truncated up');
    const grown = Buffer.alloc(18000, 0xaa);
    xf.read(12000, grown, 0, 18000);
    t.ok(isZero(grown), 'the old data past the first cut is gone; the grown area is zeroes');
    xf.truncate(0);
    t.equal(xf.size, 0, 'truncated to empty');
    xf.read(10001, back, 0, 100);
    t.ok(isZero(back.subarray(0, 100)), 'after truncate(0) everything reads as zeroes');

    // discard gives pages back; they read as zeroes, the size is unchanged.
    const N = 64;
    const chunk = bytes(N * PAGE, 3);
    xf.write(0, chunk, 0, chunk.length);
    const before = xf.bytesHeld();
    t.ok(before >= N * PAGE, `bytesHeld ${before} >= ${N * PAGE} after writing ${N} pages`);
    xf.discard(4 * PAGE, 56 * PAGE);
    const after = xf.bytesHeld();
    t.ok(before - after >= 56 * PAGE, `bytesHeld dropped by at least 56 pages (${before} -> ${after})`);
    t.equal(xf.size, N * PAGE, 'discard keeps the size');
    const page = Buffer.alloc(PAGE, 0xaa);
    for (const p of [4, 30, 59]) {
      xf.read(p * PAGE, page, 0, PAGE);
      t.ok(isZero(page), `discarded page ${p} reads as zeroes`);
    }
    for (const p of [0, 3, 60, 63]) {
      xf.read(p * PAGE, page, 0, PAGE);
      t.ok(page.equals(chunk.subarray(p * PAGE, (p + 1) * PAGE)), `page ${p} outside the discarded range is intact`);
    }
  });

  t.test(`${kind}: XfileTarget`, async (t) => {
    const xf = new Xfile('xfile-target', { forceTmpfile });
    const target = new XfileTarget(xf);
    t.teardown(() => target.close());
    t.equal(target.name, 'xfile:xfile-target');
    t.equal(target.blockSize, PAGE);
    t.equal(target.checksummed, false, 'xfile blocks carry no checksum');
    t.equal(target.blockCount, 0);

    const blocks = bytes(3 * PAGE, 5);
    target.writeBlocks(10, 2, blocks, PAGE);
    t.equal(target.blockCount, 12, 'blockCount covers the highest block written');
    t.equal(xf.size, 12 * PAGE);
    const back = Buffer.alloc(4 * PAGE, 0xaa);
    target.readBlocks(9, 4, back, 0);
    t.ok(isZero(back.subarray(0, PAGE)), 'block 9 (a hole) is zeroes');
    t.ok(back.subarray(PAGE, 3 * PAGE).equals(blocks.subarray(PAGE)), 'blocks 10 and 11 round-trip');
    t.ok(isZero(back.subarray(3 * PAGE)), 'block 12 (past the end) is zeroes');
    target.readBlocks(1000, 1, back, 0);
    t.ok(isZero(back.subarray(0, PAGE)), 'a block far past the end reads as zeroes');
    t.equal(target.blockCount, 12, 'reading does not grow the xfile');

    target.discardBlocks(10, 1);
    target.readBlocks(10, 2, back, 0);
    t.ok(isZero(back.subarray(0, PAGE)), 'a discarded block reads as zeroes');
    t.ok(back.subarray(PAGE, 2 * PAGE).equals(blocks.subarray(2 * PAGE)), 'its neighbour is intact');
    t.equal(target.blockCount, 12, 'discarding keeps the size');
    target.flush();
    t.pass('flush is a no-op');

    const small = new XfileTarget(new Xfile('small-blocks'), 512);
    t.teardown(() => small.close());
    small.writeBlocks(3, 1, blocks, 0);
    t.equal(small.blockCount, 4, 'blockCount in 512-byte blocks');
    t.equal(small.xfile.size, 2048);
  });
}

t.test('a closed xfile throws EBADF', async (t) => {
  const xf = new Xfile('closed-one');
  xf.write(0, Buffer.from('hello'), 0, 5);
  xf.close();
  xf.close();
  t.pass('closing twice is fine');
  const buf = Buffer.alloc(PAGE);
  const calls: Array<[string, () => unknown]> = [
    ['read', () => xf.read(0, buf, 0, 5)],
    ['read past the end', () => xf.read(1 << 20, buf, 0, 5)],
    ['write', () => xf.write(0, buf, 0, 5)],
    ['truncate', () => xf.truncate(0)],
    ['discard', () => xf.discard(0, PAGE)],
    ['bytesHeld', () => xf.bytesHeld()],
    ['XfileTarget.readBlocks', () => new XfileTarget(xf).readBlocks(0, 1, buf, 0)],
  ];
  for (const [name, fn] of calls) {
    const e = caught(fn);
    t.ok(e instanceof RmapfsError, `${name}: RmapfsError`);
    t.equal((e as RmapfsError).code, 'EBADF', `${name}: EBADF`);
    t.equal((e as RmapfsError).message, 'xfile closed-one is closed', `${name}: message names the xfile`);
  }
});

t.test('tmpfile in a missing directory: ENOENT naming the path', async (t) => {
  const bad = path.join(os.tmpdir(), `rmapfs-no-such-dir-${process.pid}`, 'deeper');
  const e = caught(() => new Xfile('lost', { forceTmpfile: true, tmpDir: bad }));
  t.ok(e instanceof RmapfsError, 'an RmapfsError');
  const re = e as RmapfsError;
  t.equal(re.code, 'ENOENT');
  t.equal(re.errno, os.constants.errno.ENOENT);
  t.equal(re.path, bad);
  t.notMatch(re.message, /\n/, 'one line');
  t.ok(re.message.includes(bad), `message names ${bad}: ${re.message}`);
  t.match(re.message, /^cannot create xfile lost\b/, 'says what failed');
  t.match(re.message, /no such file or directory$/, 'and why');
  t.equal(re.toLine(), `rmapfs: ${re.message}`);
  t.ok(re.cause instanceof Error, 'the addon error is kept as the cause');
  t.notOk(fs.existsSync(bad), 'nothing was created');
});

t.test('addon errors from truncate come out as RmapfsError; an empty discard is a no-op', async (t) => {
  // An O_TMPFILE xfile on a disk filesystem: ext4 and its kind refuse files of 2^53 - 1 bytes (tmpfs would not).
  const xf = new Xfile('bad-truncate', { forceTmpfile: true, tmpDir: '/var/tmp' });
  t.teardown(() => xf.close());
  t.doesNotThrow(() => xf.discard(0, 0), 'discarding nothing does nothing (the kernel would say EINVAL)');
  const e = caught(() => xf.truncate(2 ** 53 - 1));
  if (e === undefined) {
    t.comment('skipped: this /var/tmp accepts a 2^53-byte file; no kernel error to convert');
    return;
  }
  t.ok(e instanceof RmapfsError, 'an RmapfsError (io-error.ts is the one place addon errors are converted)');
  t.match((e as RmapfsError).code, /^E(FBIG|INVAL)$/, 'carrying the errno code');
  t.notMatch((e as RmapfsError).message, /\n/, 'with a one-line message');
});

t.test('MemBtree: memory follows the tree, truncate gives it back', async (t) => {
  const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 256 });
  t.teardown(() => mem.close());
  t.equal(mem.xfile.kind, 'memfd');
  const emptyHeld = mem.bytesHeld();
  t.ok(emptyHeld <= 4 * PAGE, `an empty tree holds ${emptyHeld} bytes`);

  const N = 50_000;
  const rng = new Rng(5150);
  // Distinct startblocks, inserted in a random order.
  const order = Array.from({ length: N }, (_, i) => i);
  for (let i = N - 1; i > 0; i--) {
    const j = rng.int(i + 1);
    [order[i], order[j]] = [order[j]!, order[i]!];
  }
  const rec = Buffer.alloc(RMAP_REC_SIZE);
  for (const i of order) {
    encodeRmap({ startblock: i * 8, blockcount: 1 + (i % 7), owner: 1000 + (i % 97), offset: i * 3, flags: 0 }, rec, 0);
    mem.tree.insert(rec);
  }
  t.equal(mem.tree.count(), N, `${N} records in the tree`);
  t.ok(mem.tree.height >= 2, `height ${mem.tree.height}`);
  const pages = mem.pagesInUse();
  // 24-byte records in 4 KiB leaves: at least N / 170 leaves.
  t.ok(pages >= N / 170, `${pages} pages in use`);
  const held = mem.bytesHeld();
  t.ok(held >= pages * PAGE, `bytesHeld ${held} >= ${pages} pages`);
  t.ok(held <= (pages + 16) * PAGE, `bytesHeld ${held} is about ${pages} pages (+ header), not more`);
  t.equal(mem.xfile.size, (pages + 1) * PAGE, 'the xfile is the header page plus the tree\'s pages');

  mem.truncate();
  const afterHeld = mem.bytesHeld();
  t.ok(afterHeld <= 4 * PAGE, `after truncate the xfile holds ${afterHeld} bytes (a few pages at most)`);
  t.equal(mem.pagesInUse(), 1, 'one page (the empty root leaf) in use');
  t.equal(mem.tree.count(), 0, 'the tree is empty');
  t.equal(mem.tree.height, 1);

  // Usable again.
  for (let i = 0; i < 500; i++) {
    encodeRmap({ startblock: 7 + i * 2, blockcount: 1, owner: 42, offset: i, flags: 0 }, rec, 0);
    mem.tree.insert(rec);
  }
  const seen: number[] = [];
  mem.tree.forEach((b, off) => { seen.push(decodeRmap(b, off).startblock); });
  t.same(seen, Array.from({ length: 500 }, (_, i) => 7 + i * 2), 'records inserted after truncate come back in order');
  mem.close();
  t.equal((caught(() => mem.xfile.bytesHeld()) as RmapfsError).code, 'EBADF', 'closed');
});
