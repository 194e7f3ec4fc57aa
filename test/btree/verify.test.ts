/**
 * The structural verifier finds every kind of damage it claims to, and names
 * the block; a healthy tree passes. Damage is done the way a disk does it:
 * to the bytes on the target (the device image), or to a block in the cache
 * written back with a good crc (so the crc cannot be what catches it).
 */
import * as fs from 'fs';
import t from 'tap';
import type { Test } from 'tap';
import { NULL_PTR } from '../../src/btree/btree-ops';
import { OFF_LEFTSIB, OFF_MAGIC, OFF_NUMRECS, OFF_RIGHTSIB, OFF_LEVEL } from '../../src/btree/btree-block';
import { verifyBtree } from '../../src/btree/verify';
import { bulkLoad, computeBulkLoadGeometry } from '../../src/btree/bulk-load';
import { tinyBtreeOps } from '../lib/tiny-btree';
import { deviceTree, memTree } from '../lib/trees';
import type { TreeFixture } from '../lib/trees';

const RECORDS = 2000;

function build(target: 'xfile' | 'device'): TreeFixture {
  const fx = target === 'xfile' ? memTree(tinyBtreeOps) : deviceTree(tinyBtreeOps, 3000);
  const rec = Buffer.alloc(8);
  for (let i = 0; i < RECORDS; i++) {
    rec.writeUInt32BE(((i * 7919) % RECORDS) * 10, 0);
    rec.writeUInt32BE(i, 4);
    fx.tree.insert(rec);
  }
  fx.dropCache();
  return fx;
}

/** Pointers of the blocks at a level, left to right. */
function blocksAt(fx: TreeFixture, level: number): number[] {
  const out: number[] = [];
  fx.tree.visitBlocks((ptr, l) => { if (l === level) out.push(ptr); });
  return out;
}

/** Changes a block through the cache and writes it back (a good crc over bad contents). */
function damage(fx: TreeFixture, ptr: number, change: (b: Buffer) => void): void {
  const buf = fx.tree.readBlock(ptr, fx.tree.readBlock(ptr, blockLevel(fx, ptr)).data.readUInt16BE(OFF_LEVEL));
  change(buf.data);
  fx.cache.markDirty(buf);
  fx.dropCache();
}

function blockLevel(fx: TreeFixture, ptr: number): number {
  let found = -1;
  fx.tree.visitBlocks((p, l) => { if (p === ptr) found = l; });
  return found;
}

function expectProblem(t: Test, fx: TreeFixture, pattern: RegExp, what: string): void {
  const v = verifyBtree(fx.tree);
  t.notOk(v.ok, `${what}: verifier fails`);
  t.ok(v.problems.some((p) => pattern.test(p.message)), `${what}: reported as ${pattern} (got: ${v.problems.map((p) => p.message).join(' | ')})`);
  t.ok(v.problems.every((p) => !p.message.includes('\n')), `${what}: one line per problem`);
}

for (const target of ['xfile', 'device'] as const) {
  t.test(`${target}: a healthy tree passes`, (t) => {
    const fx = build(target);
    const v = verifyBtree(fx.tree);
    t.ok(v.ok, 'no problems');
    t.equal(v.records, RECORDS);
    t.ok(v.height >= 4, `height ${v.height}`);
    t.equal(v.blocks, v.blocksPerLevel.reduce((a, b) => a + b, 0));
    fx.close();
    t.end();
  });

  t.test(`${target}: a root claiming an impossible height is reported, not sized by (a fuzzed inode's dataHeight 0xffffffff ran the fuzz loop out of memory)`, (t) => {
    const fx = build(target);
    const root = fx.tree.storage.getRoot();
    fx.tree.storage.getRoot = () => ({ ptr: root.ptr, height: 0xffffffff });
    const v = verifyBtree(fx.tree);
    t.notOk(v.ok, 'verifier fails');
    t.match(v.problems[0]?.message ?? '', /height 4294967295 is impossible/);
    t.equal(v.blocksPerLevel.length, 0, 'no per-level counts');
    fx.close();
    t.end();
  });

  t.test(`${target}: each kind of damage is found`, (t) => {
    const cases: [string, RegExp, (fx: TreeFixture) => void][] = [
      ['bad magic', /bad magic/, (fx) => damage(fx, blocksAt(fx, 0)[3]!, (b) => b.writeUInt32BE(0x12345678, OFF_MAGIC))],
      ['records out of order', /not above the key before it/, (fx) => damage(fx, blocksAt(fx, 0)[5]!, (b) => {
        const a = Buffer.from(b.subarray(64, 72));
        b.copy(b, 64, 72, 80);
        a.copy(b, 72);
      })],
      ['node key differs from child', /lowest key differs/, (fx) => damage(fx, blocksAt(fx, 1)[2]!, (b) => {
        b.writeUInt32BE(b.readUInt32BE(64 + 4) + 1, 64 + 4);
      })],
      ['broken right sibling', /sibling/, (fx) => damage(fx, blocksAt(fx, 0)[7]!, (b) => b.writeUInt32BE(NULL_PTR, OFF_RIGHTSIB))],
      ['broken left sibling', /left sibling/, (fx) => damage(fx, blocksAt(fx, 0)[9]!, (b) => b.writeUInt32BE(blocksAt(fx, 0)[2]!, OFF_LEFTSIB))],
      ['pointer out of range', /out of range/, (fx) => damage(fx, blocksAt(fx, 1)[0]!, (b) => b.writeUInt32BE(0x7ffffff0, fx.tree.geo.ptrOffset(1)))],
      ['block reachable twice', /reachable twice/, (fx) => damage(fx, blocksAt(fx, 1)[0]!, (b) => {
        b.writeUInt32BE(b.readUInt32BE(fx.tree.geo.ptrOffset(0)), fx.tree.geo.ptrOffset(1));
      })],
      ['too few entries', /entries, want/, (fx) => damage(fx, blocksAt(fx, 0)[4]!, (b) => b.writeUInt16BE(1, OFF_NUMRECS))],
      ['level wrong', /level/, (fx) => damage(fx, blocksAt(fx, 0)[6]!, (b) => b.writeUInt16BE(3, OFF_LEVEL))],
      ['record fails its own check', /poisoned value/, (fx) => damage(fx, blocksAt(fx, 0)[8]!, (b) => b.writeUInt32BE(0xdeadbeef, 64 + 4))],
    ];
    for (const [what, pattern, hurt] of cases) {
      const fx = build(target);
      hurt(fx);
      expectProblem(t, fx, pattern, what);
      fx.close();
    }
    t.end();
  });
}

t.test('device: a flipped bit on disk is a bad crc32c, and the block is named', (t) => {
  const fx = build('device');
  const victim = blocksAt(fx, 0)[11]!;
  const bno = fx.tree.storage.bnoOf(victim);
  const image = fx.cache.target.name;
  const fd = fs.openSync(image, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, bno * 4096 + 100);
  byte[0] = byte[0]! ^ 0x10;
  fs.writeSync(fd, byte, 0, 1, bno * 4096 + 100);
  fs.closeSync(fd);
  fx.cache.purgeClean(); // the walk above cached the good copy; read what is on disk
  const v = verifyBtree(fx.tree);
  t.notOk(v.ok);
  t.match(v.problems[0]?.message ?? '', new RegExp(`block ${bno}: bad crc32c`), 'reported as a bad crc32c in that block');
  t.throws(() => fx.tree.forEach(() => {}), { code: 'EFSBADCRC' }, 'ordinary reads refuse the block too');
  fx.close();
  t.end();
});

// The inode scrub walks a sound block map's blocks from these pointers instead of walking the tree again:
// they must be walkBlocks' blocks in walkBlocks' order (the order its rmap findings are reported in).
t.test('a sound tree\'s kept pointers are walkBlocks\' blocks in its order; a damaged tree keeps none', (t) => {
  const fx = build('device');
  const walked: number[] = [];
  fx.tree.visitBlocks((ptr) => { walked.push(ptr); });
  const v = verifyBtree(fx.tree, { keepPointers: true });
  t.ok(v.ok && v.height >= 3, `sound, height ${v.height}`);
  t.same(v.pointers, walked, 'same blocks, same order');
  t.equal(verifyBtree(fx.tree).pointers, undefined, 'none unless asked');
  damage(fx, blocksAt(fx, 0)[3]!, (b) => b.writeUInt16BE(1, OFF_NUMRECS));
  t.equal(verifyBtree(fx.tree, { keepPointers: true }).pointers, undefined, 'none from a damaged tree');
  fx.close();
  t.end();
});

t.test('device: children next to each other on disk are read a run at a time, and a bad block inside a run is still named', (t) => {
  // Bulk loaded, as the repairs build trees: block after block on a fresh device.
  const fx = deviceTree(tinyBtreeOps, 3000);
  const geometry = computeBulkLoadGeometry(fx.tree, RECORDS, 1);
  let next = 0;
  const oldRoot = fx.tree.storage.getRoot();
  fx.tree.storage.setRoot(bulkLoad(fx.tree, geometry, {
    next: (dst, off) => { dst.writeUInt32BE(next * 10, off); dst.writeUInt32BE(next++, off + 4); },
  }, () => fx.tree.storage.allocBlock(0)));
  fx.tree.freeBlock(oldRoot.ptr);
  fx.dropCache();
  // A leaf with both neighbours on the next blocks and under the same parent: the middle of a run.
  const parents: number[][] = [];
  fx.tree.visitBlocks((_ptr, level, b) => {
    if (level !== 1) return;
    const kids: number[] = [];
    for (let i = 0; i < b.readUInt16BE(OFF_NUMRECS); i++) kids.push(fx.tree.storage.bnoOf(b.readUInt32BE(fx.tree.geo.ptrOffset(i))));
    parents.push(kids);
  });
  const inRun = parents.flatMap((kids) => kids.filter((bno, i) => kids[i - 1] === bno - 1 && kids[i + 1] === bno + 1));
  t.ok(inRun.length > 0, `${inRun.length} leaves in the middle of a run`);
  const target = fx.cache.target;
  const readBlocks = target.readBlocks.bind(target);
  let reads = 0;
  target.readBlocks = (...args) => {
    reads++;
    readBlocks(...args);
  };
  fx.dropCache();
  const clean = verifyBtree(fx.tree);
  t.ok(clean.ok, 'sound');
  t.ok(reads < clean.blocks, `${clean.blocks} blocks in ${reads} reads`);
  const bno = inRun[Math.floor(inRun.length / 2)]!;
  const fd = fs.openSync(target.name, 'r+');
  const byte = Buffer.alloc(1);
  fs.readSync(fd, byte, 0, 1, bno * 4096 + 100);
  byte[0] = byte[0]! ^ 0x10;
  fs.writeSync(fd, byte, 0, 1, bno * 4096 + 100);
  fs.closeSync(fd);
  fx.cache.purgeClean();
  const v = verifyBtree(fx.tree);
  t.equal(v.problems[0]?.message, `${fx.tree.ops.name} btree block ${bno}: bad crc32c`, 'that block reported');
  t.equal(v.problems.filter((p) => p.message.includes('crc')).length, 1, 'its neighbours in the run read fine');
  fx.close();
  t.end();
});

t.test('maxProblems bounds the report', (t) => {
  const fx = build('xfile');
  for (const ptr of blocksAt(fx, 0).slice(0, 20)) damage(fx, ptr, (b) => b.writeUInt16BE(1, OFF_NUMRECS));
  const v = verifyBtree(fx.tree, { maxProblems: 5 });
  t.equal(v.problems.length, 5);
  fx.close();
  t.end();
});
