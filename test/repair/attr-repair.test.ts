/**
 * Online salvage of extended attributes (src/repair/attr-repair.ts): an
 * out-of-line value that fails its crc loses exactly that attribute (named,
 * its blocks freed), a leaf that does not verify loses exactly its
 * attributes (counted, with the block), a damaged fork root loses none (the
 * blocks are found through the rmap); attributes set and removed between
 * the slices are all there. Every kept attribute has its value; the file
 * checks clean.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairXattrs } from '../../src/repair/attr-repair';
import { AttrFork, decodeAttrEntry, ATTR_REC_SIZE } from '../../src/attr/attr';
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
  t.same(r.changes, [`attribute 'user.a9' dropped: its value (${e.valueLen} bytes at block ${e.valueBlock}) does not match its crc`]);
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
