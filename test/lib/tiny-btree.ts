/**
 * A deliberately small btree type for tests: 8-byte records (u32 key, u32
 * value) and at most six entries per block, so a few thousand records make a
 * tree six or seven levels deep and every split, borrow, merge and height
 * change happens thousands of times.
 */
import type { BtreeOps } from '../../src/btree/btree-ops';
import { magicOf } from '../../src/btree/btree-block';

function cmp(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

export const tinyBtreeOps: BtreeOps = {
  name: 'tiny',
  magic: magicOf('TINY'),
  recSize: 8,
  keySize: 4,
  maxLeafRecs: 6,
  maxNodeRecs: 6,
  keyFromRec: (rec, r, key, k) => { key.writeUInt32BE(rec.readUInt32BE(r), k); },
  compareKeys: (a, ao, b, bo) => cmp(a.readUInt32BE(ao), b.readUInt32BE(bo)),
  compareRecToKey: (rec, r, key, k) => cmp(rec.readUInt32BE(r), key.readUInt32BE(k)),
  checkRecord: (rec, r) => (rec.readUInt32BE(r + 4) === 0xdeadbeef ? 'poisoned value' : null),
};
