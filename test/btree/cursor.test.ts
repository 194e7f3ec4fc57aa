/** Cursor edge cases the random model test reaches rarely or never. */
import t from 'tap';
import { verifyBtree } from '../../src/btree/verify';
import { tinyBtreeOps } from '../lib/tiny-btree';
import { memTree } from '../lib/trees';

const rec = (k: number, v = 0): Buffer => {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(k, 0);
  b.writeUInt32BE(v, 4);
  return b;
};
const key = (k: number): Buffer => rec(k).subarray(0, 4);

t.test('empty tree', (t) => {
  const fx = memTree(tinyBtreeOps);
  const cur = fx.tree.cursor();
  for (const mode of ['eq', 'le', 'ge'] as const) t.notOk(cur.lookup(key(5), 0, mode), `${mode} finds nothing`);
  t.notOk(cur.first(), 'no first record');
  t.notOk(cur.last(), 'no last record');
  t.notOk(cur.increment(), 'an invalid cursor does not move');
  t.throws(() => cur.delete(), { code: 'EINVAL' }, 'delete without a record is EINVAL');
  t.throws(() => cur.record(), { code: 'EINVAL' });
  t.notOk(fx.tree.delete(key(5)), 'deleting a missing key says so');
  t.equal(fx.tree.count(), 0);
  fx.close();
  t.end();
});

t.test('lookups at the edges, first/last, walking the whole tree both ways', (t) => {
  const fx = memTree(tinyBtreeOps);
  for (let i = 1; i <= 500; i++) fx.tree.insert(rec(i * 10, i));
  const cur = fx.tree.cursor();
  t.notOk(cur.lookup(key(5), 0, 'le'), 'le below the smallest key finds nothing');
  t.ok(cur.lookup(key(5), 0, 'ge'), 'ge below the smallest finds the first');
  t.equal(cur.record().readUInt32BE(0), 10);
  t.notOk(cur.lookup(key(5001), 0, 'ge'), 'ge above the largest finds nothing');
  t.ok(cur.lookup(key(5001), 0, 'le'), 'le above the largest finds the last');
  t.equal(cur.record().readUInt32BE(0), 5000);
  t.ok(cur.lookup(key(255), 0, 'le'));
  t.equal(cur.record().readUInt32BE(0), 250, 'le between keys');
  t.ok(cur.lookup(key(255), 0, 'ge'));
  t.equal(cur.record().readUInt32BE(0), 260, 'ge between keys');
  t.throws(() => fx.tree.insert(rec(250, 9)), { code: 'EEXIST' }, 'a duplicate key is EEXIST');

  let n = 0;
  let last = 0;
  let ordered = true;
  for (let ok = cur.first(); ok; ok = cur.increment()) {
    const k = cur.record().readUInt32BE(0);
    if (k <= last) ordered = false;
    last = k;
    n++;
  }
  t.ok(ordered && n === 500, `forward walk: ${n} records in order`);
  n = 0;
  last = Infinity;
  ordered = true;
  for (let ok = cur.last(); ok; ok = cur.decrement()) {
    const k = cur.record().readUInt32BE(0);
    if (k >= last) ordered = false;
    last = k;
    n++;
  }
  t.ok(ordered && n === 500, `backward walk: ${n} records in order`);
  fx.close();
  t.end();
});

t.test('update: same key, key moved within its neighbours, and a move that breaks order', (t) => {
  const fx = memTree(tinyBtreeOps);
  for (let i = 1; i <= 300; i++) fx.tree.insert(rec(i * 10, i));
  const cur = fx.tree.cursor();
  t.ok(cur.lookup(key(1500), 0, 'eq'));
  cur.update(rec(1500, 777));
  t.equal(cur.record().readUInt32BE(4), 777, 'value changed in place, cursor still on it');

  // Move every leaf's first record key down by 5 (still above its predecessor): parent keys must follow.
  let moved = 0;
  for (let k = 10; k <= 3000; k += 10) {
    t.ok(cur.lookup(key(k), 0, 'eq'));
    cur.update(rec(k - 5, k));
    moved++;
  }
  const v = verifyBtree(fx.tree);
  t.ok(v.ok, `after ${moved} key-changing updates the tree verifies${v.ok ? '' : `: ${v.problems[0]?.message}`}`);
  t.ok(cur.lookup(key(5), 0, 'eq'), 'the moved key is found');

  t.ok(cur.lookup(key(95), 0, 'eq'));
  t.throws(() => cur.update(rec(200)), { code: 'EINVAL' }, 'moving a key past its successor is refused');
  t.throws(() => cur.update(rec(80)), { code: 'EINVAL' }, 'moving a key before its predecessor is refused');
  t.ok(verifyBtree(fx.tree).ok, 'a refused update changed nothing');
  fx.close();
  t.end();
});
