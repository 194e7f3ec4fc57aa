/**
 * MappingDigest (src/rmap/rmap-digest.ts): the same mappings in any order
 * digest the same; a change to any field the file pass compares, or another
 * split of the same blocks, does not -- and a field it does not compare (a
 * tree block's offset) does not count.
 */
import t from 'tap';
import { MappingDigest } from '../../src/rmap/rmap-digest';
import { RMAP_ATTR_FORK, RMAP_BMBT_BLOCK, RMAP_UNWRITTEN } from '../../src/rmap/rmap-btree';

type M = [owner: number, agbno: number, blockcount: number, offset: number, flags: number];

function digest(ms: readonly M[]): MappingDigest {
  const d = new MappingDigest();
  for (const m of ms) d.add(...m);
  return d;
}

const BIG = 3 * 2 ** 32 + 77; // an inode number of AG 3
const base: M[] = [[BIG, 100, 4, 0, 0], [BIG, 104, 1, 2 ** 33 + 5, RMAP_UNWRITTEN], [131, 7, 1, 0, RMAP_BMBT_BLOCK], [131, 9, 2, 0, RMAP_ATTR_FORK]];

t.ok(digest(base).equals(digest([...base].reverse())), 'order does not count');
const changes: [string, M[]][] = [
  ['owner', [[BIG + 1, 100, 4, 0, 0], ...base.slice(1)]],
  ['owner high word', [[BIG - 2 ** 32, 100, 4, 0, 0], ...base.slice(1)]],
  ['start', [[BIG, 101, 4, 0, 0], ...base.slice(1)]],
  ['length', [[BIG, 100, 3, 0, 0], ...base.slice(1)]],
  ['file offset', [[BIG, 100, 4, 1, 0], ...base.slice(1)]],
  ['file offset high word', [base[0]!, [BIG, 104, 1, 5, RMAP_UNWRITTEN], ...base.slice(2)]],
  ['unwritten', [base[0]!, [BIG, 104, 1, 2 ** 33 + 5, 0], ...base.slice(2)]],
  ['fork', [...base.slice(0, 2), [131, 7, 1, 0, RMAP_BMBT_BLOCK | RMAP_ATTR_FORK], base[3]!]],
  ['a mapping left out', base.slice(1)],
  ['the same blocks split in two', [[BIG, 100, 2, 0, 0], [BIG, 102, 2, 2, 0], ...base.slice(1)]],
];
for (const [what, ms] of changes) t.notOk(digest(base).equals(digest(ms)), `${what} counts`);
t.ok(digest(base).equals(digest([...base.slice(0, 2), [131, 7, 1, 99, RMAP_BMBT_BLOCK], base[3]!])), 'a tree block\'s offset does not');
