import t from 'tap';
import { randomBytes } from 'crypto';
import { native } from '../../src/native';
import { caught } from '../lib/caught';

/** Bit-at-a-time reference, independent of both addon implementations. */
function crc32cRef(buf: Uint8Array, seed = 0): number {
  let crc = ~seed >>> 0;
  for (const byte of buf) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0x82f63b78 : crc >>> 1;
  }
  return ~crc >>> 0;
}


const vectors: Array<[string, Buffer, number]> = [
  ['"123456789"', Buffer.from('123456789', 'ascii'), 0xe3069283],
  ['32 x 0x00', Buffer.alloc(32, 0x00), 0x8a9136aa],
  ['32 x 0xFF', Buffer.alloc(32, 0xff), 0x62a8ab43],
  ['32 incrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e],
  ['32 decrementing bytes', Buffer.from(Array.from({ length: 32 }, (_, i) => 31 - i)), 0x113fdb5c],
  ['empty', Buffer.alloc(0), 0],
];

t.test('implementation is reported', async (t) => {
  const impl = native.crc32cImplementation();
  t.ok(impl === 'sse4.2' || impl === 'table', `implementation is ${impl}`);
  t.comment(`crc32c() uses the ${impl} implementation on this CPU`);
});

t.test('standard vectors (RFC 3720 / iSCSI)', async (t) => {
  for (const [name, buf, want] of vectors) {
    t.equal(native.crc32c(buf, 0, buf.length, 0), want, `crc32c ${name}`);
    t.equal(native.crc32cTable(buf, 0, buf.length, 0), want, `crc32cTable ${name}`);
    t.equal(crc32cRef(buf), want, `reference ${name}`);
  }
});

t.test('results are unsigned 32-bit numbers', async (t) => {
  for (let i = 0; i < 200; i++) {
    const buf = randomBytes(i);
    for (const v of [native.crc32c(buf, 0, i, 0), native.crc32cTable(buf, 0, i, 0)]) {
      if (!(Number.isInteger(v) && v >= 0 && v <= 0xffffffff)) {
        t.fail(`not a uint32: ${v} for length ${i}`);
        return;
      }
    }
  }
  t.pass('all results in [0, 2^32)');
});

t.test('hardware and table agree on many lengths and misalignments', async (t) => {
  const big = randomBytes(70000);
  const lengths = [
    ...Array.from({ length: 130 }, (_, i) => i),
    255, 256, 257, 511, 512, 513, 1000, 4095, 4096, 4097, 8191, 65536, 65536 + 7,
  ];
  let mismatches = 0;
  let checked = 0;
  for (const len of lengths) {
    for (let mis = 0; mis < 16; mis++) {
      const seed = (len * 2654435761 + mis) >>> 0;
      for (const s of [0, seed]) {
        const hw = native.crc32c(big, mis, len, s);
        const sw = native.crc32cTable(big, mis, len, s);
        checked++;
        if (hw !== sw) {
          mismatches++;
          if (mismatches < 5) t.fail(`len ${len} offset ${mis} seed ${s}: ${hw} != ${sw}`);
        }
      }
    }
  }
  t.equal(mismatches, 0, `${checked} comparisons, no mismatches`);
  // Spot-check against the bitwise reference too.
  for (const len of [1, 7, 8, 9, 63, 64, 65, 1000]) {
    for (const mis of [0, 1, 3, 5]) {
      const slice = big.subarray(mis, mis + len);
      t.equal(native.crc32c(big, mis, len, 0), crc32cRef(slice), `reference len ${len} offset ${mis}`);
    }
  }
});

t.test('chaining: crc32c(b, crc32c(a)) == crc32c(a + b)', async (t) => {
  const data = randomBytes(5000);
  const whole = native.crc32c(data, 0, data.length, 0);
  for (const split of [0, 1, 3, 8, 13, 64, 999, 4096, 4999, 5000]) {
    const a = native.crc32c(data, 0, split, 0);
    t.equal(native.crc32c(data, split, data.length - split, a), whole, `hw split at ${split}`);
    const at = native.crc32cTable(data, 0, split, 0);
    t.equal(native.crc32cTable(data, split, data.length - split, at), whole, `table split at ${split}`);
  }
  // Three pieces, via separate Buffers.
  const p1 = data.subarray(0, 1234);
  const p2 = data.subarray(1234, 3000);
  const p3 = data.subarray(3000);
  let c = native.crc32c(p1, 0, p1.length, 0);
  c = native.crc32c(p2, 0, p2.length, c);
  c = native.crc32c(p3, 0, p3.length, c);
  t.equal(c, whole, 'three-piece chain');
  const v = Buffer.from('123456789');
  t.equal(native.crc32c(v, 4, 5, native.crc32c(v, 0, 4, 0)), 0xe3069283, 'chained "1234" + "56789"');
});

t.test('offset and length are honoured', async (t) => {
  const data = randomBytes(1000);
  for (const [off, len] of [[0, 0], [0, 1000], [1, 998], [17, 100], [999, 1], [1000, 0], [500, 500]]) {
    const expect = crc32cRef(data.subarray(off, off + len));
    t.equal(native.crc32c(data, off, len, 0), expect, `hw offset ${off} length ${len}`);
    t.equal(native.crc32cTable(data, off, len, 0), expect, `table offset ${off} length ${len}`);
  }
  // A Buffer that is itself a view into a larger ArrayBuffer.
  const view = data.subarray(100, 200);
  t.equal(native.crc32c(view, 10, 20, 0), crc32cRef(data.subarray(110, 130)), 'respects the Buffer byteOffset');
  // The bytes outside the range really are ignored.
  const a = Buffer.from('xx123456789yy');
  const b = Buffer.from('QQ123456789ZZ');
  t.equal(native.crc32c(a, 2, 9, 0), 0xe3069283);
  t.equal(native.crc32c(b, 2, 9, 0), 0xe3069283);
});

t.test('bad arguments throw', async (t) => {
  const buf = Buffer.alloc(16);
  for (const fn of [native.crc32c, native.crc32cTable]) {
    const name = fn === native.crc32c ? 'crc32c' : 'crc32cTable';
    const ranges: Array<[number, number, number]> = [
      [17, 0, 0],
      [0, 17, 0],
      [8, 9, 0],
      [16, 1, 0],
      [-1, 4, 0],
      [0, -1, 0],
      [1.5, 4, 0],
      [0, NaN, 0],
      [0, Infinity, 0],
      [0, 4, -1],
      [0, 4, 2 ** 32],
      [0, 4, 0.5],
    ];
    for (const [off, len, seed] of ranges) {
      const e = caught(() => fn(buf, off, len, seed));
      t.ok(e instanceof RangeError, `${name}(buf, ${off}, ${len}, ${seed}) throws RangeError`);
    }
    const notBuffer = caught(() => fn('abc' as unknown as Buffer, 0, 3, 0));
    t.ok(notBuffer instanceof TypeError, `${name} with a string throws TypeError`);
    const notNumber = caught(() => fn(buf, '0' as unknown as number, 3, 0));
    t.ok(notNumber instanceof TypeError, `${name} with a string offset throws TypeError`);
    const missing = caught(() => (fn as unknown as (b: Buffer) => number)(buf));
    t.ok(missing instanceof TypeError, `${name} with missing arguments throws TypeError`);
  }
  t.equal(native.crc32c(buf, 16, 0, 0xffffffff), 0xffffffff, 'zero-length at the end, max seed is allowed');
});
