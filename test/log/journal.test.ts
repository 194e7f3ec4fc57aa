/**
 * The write-ahead journal: commit/replay round trips across a reopen, torn
 * and stale transactions, wrapping with tail moves, multi-header
 * transactions, log full, log superblock damage, duplicate block numbers.
 * On an image file (DeviceTarget) and, where many commits run, an xfile.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { RmapfsError } from '../../src/errors';
import type { BufTarget } from '../../src/io/buf-target';
import { Device, DeviceTarget } from '../../src/io/device';
import { Xfile, XfileTarget } from '../../src/io/xfile';
import { readU64 } from '../../src/btree/btree-block';
import { Journal } from '../../src/log/journal';
import type { LoggedBlock } from '../../src/log/journal';
import { LOG_HEADER_MAGIC } from '../../src/log/log-format';
import { caught } from '../lib/caught';
import { Rng, testSeed } from '../lib/rng';
import { SpyTarget } from '../lib/spy-target';
import { scratchPath } from '../lib/trees';

const BS = 4096;
const seed = testSeed(20240611);

/** A target that can be closed and opened again over the same storage. */
interface Disk {
  target: BufTarget;
  reopen(): BufTarget;
  /** Image file path (device disks only). */
  path: string | null;
}

function deviceDisk(t: Test, blocks: number): Disk {
  const p = scratchPath('log.img');
  fs.writeFileSync(p, '');
  fs.truncateSync(p, blocks * BS);
  const disk: Disk = {
    target: new DeviceTarget(new Device(p)),
    reopen() {
      disk.target.close();
      disk.target = new DeviceTarget(new Device(p));
      return disk.target;
    },
    path: p,
  };
  t.teardown(() => {
    disk.target.close();
    fs.rmSync(p, { force: true });
  });
  return disk;
}

function xfileDisk(t: Test): Disk {
  const target = new XfileTarget(new Xfile('log-test'));
  t.teardown(() => target.close());
  // An xfile lives as long as this process: "reopening" is opening the journal again on it.
  return { target, reopen: () => target, path: null };
}

function uuidOf(n: number): Buffer {
  const u = Buffer.alloc(16);
  u.writeUInt32BE(0xfeed0000 + n, 0);
  u.writeUInt32BE(n, 12);
  return u;
}

/** A block image that names its lsn and bno (bytes 0..15), then seeded noise. */
function image(rng: Rng, lsn: number, bno: number): Buffer {
  const b = Buffer.allocUnsafe(BS);
  b.writeUInt32BE(Math.floor(lsn / 2 ** 32), 0);
  b.writeUInt32BE(lsn >>> 0, 4);
  b.writeUInt32BE(Math.floor(bno / 2 ** 32), 8);
  b.writeUInt32BE(bno >>> 0, 12);
  for (let off = 16; off < BS; off += 4) b.writeUInt32BE((rng.next() * 2 ** 32) >>> 0, off);
  return b;
}

/** n images at distinct random bnos outside [avoidStart, avoidEnd). */
function randomBlocks(rng: Rng, lsn: number, n: number, avoidStart: number, avoidEnd: number): LoggedBlock[] {
  const seen = new Set<number>();
  const out: LoggedBlock[] = [];
  while (out.length < n) {
    let bno = rng.int(1 << 20);
    if (bno >= avoidStart && bno < avoidEnd) bno += avoidEnd;
    if (seen.has(bno)) continue;
    seen.add(bno);
    out.push({ bno, data: image(rng, lsn, bno) });
  }
  return out;
}

interface Replayed {
  bno: number;
  image: Buffer;
}

function replayAll(j: Journal): { blocks: Replayed[]; result: ReturnType<Journal['replay']> } {
  const blocks: Replayed[] = [];
  const result = j.replay((bno, img) => blocks.push({ bno, image: img }));
  return { blocks, result };
}

/** Checks the replayed blocks are exactly the given transactions' blocks, in order. */
function sameBlocks(t: Test, got: Replayed[], txs: LoggedBlock[][], what: string): void {
  const want = txs.flat();
  t.equal(got.length, want.length, `${what}: block count`);
  let bad = -1;
  for (let i = 0; i < Math.min(got.length, want.length) && bad < 0; i++) {
    if (got[i].bno !== want[i].bno || !got[i].image.equals(want[i].data)) bad = i;
  }
  t.equal(bad, -1, `${what}: every block and image matches, in order`);
}

/** Checks e is an RmapfsError with this code and a one-line message. */
function isError(t: Test, e: unknown, code: string, what: string, match?: RegExp): void {
  t.ok(e instanceof RmapfsError, `${what}: an RmapfsError`);
  const re = e as RmapfsError;
  t.equal(re?.code, code, `${what}: ${code}`);
  t.notMatch(re?.message ?? '', /\n/, `${what}: one line`);
  if (match !== undefined) t.match(re?.message ?? '', match, `${what}: says ${match}`);
}

function readBlock(target: BufTarget, bno: number): Buffer {
  const b = Buffer.alloc(BS);
  target.readBlocks(bno, 1, b, 0);
  return b;
}

function writeBlock(target: BufTarget, bno: number, b: Buffer): void {
  target.writeBlocks(bno, 1, b, 0);
}

t.test('committed transactions come back on replay after a reopen', (t) => {
  const rng = new Rng(seed);
  const start = 8;
  const size = 256;
  const disk = deviceDisk(t, start + size + 8);
  const uuid = uuidOf(1);
  // Sentinels just outside the region must survive everything.
  const sentinel = Buffer.alloc(BS, 0x5a);
  writeBlock(disk.target, start - 1, sentinel);
  writeBlock(disk.target, start + size, sentinel);

  Journal.format(disk.target, start, size, uuid);
  let j = Journal.open(disk.target, start, size, uuid);
  const empty = replayAll(j);
  t.same(empty.result, { transactions: 0, blocks: 0, firstLsn: 0, lastLsn: 0 }, 'a fresh log replays nothing');
  t.equal(j.headLsn, 0, 'head lsn 0 after format');
  t.equal(j.tailLsn, 1, 'tail lsn 1 after format');

  const txs: LoggedBlock[][] = [];
  let total = 0;
  for (let i = 1; i <= 20; i++) {
    const blocks = randomBlocks(rng, i, 1 + rng.int(10), start, start + size);
    txs.push(blocks);
    total += blocks.length;
    t.equal(j.commit(blocks), i, `commit ${i} returns lsn ${i}`);
  }
  t.equal(j.commit([]), 20, 'an empty commit is a no-op returning the last lsn');

  j = Journal.open(disk.reopen(), start, size, uuid);
  const { blocks, result } = replayAll(j);
  t.same(result, { transactions: 20, blocks: total, firstLsn: 1, lastLsn: 20 }, 'replay counts');
  sameBlocks(t, blocks, txs, 'after reopen');
  t.equal(j.headLsn, 20, 'head after the last transaction');
  t.equal(j.tailLsn, 1, 'replay does not move the tail');

  const more = randomBlocks(rng, 21, 3, start, start + size);
  t.equal(j.commit(more), 21, 'the next commit follows the replayed ones');
  j = Journal.open(disk.reopen(), start, size, uuid);
  const again = replayAll(j);
  t.equal(again.result.lastLsn, 21, 'and is replayed after another reopen');
  sameBlocks(t, again.blocks, [...txs, more], 'second reopen');

  t.ok(readBlock(disk.target, start - 1).equals(sentinel), 'the block before the region is untouched');
  t.ok(readBlock(disk.target, start + size).equals(sentinel), 'the block after the region is untouched');
  t.end();
});

t.test('torn transactions end the replay; the next commit takes their place', (t) => {
  const start = 2;
  const size = 128;
  const uuid = uuidOf(2);
  // Each case damages transaction 4 of 5 (which has 6 images and starts at a known position).
  const cases: Array<{ name: string; damage: (target: BufTarget, txPos: number, len: number) => void }> = [
    {
      name: 'one byte of an image flipped',
      damage: (target, pos) => {
        const b = readBlock(target, start + 1 + pos + 3);
        b[1234] ^= 0x40;
        writeBlock(target, start + 1 + pos + 3, b);
      },
    },
    {
      name: 'commit block corrupted',
      damage: (target, pos, len) => {
        const b = readBlock(target, start + 1 + pos + len - 1);
        b[40] ^= 0x01; // inside the uuid: caught by the crc
        writeBlock(target, start + 1 + pos + len - 1, b);
      },
    },
    {
      name: 'commit block never written (zero)',
      damage: (target, pos, len) => writeBlock(target, start + 1 + pos + len - 1, Buffer.alloc(BS)),
    },
    {
      name: 'header corrupted',
      damage: (target, pos) => {
        const b = readBlock(target, start + 1 + pos);
        b[70] ^= 0x80; // the first bno
        writeBlock(target, start + 1 + pos, b);
      },
    },
    {
      name: 'a commit whose images are from an older transaction',
      damage: (target, pos) => {
        // An image block holds what an earlier lap left there.
        writeBlock(target, start + 1 + pos + 1, Buffer.alloc(BS, 0x33));
      },
    },
  ];
  for (const c of cases) {
    t.test(c.name, (t) => {
      const rng = new Rng(seed + 7);
      const disk = deviceDisk(t, start + size);
      Journal.format(disk.target, start, size, uuid);
      let j = Journal.open(disk.target, start, size, uuid);
      replayAll(j);
      const txs: LoggedBlock[][] = [];
      let pos = 0;
      let tornPos = -1;
      for (let lsn = 1; lsn <= 5; lsn++) {
        const n = lsn === 4 ? 6 : 1 + rng.int(5);
        const blocks = randomBlocks(rng, lsn, n, start, start + size);
        if (lsn === 4) tornPos = pos;
        pos += j.blocksNeeded(n);
        txs.push(blocks);
        j.commit(blocks);
      }
      c.damage(disk.target, tornPos, j.blocksNeeded(6));

      j = Journal.open(disk.reopen(), start, size, uuid);
      const r1 = replayAll(j);
      t.equal(r1.result.transactions, 3, 'only the transactions before the torn one');
      t.equal(r1.result.lastLsn, 3, 'last lsn 3');
      sameBlocks(t, r1.blocks, txs.slice(0, 3), 'before the torn one');
      t.equal(j.headLsn, 3, 'head is the last good transaction');

      // A smaller transaction than the torn one: junk of the old one stays behind it.
      const fresh = randomBlocks(rng, 4, 2, start, start + size);
      t.equal(j.commit(fresh), 4, 'the next commit reuses the torn lsn');
      const hdr = readBlock(disk.target, start + 1 + tornPos);
      t.equal(hdr.readUInt32BE(0), LOG_HEADER_MAGIC, 'a header at the torn position');
      t.equal(readU64(hdr, 24), 4, 'with lsn 4');

      j = Journal.open(disk.reopen(), start, size, uuid);
      const r2 = replayAll(j);
      t.same(r2.result, { transactions: 4, blocks: r1.result.blocks + 2, firstLsn: 1, lastLsn: 4 },
        'the replacement is replayed, nothing after it');
      sameBlocks(t, r2.blocks, [...txs.slice(0, 3), fresh], 'after the replacement');
      t.equal(j.commit(randomBlocks(rng, 5, 1, start, start + size)), 5, 'and the log goes on');
      t.end();
    });
  }
  t.end();
});

t.test('wrapping many times with tail moves replays exactly the live transactions', (t) => {
  const rng = new Rng(seed + 1);
  const start = 3;
  const size = 64;
  const uuid = uuidOf(3);
  const disk = xfileDisk(t);
  const spy = new SpyTarget(disk.target);
  Journal.format(spy, start, size, uuid);
  let j = Journal.open(spy, start, size, uuid);
  replayAll(j);
  spy.reset();
  const circular = size - 1;
  /** Every committed transaction by lsn, with the position it went to. */
  const model = new Map<number, { blocks: LoggedBlock[]; pos: number }>();
  let head = 0;
  let tail = 1;
  let pos = 0;
  let wraps = 0;
  let enospc = 0;
  let reopens = 0;
  let writeCallsOk = true;
  let failures = 0;
  const check = (what: string): void => {
    j = Journal.open(spy, start, size, uuid);
    const lsns: number[] = [];
    const { blocks, result } = replayAll(j);
    for (const b of blocks) lsns.push(readU64(b.image, 0));
    const want: LoggedBlock[][] = [];
    for (let l = tail; l <= head; l++) want.push(model.get(l)!.blocks);
    const wantLsns = want.flatMap((blocks, i) => blocks.map(() => tail + i));
    const ok = result.transactions === head - tail + 1 && result.lastLsn === (head >= tail ? head : 0)
      && result.firstLsn === (head >= tail ? tail : 0) && j.headLsn === head && j.tailLsn === tail
      && lsns.join() === wantLsns.join()
      && blocks.length === want.flat().length
      && blocks.every((b, i) => b.bno === want.flat()[i].bno && b.image.equals(want.flat()[i].data));
    if (!ok && failures++ < 3) {
      t.fail(`seed ${rng.seed}: ${what}: replay of tail ${tail} head ${head} gave ${JSON.stringify(result)}, `
        + `lsns ${[...new Set(lsns)].join(',')}`);
    }
    reopens++;
    spy.reset();
  };

  for (let step = 0; step < 600; step++) {
    const n = 1 + rng.int(rng.next() < 0.1 ? 30 : 6);
    const lsn = head + 1;
    const blocks = randomBlocks(rng, lsn, n, start, start + size);
    const len = j.blocksNeeded(n);
    for (let tries = 0; ; tries++) {
      if (tries > 100) throw new Error(`seed ${rng.seed}: step ${step}: still no room after 100 tail moves`);
      const e = caught(() => j.commit(blocks));
      if (e === undefined) break;
      if (!(e instanceof RmapfsError) || e.code !== 'ENOSPC') throw e;
      enospc++;
      // Checkpoint some of what is logged, possibly all of it.
      const to = rng.next() < 0.3 ? head : tail + rng.int(head - tail + 1);
      j.advanceTail(to);
      tail = to + 1;
      spy.reset();
    }
    head = lsn;
    model.set(lsn, { blocks, pos });
    const wrapped = pos + len > circular;
    if (wrapped) wraps++;
    if (spy.writes.length !== (wrapped ? 2 : 1) || spy.flushes !== 1) writeCallsOk = false;
    spy.reset();
    pos = (pos + len) % circular;
    if (rng.next() < 0.05) {
      const to = tail + rng.int(head - tail + 1);
      j.advanceTail(to);
      tail = to + 1;
      spy.reset();
    }
    if (step % 40 === 39) check(`step ${step}`);
  }
  check('end');
  t.ok(writeCallsOk, 'each commit wrote one run (two when it wrapped) and flushed once');
  t.ok(wraps > 20, `the log wrapped ${wraps} times`);
  t.ok(enospc > 20, `the log filled up ${enospc} times`);
  if (failures === 0) t.pass(`seed ${rng.seed}: ${reopens} reopens replayed exactly lsns tail..head, never a stale one`);

  // Empty the log: the circular area still holds complete transactions of older laps.
  j.advanceTail(head);
  tail = head + 1;
  j = Journal.open(disk.reopen(), start, size, uuid);
  const { result } = replayAll(j);
  t.same(result, { transactions: 0, blocks: 0, firstLsn: 0, lastLsn: 0 }, 'an emptied log replays nothing');
  t.equal(j.headLsn, head, 'head lsn survives emptying the log');
  t.equal(j.commit(randomBlocks(rng, head + 1, 2, start, start + size)), head + 1, 'lsns go on from there');
  t.end();
});

t.test('a complete transaction of an older lap right after the head is stale', (t) => {
  const rng = new Rng(seed + 6);
  const start = 5;
  const size = 64;
  const uuid = uuidOf(10);
  const disk = deviceDisk(t, start + size);
  Journal.format(disk.target, start, size, uuid);
  let j = Journal.open(disk.target, start, size, uuid);
  replayAll(j);
  // 21 one-image transactions (3 blocks each) fill the 63 circular blocks exactly.
  for (let lsn = 1; lsn <= 21; lsn++) j.commit(randomBlocks(rng, lsn, 1, start, start + size));
  t.equal(j.freeBlocks(), 0, 'the first lap fills the log');
  j.advanceTail(21);
  const second: LoggedBlock[][] = [];
  for (let lsn = 22; lsn <= 26; lsn++) {
    second.push(randomBlocks(rng, lsn, 1, start, start + size));
    j.commit(second[second.length - 1]);
  }
  const next = readBlock(disk.target, start + 1 + 15);
  t.equal(next.readUInt32BE(0), LOG_HEADER_MAGIC, 'a valid header follows the head');
  t.equal(readU64(next, 24), 6, 'of lsn 6, from the first lap');
  j = Journal.open(disk.reopen(), start, size, uuid);
  const r = replayAll(j);
  t.same(r.result, { transactions: 5, blocks: 5, firstLsn: 22, lastLsn: 26 }, 'only lsns 22..26 are replayed');
  sameBlocks(t, r.blocks, second, 'second lap');
  t.equal(j.commit(randomBlocks(rng, 27, 1, start, start + size)), 27, 'the next commit overwrites the stale one');
  t.end();
});

t.test('a transaction with several header blocks round-trips', (t) => {
  const rng = new Rng(seed + 2);
  const start = 1;
  const size = 1200;
  const uuid = uuidOf(4);
  const disk = deviceDisk(t, start + size);
  Journal.format(disk.target, start, size, uuid);
  let j = Journal.open(disk.target, start, size, uuid);
  replayAll(j);
  t.equal(j.blocksNeeded(1), 3, '1 image: header + image + commit');
  t.equal(j.blocksNeeded(504), 506, '504 images fit one header');
  t.equal(j.blocksNeeded(505), 508, '505 need two');
  t.equal(j.maxImages(), 1195, 'largest transaction in 1199 circular blocks');
  const small = randomBlocks(rng, 1, 3, start, start + size);
  const big = randomBlocks(rng, 2, 1100, start, start + size);
  j.commit(small);
  t.equal(j.commit(big), 2, 'an 1100-image transaction (3 headers) commits');
  j = Journal.open(disk.reopen(), start, size, uuid);
  const r = replayAll(j);
  t.same(r.result, { transactions: 2, blocks: 1103, firstLsn: 1, lastLsn: 2 }, 'replay counts');
  sameBlocks(t, r.blocks, [small, big], 'multi-header transaction');

  // A damaged second header voids the transaction.
  const hdr2 = start + 1 + j.blocksNeeded(3) + 1;
  const b = readBlock(disk.target, hdr2);
  t.equal(b.readUInt32BE(0), LOG_HEADER_MAGIC, 'the second header is where expected');
  b[64 + 8 * 100] ^= 1;
  writeBlock(disk.target, hdr2, b);
  j = Journal.open(disk.reopen(), start, size, uuid);
  const r2 = replayAll(j);
  t.same(r2.result, { transactions: 1, blocks: 3, firstLsn: 1, lastLsn: 1 }, 'a bad second header ends the replay');
  t.end();
});

t.test('log full: ENOSPC until the tail moves', (t) => {
  const rng = new Rng(seed + 3);
  const start = 0;
  const size = 64;
  const uuid = uuidOf(5);
  const disk = xfileDisk(t);
  Journal.format(disk.target, start, size, uuid);
  let j = Journal.open(disk.target, start, size, uuid);
  replayAll(j);
  t.equal(j.freeBlocks(), 63, 'all 63 circular blocks free');
  t.equal(j.maxImages(), 61, 'at most 61 images per transaction');
  isError(t, caught(() => j.commit(randomBlocks(rng, 1, 62, 0, size))), 'ENOSPC', 'a transaction that never fits',
    /log full/);

  t.equal(j.commit(randomBlocks(rng, 1, 40, 0, size)), 1, '40 images (42 blocks)');
  t.equal(j.commit(randomBlocks(rng, 2, 19, 0, size)), 2, '19 images fill the rest exactly');
  t.equal(j.freeBlocks(), 0, 'nothing free');
  isError(t, caught(() => j.commit(randomBlocks(rng, 3, 1, 0, size))), 'ENOSPC', 'commit into a full log', /log full/);
  t.equal(j.headLsn, 2, 'the refused commit left no trace');

  // A completely full log still replays to the end (head == tail position).
  j = Journal.open(disk.reopen(), start, size, uuid);
  t.equal(replayAll(j).result.transactions, 2, 'a full log replays both transactions');
  t.equal(j.freeBlocks(), 0, 'and is full again after replay');

  j.advanceTail(1);
  t.equal(j.tailLsn, 2, 'tail past lsn 1');
  t.equal(j.freeBlocks(), 42, 'its 42 blocks are free');
  const third = randomBlocks(rng, 3, 1, 0, size);
  t.equal(j.commit(third), 3, 'now the commit fits (and wraps)');
  j = Journal.open(disk.reopen(), start, size, uuid);
  const r = replayAll(j);
  t.same(r.result, { transactions: 2, blocks: 20, firstLsn: 2, lastLsn: 3 }, 'replay starts at the persisted tail');

  j.advanceTail(3);
  t.equal(j.freeBlocks(), 63, 'advanceTail(headLsn) empties the log');
  t.equal(j.commit(randomBlocks(rng, 4, j.maxImages(), 0, size)), 4, 'a maximal transaction fits an empty log');
  t.end();
});

t.test('a damaged or foreign log superblock is EFSCORRUPTED', (t) => {
  const start = 4;
  const size = 64;
  const uuid = uuidOf(6);
  const disk = deviceDisk(t, start + size);
  isError(t, caught(() => Journal.open(disk.target, start, size, uuid)), 'EFSCORRUPTED', 'an unformatted region',
    /log superblock.*magic/);
  Journal.format(disk.target, start, size, uuid);
  const good = readBlock(disk.target, start);
  t.ok(Journal.open(disk.target, start, size, uuid) instanceof Journal, 'the formatted log opens');

  for (const [off, what] of [[0, 'magic'], [5, 'version'], [20, 'start'], [27, 'tail lsn'], [70, 'size'],
    [79, 'tail position'], [3000, 'an unused byte']] as const) {
    const b = Buffer.from(good);
    b[off] ^= 0x10;
    writeBlock(disk.target, start, b);
    isError(t, caught(() => Journal.open(disk.reopen(), start, size, uuid)), 'EFSCORRUPTED', `flipped ${what} byte`,
      off === 0 ? /magic/ : /crc/);
  }
  writeBlock(disk.target, start, good);
  isError(t, caught(() => Journal.open(disk.target, start, size, uuidOf(7))), 'EFSCORRUPTED', 'another uuid', /uuid/);
  isError(t, caught(() => Journal.open(disk.target, start, size + 1, uuid)), 'EFSCORRUPTED', 'another size', /says the log is at/);
  isError(t, caught(() => Journal.open(disk.target, start, 32, uuid)), 'EFSCORRUPTED', 'a too small region', /geometry/);
  isError(t, caught(() => Journal.format(disk.target, start, 63, uuid)), 'EINVAL', 'format of a 63-block log');
  const e = caught(() => Journal.open(disk.target, start, size, uuidOf(7))) as RmapfsError;
  t.equal(e.errno, 117, 'EFSCORRUPTED is EUCLEAN (117)');
  t.ok(Journal.open(disk.target, start, size, uuid) instanceof Journal, 'the restored block opens again');
  t.end();
});

t.test('duplicate block numbers in one commit: the last image wins', (t) => {
  const rng = new Rng(seed + 4);
  const uuid = uuidOf(8);
  const disk = deviceDisk(t, 80);
  Journal.format(disk.target, 10, 64, uuid);
  let j = Journal.open(disk.target, 10, 64, uuid);
  replayAll(j);
  const a = image(rng, 1, 5);
  const b = image(rng, 1, 9);
  const c = image(rng, 1, 5);
  const free = j.freeBlocks();
  j.commit([{ bno: 5, data: a }, { bno: 9, data: b }, { bno: 5, data: c }]);
  t.equal(free - j.freeBlocks(), j.blocksNeeded(2), 'only two images were logged');
  j = Journal.open(disk.reopen(), 10, 64, uuid);
  const r = replayAll(j);
  t.same(r.result, { transactions: 1, blocks: 2, firstLsn: 1, lastLsn: 1 }, 'one transaction of two blocks');
  t.same(r.blocks.map((x) => x.bno), [5, 9], 'each bno once');
  t.ok(r.blocks[0].image.equals(c), 'block 5 has the later image');
  t.ok(r.blocks[1].image.equals(b), 'block 9 has its image');
  t.end();
});

t.test('misuse and I/O failure', (t) => {
  const rng = new Rng(seed + 5);
  const uuid = uuidOf(9);
  const disk = xfileDisk(t);
  Journal.format(disk.target, 0, 64, uuid);
  let j = Journal.open(disk.target, 0, 64, uuid);
  const one = randomBlocks(rng, 1, 1, 0, 64);
  isError(t, caught(() => j.commit(one)), 'EINVAL', 'commit before replay');
  replayAll(j);
  isError(t, caught(() => replayAll(j)), 'EINVAL', 'a second replay');
  isError(t, caught(() => j.commit([{ bno: 30, data: Buffer.alloc(BS) }])), 'EINVAL', 'a block inside the log',
    /inside the log/);
  isError(t, caught(() => j.commit([{ bno: 100, data: Buffer.alloc(512) }])), 'EINVAL', 'a short image');
  isError(t, caught(() => j.advanceTail(1)), 'EINVAL', 'a tail past the head');
  t.equal(j.commit(one), 1, 'a good commit');
  j.advanceTail(0);
  t.equal(j.tailLsn, 1, 'a tail move below the tail is a no-op');

  // A flush that fails shuts the log down.
  class FailingFlush extends SpyTarget {
    fail = false;
    override flush(): void {
      if (this.fail) throw new RmapfsError('EIO', 'fdatasync failed');
      super.flush();
    }
  }
  const failing = new FailingFlush(disk.target);
  j = Journal.open(failing, 0, 64, uuid);
  replayAll(j);
  failing.fail = true;
  isError(t, caught(() => j.commit(randomBlocks(rng, 2, 1, 0, 64))), 'EIO', 'a failed flush');
  failing.fail = false;
  isError(t, caught(() => j.commit(randomBlocks(rng, 2, 1, 0, 64))), 'EIO', 'later commits', /shut down/);
  isError(t, caught(() => j.advanceTail(1)), 'EIO', 'later tail moves', /shut down/);
  t.end();
});
