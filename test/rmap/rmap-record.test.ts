/**
 * The rmap record and key codec: byte layout, round trips at the edges of
 * every field, key derivation (the unwritten flag is not part of the key),
 * and that the comparators are the byte order of the keys.
 */
import t from 'tap';
import {
  decodeRmap, encodeRmap, encodeRmapKey, rmapBtreeOps, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_KEY_SIZE,
  RMAP_REC_SIZE, RMAP_UNWRITTEN,
} from '../../src/rmap/rmap-btree';
import type { RmapRecord } from '../../src/rmap/rmap-btree';
import { Rng } from '../lib/rng';

const ops = rmapBtreeOps;
const U32_MAX = 0xffffffff;
const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1
/** Flag combinations as unsigned numbers (`A | B` alone is a negative int32 in JS). */
const FLAG_SETS = [0, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN,
  (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK) >>> 0, (RMAP_ATTR_FORK | RMAP_UNWRITTEN) >>> 0,
  (RMAP_BMBT_BLOCK | RMAP_UNWRITTEN) >>> 0, (RMAP_ATTR_FORK | RMAP_BMBT_BLOCK | RMAP_UNWRITTEN) >>> 0];

function enc(r: RmapRecord): Buffer {
  const b = Buffer.alloc(RMAP_REC_SIZE);
  encodeRmap(r, b, 0);
  return b;
}

function keyOf(rec: Buffer): Buffer {
  const k = Buffer.alloc(RMAP_KEY_SIZE);
  ops.keyFromRec(rec, 0, k, 0);
  return k;
}

/** The key as the number it stands for: startblock, owner, then (attr, bmbt, offset). */
function keyValue(r: RmapRecord): bigint {
  const keyFlags = BigInt((r.flags & ~RMAP_UNWRITTEN & 0xe0000000) >>> 0);
  return (BigInt(r.startblock) << 128n) | (BigInt(r.owner) << 64n) | (keyFlags << 32n) | BigInt(r.offset);
}

function sign(n: number): number {
  return n < 0 ? -1 : n > 0 ? 1 : 0;
}

t.test('constants', async (t) => {
  t.equal(RMAP_REC_SIZE, 24);
  t.equal(RMAP_KEY_SIZE, 20);
  t.equal(ops.recSize, RMAP_REC_SIZE);
  t.equal(ops.keySize, RMAP_KEY_SIZE);
  t.equal(ops.magic, Buffer.from('RMB3').readUInt32BE(0), 'magic is "RMB3"');
  t.equal(RMAP_ATTR_FORK, 2 ** 31);
  t.equal(RMAP_BMBT_BLOCK, 2 ** 30);
  t.equal(RMAP_UNWRITTEN, 2 ** 29);
});

t.test('byte layout', async (t) => {
  const r: RmapRecord = {
    startblock: 0x01020304, blockcount: 0x05060708, owner: 0x123456789abc, offset: 0x1_00000005,
    flags: (RMAP_ATTR_FORK | RMAP_UNWRITTEN) >>> 0,
  };
  t.equal(enc(r).toString('hex'), '01020304' + '05060708' + '00001234' + '56789abc' + 'a0000001' + '00000005',
    'big-endian fields, flags in the top bits of the offset');
  const key = Buffer.alloc(RMAP_KEY_SIZE);
  encodeRmapKey(r.startblock, r.owner, r.offset, r.flags, key);
  t.equal(key.toString('hex'), '01020304' + '00001234' + '56789abc' + '80000001' + '00000005',
    'the key has no blockcount and no unwritten flag');
  t.same(keyOf(enc(r)), key, 'keyFromRec gives the same bytes');
});

t.test('encode/decode round trip at the edges', async (t) => {
  const starts = [0, 1, 0x7fffffff, 0x80000000, U32_MAX];
  const counts = [1, 0x80000000, U32_MAX];
  const owners = [0, 1, U32_MAX, 2 ** 32, 2 ** 32 + 1, 2 ** 52, MAX_SAFE - 1, MAX_SAFE];
  const offsets = [0, 1, U32_MAX, 2 ** 32, 2 ** 40 + 12345, MAX_SAFE];
  let n = 0;
  let bad = 0;
  const buf = Buffer.alloc(RMAP_REC_SIZE + 10, 0xee);
  for (const startblock of starts) {
    for (const owner of owners) {
      for (const offset of offsets) {
        for (const flags of FLAG_SETS) {
          const blockcount = counts[n % counts.length]!;
          const r: RmapRecord = { startblock, blockcount, owner, offset, flags };
          encodeRmap(r, buf, 5);
          const d = decodeRmap(buf, 5);
          if (d.startblock !== startblock || d.blockcount !== blockcount || d.owner !== owner
            || d.offset !== offset || d.flags !== flags) {
            if (bad++ < 5) t.fail('round trip', { record: r, decoded: d });
          }
          n++;
        }
      }
    }
  }
  t.equal(bad, 0, `${n} edge records round-trip exactly`);
  t.same([...buf.subarray(0, 5)], [0xee, 0xee, 0xee, 0xee, 0xee], 'bytes before the record untouched');
  t.same([...buf.subarray(5 + RMAP_REC_SIZE)], [0xee, 0xee, 0xee, 0xee, 0xee], 'bytes after the record untouched');

  const max = decodeRmap(enc({ startblock: U32_MAX, blockcount: U32_MAX, owner: MAX_SAFE, offset: MAX_SAFE, flags: FLAG_SETS[7]! }), 0);
  t.same(max, { startblock: U32_MAX, blockcount: U32_MAX, owner: MAX_SAFE, offset: MAX_SAFE, flags: 0xe0000000 },
    'every field at its maximum');
  t.ok(max.flags > 0, 'decoded flags are unsigned');
  for (const flags of FLAG_SETS) {
    const d = decodeRmap(enc({ startblock: 1, blockcount: 1, owner: 2, offset: 2 ** 53 - 2 ** 29, flags }), 0);
    t.equal(d.flags, flags, `flags ${flags.toString(16)} survive beside a large offset`);
    t.equal(d.offset, 2 ** 53 - 2 ** 29, '... and do not leak into the offset');
  }
  // Bits other than the three flags are not stored.
  const junk = decodeRmap(enc({ startblock: 1, blockcount: 1, owner: 2, offset: 3, flags: 0x1fffffff }), 0);
  t.equal(junk.flags, 0, 'non-flag bits of flags are dropped');
  t.equal(junk.offset, 3, '... and do not corrupt the offset');
  // The 61 offset bits: the high word's low 29 bits are all offset.
  const hi = Buffer.alloc(RMAP_REC_SIZE);
  hi.writeUInt32BE(0x1fffffff, 16);
  hi.writeUInt32BE(0, 20);
  t.equal(decodeRmap(hi, 0).offset, 0x1fffffff * 2 ** 32, 'all 29 high offset bits decode (2^61 - 2^32)');
  t.equal(decodeRmap(hi, 0).flags, 0);
});

t.test('keyFromRec ignores unwritten, keeps attr and bmbt', async (t) => {
  const base = { startblock: 77, blockcount: 5, owner: 2 ** 40 + 3, offset: 123456 };
  const written = enc({ ...base, flags: 0 });
  const unwritten = enc({ ...base, blockcount: 9, flags: RMAP_UNWRITTEN });
  t.not(written.toString('hex'), unwritten.toString('hex'), 'the records differ');
  t.same(keyOf(unwritten), keyOf(written), 'unwritten (and blockcount) do not change the key');
  t.equal(ops.compareRecToKey(unwritten, 0, keyOf(written), 0), 0, 'compareRecToKey: same key');
  t.equal(ops.compareRecToKey(written, 0, keyOf(unwritten), 0), 0);

  for (const flag of [RMAP_ATTR_FORK, RMAP_BMBT_BLOCK]) {
    const flagged = enc({ ...base, flags: flag });
    const k = keyOf(flagged);
    t.equal(k.readUInt32BE(12), (flag | 0) >>> 0, `flag ${flag.toString(16)} is in the key`);
    t.ok(ops.compareKeys(keyOf(written), 0, k, 0) < 0, `a record with flag ${flag.toString(16)} sorts after the plain one`);
    t.ok(ops.compareRecToKey(flagged, 0, keyOf(written), 0) > 0);
    const both = enc({ ...base, flags: (flag | RMAP_UNWRITTEN) >>> 0 });
    t.same(keyOf(both), k, '... and unwritten beside it is still ignored');
  }
  t.ok(ops.compareKeys(keyOf(enc({ ...base, flags: RMAP_BMBT_BLOCK })), 0, keyOf(enc({ ...base, flags: RMAP_ATTR_FORK })), 0) < 0,
    'bmbt sorts before attr (bit 62 < bit 63)');
  t.ok(ops.compareKeys(keyOf(enc({ ...base, offset: MAX_SAFE, flags: 0 })), 0, keyOf(enc({ ...base, offset: 0, flags: RMAP_BMBT_BLOCK })), 0) < 0,
    'any flag sorts after every offset without it');
});

t.test('encodeRmapKey matches keyFromRec', async (t) => {
  const rng = new Rng(77);
  const key = Buffer.alloc(RMAP_KEY_SIZE + 3, 0xee);
  let bad = 0;
  for (let i = 0; i < 2000; i++) {
    const r = randomRecord(rng);
    encodeRmapKey(r.startblock, r.owner, r.offset, r.flags, key, 3);
    const want = keyOf(enc(r));
    if (!key.subarray(3).equals(want) && bad++ < 5) t.fail('encodeRmapKey', { record: r, got: key.toString('hex'), want: want.toString('hex') });
  }
  t.equal(bad, 0, '2000 random records: encodeRmapKey == keyFromRec');
  t.same([...key.subarray(0, 3)], [0xee, 0xee, 0xee], 'bytes before the key untouched');
});

/** Records drawn from small value sets (so fields tie often) that include every high bit. */
function randomRecord(rng: Rng): RmapRecord {
  const pick = <T>(xs: T[]): T => xs[rng.int(xs.length)]!;
  return {
    startblock: pick([0, 1, 2, 0x7fffffff, 0x80000000, U32_MAX, rng.int(2 ** 32)]),
    blockcount: 1 + rng.int(1000),
    owner: pick([0, 1, 128, U32_MAX, 2 ** 32, 2 ** 52 + 1, MAX_SAFE, rng.int(2 ** 32) * 2 ** 21 + rng.int(2 ** 21)]),
    offset: pick([0, 1, U32_MAX, 2 ** 32, 2 ** 52, MAX_SAFE, rng.int(2 ** 32) * 2 ** 21 + rng.int(2 ** 21)]),
    flags: pick(FLAG_SETS),
  };
}

t.test('comparators agree with each other, with key bytes, and with key order', async (t) => {
  const rng = new Rng(20240611);
  const N = 3000;
  const recs = Array.from({ length: N }, () => randomRecord(rng));
  const encoded = recs.map(enc);
  const keys = encoded.map(keyOf);
  const values = recs.map(keyValue);

  let mismatches = 0;
  let ties = 0;
  for (let i = 0; i < 20000; i++) {
    const a = rng.int(N);
    const b = rng.next() < 0.1 ? a : rng.int(N);
    const byKeys = sign(ops.compareKeys(keys[a]!, 0, keys[b]!, 0));
    const byRec = sign(ops.compareRecToKey(encoded[a]!, 0, keys[b]!, 0));
    const byBytes = sign(Buffer.compare(keys[a]!, keys[b]!));
    const byValue = values[a]! < values[b]! ? -1 : values[a]! > values[b]! ? 1 : 0;
    const reverse = sign(ops.compareKeys(keys[b]!, 0, keys[a]!, 0));
    if (byKeys === 0) ties++;
    if ((byKeys !== byRec || byKeys !== byBytes || byKeys !== byValue || reverse !== -byKeys) && mismatches++ < 5) {
      t.fail('comparators disagree', { a: recs[a], b: recs[b], byKeys, byRec, byBytes, byValue, reverse });
    }
  }
  t.equal(mismatches, 0, '20000 pairs: compareKeys == compareRecToKey == byte order == numeric key order');
  t.ok(ties > 2000, `ties were tested too (${ties})`);

  // Sorting both ways gives the same order.
  const idx = Array.from({ length: N }, (_, i) => i);
  const byOps = [...idx].sort((a, b) => ops.compareKeys(keys[a]!, 0, keys[b]!, 0) || a - b);
  const byRecToKey = [...idx].sort((a, b) => ops.compareRecToKey(encoded[a]!, 0, keys[b]!, 0) || a - b);
  const byBytes = [...idx].sort((a, b) => Buffer.compare(keys[a]!, keys[b]!) || a - b);
  const byValue = [...idx].sort((a, b) => (values[a]! < values[b]! ? -1 : values[a]! > values[b]! ? 1 : a - b));
  t.same(byOps, byBytes, 'sort by compareKeys == sort by key bytes');
  t.same(byRecToKey, byBytes, 'sort by compareRecToKey == sort by key bytes');
  t.same(byValue, byBytes, 'sort by (startblock, owner, attr, bmbt, offset) == sort by key bytes');
  const first = recs[byOps[0]!]!;
  const last = recs[byOps[N - 1]!]!;
  t.ok(first.startblock <= last.startblock, 'sorted by startblock first');

  // Offsets into larger buffers are honoured.
  const big = Buffer.alloc(100);
  keys[byOps[0]!]!.copy(big, 7);
  keys[byOps[N - 1]!]!.copy(big, 50);
  t.ok(ops.compareKeys(big, 7, big, 50) < 0, 'compareKeys at offsets');
  t.equal(ops.compareKeys(big, 50, keys[byOps[N - 1]!]!, 0), 0);
  const recBuf = Buffer.alloc(60);
  encoded[byOps[N - 1]!]!.copy(recBuf, 11);
  t.equal(ops.compareRecToKey(recBuf, 11, big, 7), 1, 'compareRecToKey at offsets');
  t.equal(ops.compareRecToKey(recBuf, 11, big, 50), 0);
});

t.test('checkRecord', async (t) => {
  const check = (startblock: number, blockcount: number): string | null =>
    ops.checkRecord!(enc({ startblock, blockcount, owner: 5, offset: 0, flags: 0 }), 0);
  t.equal(check(0, 0), 'zero-length extent');
  t.equal(check(1000, 0), 'zero-length extent');
  t.equal(check(0, 1), null, 'block 0, one block');
  t.equal(check(100, 50), null);
  t.equal(check(0, U32_MAX), null, '0 + 2^32-1 ends on the last block number');
  t.equal(check(U32_MAX - 1, 1), null, 'ends exactly at 2^32-1');
  t.equal(check(0xfffffff0, 0xf), null);
  t.match(check(U32_MAX, 1), /wraps/, 'startblock 2^32-1 + 1 wraps');
  t.equal(check(U32_MAX, 1), `extent ${U32_MAX}+1 wraps past the end of the AG`);
  t.match(check(0xfffffff0, 0x10), /wraps/);
  t.match(check(1, U32_MAX), /wraps/);
  t.match(check(0x80000000, 0x80000000), /wraps/, 'two halves of the space wrap');
  t.match(check(U32_MAX, U32_MAX), /wraps/);
  const rec = Buffer.alloc(RMAP_REC_SIZE + 8);
  encodeRmap({ startblock: 3, blockcount: 0, owner: 1, offset: 0, flags: 0 }, rec, 8);
  t.equal(ops.checkRecord!(rec, 8), 'zero-length extent', 'at an offset');
});

t.test('formatRecord', async (t) => {
  const fmt = (r: RmapRecord): string => ops.formatRecord!(enc(r), 0);
  t.equal(fmt({ startblock: 1, blockcount: 2, owner: 0x123456789abc, offset: 0x1_00000005, flags: (RMAP_ATTR_FORK | RMAP_UNWRITTEN) >>> 0 }),
    '[1+2] owner 20015998343868 offset 4294967301 (attr,unwritten)');
  t.equal(fmt({ startblock: 0, blockcount: 8, owner: 128, offset: 0, flags: 0 }), '[0+8] owner 128 offset 0', 'no flags, no parentheses');
  t.equal(fmt({ startblock: U32_MAX, blockcount: U32_MAX, owner: MAX_SAFE, offset: MAX_SAFE, flags: FLAG_SETS[7]! }),
    `[${U32_MAX}+${U32_MAX}] owner ${MAX_SAFE} offset ${MAX_SAFE} (attr,bmbt,unwritten)`);
  t.equal(fmt({ startblock: 9, blockcount: 1, owner: 3, offset: 4, flags: RMAP_BMBT_BLOCK }), '[9+1] owner 3 offset 4 (bmbt)');
  const rec = Buffer.alloc(RMAP_REC_SIZE * 2);
  encodeRmap({ startblock: 42, blockcount: 3, owner: 7, offset: 11, flags: RMAP_UNWRITTEN }, rec, RMAP_REC_SIZE);
  t.equal(ops.formatRecord!(rec, RMAP_REC_SIZE), '[42+3] owner 7 offset 11 (unwritten)', 'at an offset');
});
