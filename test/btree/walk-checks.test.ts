/**
 * The engine's own checks of what a normal operation has in hand: a node key
 * that is not its child's lowest key, met by a descent, a cursor step or a
 * rebalance, and a sibling pointer that does not point back, met by a split
 * or a merge, are EFSCORRUPTED -- never used to decide, never silently
 * overwritten (the fuzz loop's "repaired by the writer" rows were these).
 */
import t from 'tap';
import { OFF_LEFTSIB, OFF_RIGHTSIB, OFF_NUMRECS } from '../../src/btree/btree-block';
import type { Btree } from '../../src/btree/btree';
import { tinyBtreeOps } from '../lib/tiny-btree';
import { memTree } from '../lib/trees';
import type { TreeFixture } from '../lib/trees';
import { caught } from '../lib/caught';

/** Keys 10, 20, ... inserted in order: a two-level tree of half-full leaves under one root node. */
function build(records: number): TreeFixture {
  const fx = memTree(tinyBtreeOps);
  const rec = Buffer.alloc(8);
  for (let i = 1; i <= records; i++) {
    rec.writeUInt32BE(i * 10, 0);
    rec.writeUInt32BE(i, 4);
    fx.tree.insert(rec);
  }
  return fx;
}

const key = (k: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(k); return b; };
const rec = (k: number): Buffer => { const b = Buffer.alloc(8); b.writeUInt32BE(k); b.writeUInt32BE(1, 4); return b; };

/** The root node (level 1) and its first children's pointers and lowest keys. */
function layout(tree: Btree): { root: number; children: number[]; lowKeys: number[] } {
  const root = tree.storage.getRoot();
  if (root.height !== 2) throw new Error(`height ${root.height}, wanted 2`);
  const b = tree.readBlock(root.ptr, 1).data;
  const n = b.readUInt16BE(OFF_NUMRECS);
  const children: number[] = [];
  const lowKeys: number[] = [];
  for (let i = 0; i < n; i++) {
    children.push(b.readUInt32BE(tree.geo.ptrOffset(i)));
    lowKeys.push(b.readUInt32BE(tree.geo.keyOffset(i)));
  }
  return { root: root.ptr, children, lowKeys };
}

function setU32(fx: TreeFixture, ptr: number, level: number, off: number, value: number): void {
  const buf = fx.tree.readBlock(ptr, level);
  buf.data.writeUInt32BE(value, off);
  fx.cache.markDirty(buf);
}

const corrupt = { code: 'EFSCORRUPTED' };

t.test('a node key below its child\'s lowest key: a descent into the child fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { root, lowKeys } = layout(fx.tree);
  setU32(fx, root, 1, fx.tree.geo.keyOffset(1), lowKeys[1]! - 1);
  t.match(caught(() => fx.tree.cursor().lookup(key(lowKeys[1]!), 0, 'eq')), corrupt, 'lookup');
  t.match(caught(() => fx.tree.insert(rec(lowKeys[1]! + 1))), corrupt, 'insert');
  t.end();
});

t.test('a node key above its child\'s lowest key: stepping into the child fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { root, lowKeys } = layout(fx.tree);
  // Still below the child's second key: order within the node holds, only the child is hidden.
  setU32(fx, root, 1, fx.tree.geo.keyOffset(1), lowKeys[1]! + 5);
  t.match(caught(() => fx.tree.cursor().lookup(key(lowKeys[1]!), 0, 'ge')), corrupt, 'lookup ge walks into it');
  const c = fx.tree.cursor();
  t.match(caught(() => { c.first(); while (c.increment()); }), corrupt, 'a full walk');
  t.end();
});

t.test('a node key above its child\'s lowest key: a merge with the child fails instead of deleting the key', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { root, lowKeys } = layout(fx.tree);
  setU32(fx, root, 1, fx.tree.geo.keyOffset(1), lowKeys[1]! + 5);
  // The first leaf is at its minimum: one delete makes it merge with (or borrow from) the hidden child.
  t.match(caught(() => fx.tree.delete(key(lowKeys[0]!))), corrupt, 'delete that rebalances');
  t.end();
});

t.test('a node key above its child\'s lowest key: a borrow from the left, met on the way, fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { root, lowKeys } = layout(fx.tree);
  const last = lowKeys.length - 1;
  // The last child borrows from (or merges into) the one before it, whose key lies.
  setU32(fx, root, 1, fx.tree.geo.keyOffset(last - 1), lowKeys[last - 1]! + 5);
  const c = fx.tree.cursor();
  t.ok(c.last(), 'the last record');
  const lastLeafKeys: number[] = [];
  const leaf = fx.tree.readBlock(c.ptrs[0]!, 0).data;
  for (let i = 0; i < leaf.readUInt16BE(OFF_NUMRECS); i++) lastLeafKeys.push(leaf.readUInt32BE(fx.tree.geo.recOffset(i)));
  // Deletes from the end until the leaf drops below its minimum: that delete, the first to rebalance, must fail.
  const minRecs = fx.tree.geo.minRecs(0);
  let deleted = 0;
  t.match(caught(() => { for (const k of lastLeafKeys.reverse()) { fx.tree.delete(key(k)); deleted++; } }), corrupt, 'deletes that rebalance');
  t.equal(deleted, lastLeafKeys.length - minRecs, 'the first delete that rebalances is the one that fails');
  t.end();
});

t.test('a right sibling that does not point back: a split fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { children, lowKeys } = layout(fx.tree);
  // Leaf 0 names leaf 2 as its right sibling; leaf 2's left is leaf 1.
  setU32(fx, children[0]!, 0, OFF_RIGHTSIB, children[2]!);
  const before = fx.tree.readBlock(children[2]!, 0).data.readUInt32BE(OFF_LEFTSIB);
  t.match(caught(() => { for (let i = 1; i <= 6; i++) fx.tree.insert(rec(lowKeys[0]! + i)); }), corrupt, 'inserts that split leaf 0');
  t.equal(fx.tree.readBlock(children[2]!, 0).data.readUInt32BE(OFF_LEFTSIB), before, 'leaf 2\'s left pointer was not overwritten');
  t.end();
});

t.test('a right sibling that does not point back: a merge fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { children, lowKeys } = layout(fx.tree);
  setU32(fx, children[0]!, 0, OFF_RIGHTSIB, children[2]!);
  t.match(caught(() => fx.tree.delete(key(lowKeys[0]!))), corrupt, 'delete that merges leaf 0 with leaf 1');
  t.end();
});

t.test('a left sibling that does not point back: a merge fails', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { children, lowKeys } = layout(fx.tree);
  setU32(fx, children[1]!, 0, OFF_LEFTSIB, children[2]!);
  t.match(caught(() => fx.tree.delete(key(lowKeys[0]!))), corrupt, 'delete that merges leaf 0 with leaf 1');
  t.end();
});

t.test('a healthy tree: the same operations all work', (t) => {
  const fx = build(20);
  t.teardown(() => fx.close());
  const { lowKeys } = layout(fx.tree);
  for (let i = 1; i <= 6; i++) fx.tree.insert(rec(lowKeys[0]! + i));
  fx.tree.delete(key(lowKeys[0]!));
  t.ok(fx.tree.cursor().lookup(key(lowKeys[1]!), 0, 'ge'), 'lookup');
  t.equal(fx.tree.count(), 25, 'records');
  t.end();
});
