/** The in-memory btree's page allocator and header, seen from the xfile itself. */
import t from 'tap';
import { MemBtree } from '../../src/btree/mem-btree';
import { verifyBtree } from '../../src/btree/verify';
import { encodeRmap, rmapBtreeOps } from '../../src/rmap/rmap-btree';

function fill(mem: MemBtree, n: number, salt: number): void {
  const rec = Buffer.alloc(24);
  for (let i = 0; i < n; i++) {
    encodeRmap({ startblock: (Math.imul(i, 2654435761) >>> 0) ^ salt, blockcount: 1, owner: 99, offset: i, flags: 0 }, rec, 0);
    mem.tree.insert(rec);
  }
}

t.test('freed pages are reused before the xfile grows', (t) => {
  const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 64 });
  t.teardown(() => mem.close());
  fill(mem, 20000, 0);
  const pages = mem.pagesInUse();
  mem.cache.flush();
  const highWater = mem.xfile.size;
  t.ok(pages > 100, `${pages} pages in use for 20,000 records`);

  // Delete everything: the pages go to the free list, the tree shrinks to one leaf.
  const all: Buffer[] = [];
  mem.tree.forEach((b, off) => { all.push(Buffer.from(b.subarray(off, off + 24))); });
  const key = Buffer.alloc(20);
  for (const rec of all) {
    rmapBtreeOps.keyFromRec(rec, 0, key, 0);
    if (!mem.tree.delete(key)) t.fail('a record vanished');
  }
  t.equal(mem.pagesInUse(), 1, 'one page (the empty root leaf) in use after deleting all');

  // The same number of records again (other keys) must fit in the pages freed.
  fill(mem, 20000, 0x5555);
  mem.cache.flush();
  t.ok(mem.xfile.size <= highWater, `xfile did not grow past its high-water mark (${mem.xfile.size} <= ${highWater})`);
  t.ok(verifyBtree(mem.tree).ok, 'the tree built from reused pages verifies');
  t.end();
});

t.test('page 0 holds the root and height', (t) => {
  const mem = new MemBtree(rmapBtreeOps);
  t.teardown(() => mem.close());
  fill(mem, 50000, 7);
  mem.cache.flush();
  const page0 = Buffer.alloc(4096);
  mem.xfile.read(0, page0, 0, 4096);
  t.equal(page0.toString('latin1', 0, 4), 'XFBH', 'header magic');
  const root = mem.tree.storage.getRoot();
  t.equal(page0.readUInt32BE(4), root.ptr, 'root pointer');
  t.equal(page0.readUInt32BE(8), root.height, 'height');
  t.equal(root.height, 3, '50,000 rmap records make a 3-level tree');
  const rootPage = Buffer.alloc(4096);
  mem.xfile.read(root.ptr * 4096, rootPage, 0, 4096);
  t.equal(rootPage.toString('latin1', 0, 4), 'RMB3', 'the root page is an rmap btree block');
  t.equal(rootPage.readUInt16BE(4), 2, 'at level 2');
  t.end();
});

t.test('two in-memory btrees do not share anything', (t) => {
  const a = new MemBtree(rmapBtreeOps);
  const b = new MemBtree(rmapBtreeOps);
  t.teardown(() => { a.close(); b.close(); });
  fill(a, 3000, 1);
  fill(b, 5000, 2);
  t.equal(a.tree.count(), 3000);
  t.equal(b.tree.count(), 5000);
  t.not(a.tree.storage.uuid.toString('hex'), b.tree.storage.uuid.toString('hex'), 'each xfile has its own UUID');
  t.end();
});

t.test('flatLeaves: every record in key order, from one copy of the xfile', (t) => {
  for (const n of [0, 1, 500, 20000]) {
    const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 64 });
    fill(mem, n, 0x1234);
    // Deletes leave free pages behind (and leaves out of page order): the walk follows the tree, not the file.
    const key = Buffer.alloc(rmapBtreeOps.keySize);
    const victims: Buffer[] = [];
    mem.tree.forEach((b, off) => { if (victims.length < n / 3 && (off & 64) !== 0) victims.push(Buffer.from(b.subarray(off, off + 24))); });
    for (const v of victims) {
      rmapBtreeOps.keyFromRec(v, 0, key, 0);
      mem.tree.delete(key);
    }
    const want: string[] = [];
    mem.tree.forEach((b, off) => { want.push(b.toString('hex', off, off + 24)); });
    mem.cache.flush(); // so xfile.size is the size flatLeaves needs
    for (const into of [undefined, Buffer.alloc(16), Buffer.alloc(mem.xfile.size + 8192, 0xee)]) {
      const flat = mem.flatLeaves(into);
      const got: string[] = [];
      flat.leafOffsets.forEach((leaf, k) => {
        for (let r = 0; r < flat.leafCounts[k]!; r++) got.push(flat.data.toString('hex', leaf + 64 + r * 24, leaf + 64 + (r + 1) * 24));
      });
      const what = `${n} records, ${into === undefined ? 'no buffer given' : into.length < 100 ? 'too small a buffer' : 'a buffer given'}`;
      t.equal(flat.records, want.length, `${what}: counts them`);
      t.same(got, want, `${what}: the same records as forEach`);
      t.equal(flat.data.buffer === into?.buffer, into !== undefined && into.length > 100, `${what}: copied into the given buffer only when it fits`);
    }
    t.equal(mem.tree.count(), want.length, `${n}: the tree is unchanged`);
    mem.close();
  }
  t.end();
});

t.test('flatLeaves refuses a pointer outside the xfile and a sibling loop', (t) => {
  const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 64 });
  fill(mem, 3000, 7);
  const root = mem.tree.storage.getRoot();
  mem.tree.storage.setRoot({ ptr: 1_000_000, height: root.height });
  t.throws(() => mem.flatLeaves(), { code: 'EFSCORRUPTED' }, 'a root past the end of the xfile');
  mem.tree.storage.setRoot(root);
  const flat = mem.flatLeaves();
  t.ok(flat.leafOffsets.length > 2, 'several leaves');
  // Point the second leaf's right sibling back at the first.
  const second = mem.cache.read(flat.leafOffsets[1]! / 4096, null);
  second.data.writeUInt32BE(flat.leafOffsets[0]! / 4096, 12);
  mem.cache.markDirty(second);
  t.throws(() => mem.flatLeaves(), { code: 'EFSCORRUPTED' }, 'leaves whose sibling pointers loop');
  mem.close();
  t.end();
});

t.test('visitPointers names the same blocks as visitBlocks, at the same levels, reading only nodes', (t) => {
  for (const n of [0, 1, 500, 20000, 60000]) {
    const mem = new MemBtree(rmapBtreeOps, { cacheBlocks: 4096 });
    fill(mem, n, 99);
    const blocks: string[] = [];
    mem.tree.visitBlocks((ptr, level) => { blocks.push(`${level}:${ptr}`); });
    const pointers: string[] = [];
    mem.cache.flush();
    mem.cache.discardAll();
    const readBefore = mem.cache.stats().blocksRead;
    mem.tree.visitPointers((ptr, level) => { pointers.push(`${level}:${ptr}`); });
    t.same([...pointers].sort(), [...blocks].sort(), `${n} records: ${blocks.length} blocks, the same`);
    const leaves = blocks.filter((b) => b.startsWith('0:')).length;
    t.equal(mem.cache.stats().blocksRead - readBefore, blocks.length - leaves, `${n} records: read the ${blocks.length - leaves} nodes, no leaf`);
    mem.close();
  }
  t.end();
});
