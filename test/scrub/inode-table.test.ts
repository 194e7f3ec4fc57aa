/** The file pass's inode table: in use or not, modes, link counts, the order keys came in -- over many chunks. */
import t from 'tap';
import { InodeTable, inodeKeys } from '../../src/scrub/inode-table';
import { Geometry } from '../../src/format/geometry';

t.test('modes, links and order over chunks added out of order, the arrays grown several times', (t) => {
  const table = new InodeTable();
  const keys: number[] = [];
  // 300 chunks (the arrays start with room for 64), 5 inodes each, chunks visited in a scattered order.
  for (let c = 0; c < 300; c++) {
    const chunk = (c * 7919) % 300;
    for (const i of [0, 1, 17, 40, 63]) keys.push(chunk * 64 + i);
  }
  keys.forEach((k, n) => table.setUsed(k, n % 3 === 0 ? 0 : 0o100000 | (k & 0o777)));
  table.setUsed(keys[5]!, 0o40755); // set again: a mode changes, the order does not
  t.same(table.keys, keys, 'every key, once, in the order added');
  for (const [n, k] of keys.entries()) {
    const want = n === 5 ? 0o40755 : n % 3 === 0 ? 0 : 0o100000 | (k & 0o777);
    if (table.modeOf(k) !== want) t.fail(`mode of ${k}: ${table.modeOf(k)}, want ${want}`);
  }
  t.equal(table.modeOf(2), undefined, 'a key of a chunk in use, not itself in use');
  t.equal(table.modeOf(300 * 64 + 1), undefined, 'a key of a chunk never added');
  for (const [n, k] of keys.entries()) for (let i = 0; i < n % 4; i++) table.link(k);
  t.ok(keys.every((k, n) => table.linksOf(k) === n % 4), 'each key counts its own links');
  t.equal(table.linksOf(300 * 64 + 1), 0, 'no links for a key not in use');
  t.end();
});

t.test('inodeKeys: small keys and back, and the inode numbers themselves where they do not fit', (t) => {
  const small = new Geometry({ uuid: Buffer.alloc(16), totalBlocks: 4 * 65536, agBlocks: 65536, agCount: 4, logStart: 2, logBlocks: 1024 });
  const k = inodeKeys(small);
  for (const ino of [small.ino(0, 64), small.ino(3, 8 * 65536 - 1), small.ino(2, 100)]) {
    t.ok(k.key(ino) < 2 ** 30 && k.key(ino) >= 0, `inode ${ino} has a small key`);
    t.equal(k.inoOf(k.key(ino)), ino, `inode ${ino} back from its key`);
  }
  t.end();
});
