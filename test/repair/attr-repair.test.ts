/**
 * Online salvage of extended attributes (src/repair/attr-repair.ts): an
 * out-of-line value that fails its crc loses exactly that attribute (named,
 * its blocks freed), a leaf that does not verify loses exactly its
 * attributes (counted, with the block), a damaged fork root loses none (the
 * blocks are found through the rmap); attributes set and removed between
 * the slices are all there. Every kept attribute has its value; the file
 * checks clean. Every block the rmap gives the tree is read as a possible
 * leaf up to its capacity: a node whose level says leaf, a leaf whose level
 * says node or whose record count is wrong lose nothing. A value whose
 * record has the wrong length or block is found again by its crc among the
 * fork's value blocks. The live scrub checks out-of-line values' crcs.
 */
import t from 'tap';
import type { FileRepairResult } from '../../src/repair/file-repair';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairXattrs } from '../../src/repair/attr-repair';
import { AttrFork, decodeAttrEntry, setValuePlace, attrBtreeOps, ATTR_REC_SIZE } from '../../src/attr/attr';
import type { AttrEntry } from '../../src/attr/attr';
import { BtreeGeometry, btreeBufOps } from '../../src/btree/btree-block';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { checkerFor, selectStructures } from '../../src/fsck/table';
import { onlineRepair } from '../../src/fsck/online';
import { quietHooks } from '../lib/damaged-files';
import { scrubLiveSliced } from '../../src/scrub/live-scrub';
import { repairRmaps } from '../../src/repair/rmap-repair';
import { S_IFREG } from '../../src/inode/inode-format';
import { flipOnDisk, scratchImage } from '../lib/fs';
import { check } from '../lib/check';

function valueOf(i: number): Buffer {
  const len = i % 3 === 0 ? 200 + i * 80 : 1 + (i % 50);
  return Buffer.alloc(len, `value ${i};`);
}

function attrsOf(fsx: Rmapfs, ino: number): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of fsx.listxattr(ino)) out.set(name, fsx.getxattr(ino, name).toString('hex'));
  return out;
}

function open(t: Test): { image: string; fsx: Rmapfs; ino: number; before: Map<string, string> } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 60; i++) fsx.setxattr(ino, `user.a${i}`, valueOf(i));
  return { image, fsx, ino, before: attrsOf(fsx, ino) };
}

function attrFork(fsx: Rmapfs, ino: number): AttrFork {
  return new AttrFork(fsx.inodes.get(ino), { device: fsx.fs.device, alloc: fsx.fs.alloc, geo: fsx.fs.geo, noteDataWritten: () => undefined });
}

t.test('a value that fails its crc: that attribute is dropped and named, its blocks freed', async (t) => {
  const s = open(t);
  const e = attrFork(s.fsx, s.ino).list().find((x) => x.name.toString() === 'user.a9')!;
  t.ok(e.valueBlock > 0, 'user.a9 is out of line');
  const fsx = flipOnDisk(s.image, s.fsx, e.valueBlock, 10);
  t.teardown(() => fsx.close());
  t.ok(check(fsx).some((p) => /user\.a9/.test(p)), 'check sees it');
  const r = await repairXattrs(fsx, s.ino, { sliceMs: 1e9, maxUnits: 16 });
  t.equal(r.type, 'xattr');
  t.same(r.changes, [`user.a9: value dropped (block ${e.valueBlock} did not match its checksum)`]);
  const want = new Map(s.before);
  want.delete('user.a9');
  t.same(attrsOf(fsx, s.ino), want, 'every other attribute with its value');
  t.same(check(fsx), [], 'clean');
  t.end();
});

t.test('a leaf that does not verify loses exactly its attributes; a damaged fork root loses none', async (t) => {
  for (const how of ['leaf', 'fork root'] as const) {
    const s = open(t);
    let fsx = s.fsx;
    const tree = attrFork(fsx, s.ino).btree!;
    t.ok(tree.height > 1, 'a tree with a node');
    const leaves: { ptr: number; names: string[] }[] = [];
    tree.visitBlocks((ptr, level, b) => {
      if (level !== 0) return;
      const names: string[] = [];
      for (let i = 0; i < b.readUInt16BE(6); i++) names.push(decodeAttrEntry(b, 64 + i * ATTR_REC_SIZE).name.toString());
      leaves.push({ ptr, names });
    });
    const victim = leaves[1]!;
    if (how === 'leaf') fsx = flipOnDisk(s.image, fsx, victim.ptr, 900);
    else fsx.fs.run(() => { fsx.inodes.get(s.ino).attrRoot = 7; });
    const r = await repairXattrs(fsx, s.ino, { sliceMs: 1e9, maxUnits: 16 });
    const want = new Map(s.before);
    if (how === 'leaf') {
      for (const n of victim.names) want.delete(n);
      t.same(r.changes, [`${victim.names.length} attributes lost (block ${victim.ptr} did not verify)`], r.changes.join('; '));
    } else {
      t.same(r.changes, [], 'fork root: nothing lost');
    }
    t.same(attrsOf(fsx, s.ino), want, `${how}: every other attribute with its value`);
    t.same(check(fsx), [], `${how}: clean`);
    fsx.close();
    const again = Rmapfs.open(s.image);
    t.same(check(again), [], `${how}: clean after reopening`);
    t.same(attrsOf(again, s.ino), want, `${how}: the same attributes after reopening`);
    again.close();
  }
  t.end();
});

t.test('attributes set and removed between the slices are all there', async (t) => {
  const s = open(t);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const model = new Map(s.before);
  let k = 0;
  const r = await repairXattrs(fsx, s.ino, {
    sliceMs: 1e9, maxUnits: 2, betweenSlices: () => {
      const name = `user.live${k}`;
      const v = valueOf(k + 1);
      fsx.setxattr(s.ino, name, v);
      model.set(name, v.toString('hex'));
      if (k % 2 === 0 && model.has(`user.a${k}`)) {
        fsx.removexattr(s.ino, `user.a${k}`);
        model.delete(`user.a${k}`);
      }
      k++;
    },
  });
  t.ok(k > 10, `${k} slices with changes`);
  t.same(r.changes, [], 'nothing lost');
  t.same(attrsOf(fsx, s.ino), model, 'exactly what the writer left');
  t.same(check(fsx), [], 'clean');
  t.end();
});

/** The attribute tree's leaves: block, and the names in it in order. */
function leavesOf(fsx: Rmapfs, ino: number): { ptr: number; names: string[] }[] {
  const leaves: { ptr: number; names: string[] }[] = [];
  attrFork(fsx, ino).btree!.visitBlocks((ptr, level, b) => {
    if (level !== 0) return;
    const names: string[] = [];
    for (let i = 0; i < b.readUInt16BE(6); i++) names.push(decodeAttrEntry(b, 64 + i * ATTR_REC_SIZE).name.toString());
    leaves.push({ ptr, names });
  });
  return leaves;
}

/**
 * Changes attribute-tree block fsbno of inode ino in a transaction (its crc made
 * on the way out, as a fuzzer that keeps crcs right does), then reopens: the
 * repair reads what reached the device.
 */
function editTreeBlock(image: string, fsx: Rmapfs, ino: number, fsbno: number, edit: (b: Buffer) => void): Rmapfs {
  const ops = btreeBufOps(attrBtreeOps, new BtreeGeometry(attrBtreeOps, BLOCK_SIZE), fsx.fs.geo.uuid, ino, fsx.fs.cache.target.checksummed);
  fsx.fs.run(() => {
    const buf = fsx.fs.cache.read(fsbno, ops);
    edit(buf.data);
    fsx.fs.cache.markDirty(buf);
  });
  fsx.close();
  return Rmapfs.open(image);
}

/** Where attribute `name`'s record is: its leaf and byte offset there. */
function recordOf(fsx: Rmapfs, ino: number, name: string): { ptr: number; off: number; entry: AttrEntry } {
  const leaf = leavesOf(fsx, ino).find((l) => l.names.includes(name))!;
  const off = 64 + leaf.names.indexOf(name) * ATTR_REC_SIZE;
  const entry = attrFork(fsx, ino).list().find((e) => e.name.toString() === name)!;
  return { ptr: leaf.ptr, off, entry };
}

t.test('a node whose level says leaf, a leaf whose level says node: nothing lost, nothing reported', async (t) => {
  for (const how of ['node as leaf', 'leaf as node'] as const) {
    const s = open(t);
    const root = s.fsx.inodes.get(s.ino).attrRoot;
    t.ok(attrFork(s.fsx, s.ino).btree!.height > 1, 'a tree with a node');
    const victim = how === 'node as leaf' ? root : leavesOf(s.fsx, s.ino)[1]!.ptr;
    const fsx = editTreeBlock(s.image, s.fsx, s.ino, victim, (b) => b.writeUInt16BE(how === 'node as leaf' ? 0 : 1, 4));
    const r = await repairXattrs(fsx, s.ino, { sliceMs: 1e9, maxUnits: 16 });
    t.same(r.changes, [], `${how}: nothing reported`);
    t.same(attrsOf(fsx, s.ino), s.before, `${how}: every attribute with its value`);
    t.same(check(fsx), [], `${how}: clean`);
    fsx.close();
  }
  t.end();
});

t.test('a leaf whose record count is wrong: its records are read up to its capacity, empty slots are none', async (t) => {
  for (const delta of [-1000, -1, 1] as const) {
    const s = open(t);
    const leaf = leavesOf(s.fsx, s.ino)[1]!;
    const fsx = editTreeBlock(s.image, s.fsx, s.ino, leaf.ptr, (b) => b.writeUInt16BE(Math.max(0, leaf.names.length + delta), 6));
    const r = await repairXattrs(fsx, s.ino, { sliceMs: 1e9, maxUnits: 16 });
    t.same(r.changes, [], `numrecs ${delta}: nothing reported`);
    t.same(attrsOf(fsx, s.ino), s.before, `numrecs ${delta}: every attribute with its value`);
    t.same(check(fsx), [], `numrecs ${delta}: clean`);
    fsx.close();
  }
  t.end();
});

t.test('a value whose record has the wrong length or block is found again by its crc', async (t) => {
  const cases = ['length', 'length too large', 'length 0', 'inline length', 'block of another value', 'block outside the filesystem', 'block 0'] as const;
  for (const how of cases) {
    const s = open(t);
    const name = how === 'inline length' ? 'user.a1' : 'user.a9';
    const rec = recordOf(s.fsx, s.ino, name);
    const other = recordOf(s.fsx, s.ino, 'user.a12').entry;
    const { valueLen, valueBlock } = rec.entry;
    const [len, block] = {
      length: [valueLen + 1, valueBlock], 'length too large': [0xffffffff, valueBlock], 'length 0': [0, valueBlock],
      'inline length': [valueLen + 1, 0], 'block of another value': [valueLen, other.valueBlock],
      'block outside the filesystem': [valueLen, 0xfffffff0], 'block 0': [valueLen, 0],
    }[how];
    const fsx = editTreeBlock(s.image, s.fsx, s.ino, rec.ptr, (b) => setValuePlace(b, rec.off, len, block));
    t.ok(check(fsx).length > 0, `${how}: check sees it`);
    const r = await repairXattrs(fsx, s.ino, { sliceMs: 1e9, maxUnits: 16 });
    const said = how.startsWith('block') ? `${name}: value block ${block} -> ${valueBlock} (found by its checksum)`
      : `${name}: value length ${len} -> ${valueLen} (found by its checksum ${block !== 0 ? `at block ${block}` : 'in its record'})`;
    t.same(r.changes, [said], `${how}: ${r.changes.join('; ')}`);
    t.same(attrsOf(fsx, s.ino), s.before, `${how}: every attribute with its value`);
    t.same(check(fsx), [], `${how}: clean`);
    fsx.close();
  }
  t.end();
});

t.test('the live scrub: a value block outside the filesystem is the attribute fork\'s damage', async (t) => {
  const s = open(t);
  const rec = recordOf(s.fsx, s.ino, 'user.a9');
  const fsx = editTreeBlock(s.image, s.fsx, s.ino, rec.ptr, (b) => setValuePlace(b, rec.off, rec.entry.valueLen, 0xfffffff0));
  t.teardown(() => fsx.close());
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 4 });
  const outside = r.problems.filter((p) => /outside the filesystem/.test(p.message));
  t.equal(outside.length, 1, outside.map((p) => p.message).join('; '));
  t.equal(outside[0]?.structure, 'attr', 'the attribute repair\'s to fix');
  t.end();
});

t.test('the live scrub checks an out-of-line value against its crc', async (t) => {
  const s = open(t);
  const e = attrFork(s.fsx, s.ino).list().find((x) => x.name.toString() === 'user.a9')!;
  const fsx = flipOnDisk(s.image, s.fsx, e.valueBlock, 10);
  t.teardown(() => fsx.close());
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 4 });
  const found = r.problems.filter((p) => /user\.a9/.test(p.message));
  t.equal(found.length, 1, `found: ${found.map((p) => p.message).join('; ')}`);
  t.equal(found[0]?.structure, 'attr', 'the attribute fork\'s damage');
  t.notOk(r.problems.some((p) => /counts \d+ blocks/.test(p.message)), 'the block count is not blamed on the core');
  t.end();
});

t.test('the live scrub: a value whose blocks were freed and reused after the view opened is no damage', async (t) => {
  const s = open(t);
  const fsx = s.fsx;
  t.teardown(() => fsx.close());
  const e = attrFork(fsx, s.ino).list().find((x) => x.name.toString() === 'user.a9')!;
  let changed = false;
  const r = await scrubLiveSliced(fsx.fs, checkerFor(null), {
    maxUnits: 1, betweenSlices: () => {
      if (changed) return;
      changed = true;
      // What a reuse of the freed blocks by another file's data looks like on the device.
      fsx.removexattr(s.ino, 'user.a9');
      fsx.fs.device.write(e.valueBlock * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, 0xee), 0, BLOCK_SIZE);
    },
  });
  t.ok(changed, 'the value went away during the scrub');
  t.same(r.problems.map((p) => p.message), [], 'nothing reported');
  t.end();
});

/** user.a9's record pointed at user.a12's value block (fuzz row valueblock sub): the image reopened. */
function twoRecordsOneValue(t: Test): { fsx: Rmapfs; ino: number; sharedBlock: number } {
  const s = open(t);
  const rec = recordOf(s.fsx, s.ino, 'user.a9');
  const other = recordOf(s.fsx, s.ino, 'user.a12').entry;
  const fsx = editTreeBlock(s.image, s.fsx, s.ino, rec.ptr, (b) => setValuePlace(b, rec.off, rec.entry.valueLen, other.valueBlock));
  t.teardown(() => fsx.close());
  return { fsx, ino: s.ino, sharedBlock: other.valueBlock };
}

t.test('the rmap rebuild survives two attribute records naming one value block', async (t) => {
  const { fsx, ino, sharedBlock } = twoRecordsOneValue(t);
  const results = await repairRmaps(fsx, [fsx.fs.geo.agnoOf(sharedBlock)], { measureHeap: false });
  t.same(results.flatMap((r) => r.sickForks.map((f) => `${f.ino} ${f.fork}`)), [`${ino} attr`], 'the damaged attribute fork noted once');
  t.end();
});

// The rebuild names the fork it left out (sickForks) and has it repaired at once (the value that block
// held for the second record dropped and named); the closing scrub is then clean.
t.test('a forced rmap rebuild that finds two attribute records naming one value block: the fork named and repaired at once', async (t) => {
  const { fsx, ino } = twoRecordsOneValue(t);
  const reply = await onlineRepair(fsx, selectStructures(['rmapbt'], null), null,
    { forceRebuild: true, measureHeap: false, cancelled: () => false }, quietHooks);
  t.equal(reply.ok, true, String(reply.error ?? ''));
  const sick = (reply.ags as { sickForks: { ino: number; fork: string }[] }[]).flatMap((a) => a.sickForks);
  t.ok(sick.some((f) => f.ino === ino && f.fork === 'attr'), 'the rebuild names the attribute fork');
  const files = reply.files as FileRepairResult[];
  t.ok(files.some((f) => f.type === 'xattr' && f.ino === ino && f.changes.some((c) => /value dropped/.test(c))), 'the fork repaired, the lost value named');
  const scrub = reply.scrub as { problems: unknown[] };
  t.same(scrub.problems, [], 'the closing scrub is clean');
  t.end();
});
