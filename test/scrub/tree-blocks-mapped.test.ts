/**
 * Every block of a sound directory btree and of a sound block-map btree is
 * checked against the rmap by the file pass -- which takes those blocks
 * from the verification that read them (the namespace walk's for a
 * directory, its own for a block map), not from a second walk of the tree:
 * an rmap record of any one of them given another owner is reported.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { scrubInodes } from '../../src/scrub/inode-scrub';
import { ProblemList, formatProblem } from '../../src/scrub/common';
import { OFF_NUMRECS } from '../../src/btree/btree-block';
import type { Btree } from '../../src/btree/btree';
import { Directory } from '../../src/dir/dir';
import { BlockMap } from '../../src/file/bmap';
import { S_IFREG } from '../../src/inode/inode-format';
import { Model, fragmentedFile } from '../lib/damaged-files';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';

const OWNER_OFFSET = 12;

/** The cached rmap leaf and record offset of the record holding fsbno. */
function rmapRecordOf(fsx: Rmapfs, fsbno: number): [Buffer, number] {
  const geo = fsx.fs.geo;
  const tree = fsx.fs.alloc.ag(geo.agnoOf(fsbno)).rmap;
  const agbno = geo.agbnoOf(fsbno);
  let found: [Buffer, number] | null = null;
  tree.visitBlocks((ptr, level) => {
    if (level !== 0) return;
    const b = tree.readBlock(ptr, 0).data;
    for (let i = 0; i < b.readUInt16BE(OFF_NUMRECS); i++) {
      const off = tree.geo.recOffset(i);
      if (b.readUInt32BE(off) <= agbno && agbno < b.readUInt32BE(off) + b.readUInt32BE(off + 4)) found = [b, off];
    }
  });
  if (found === null) throw new Error(`no rmap record holds block ${fsbno}`);
  return found;
}

function treeBlocks(tree: Btree): number[] {
  const out: number[] = [];
  tree.visitBlocks((ptr) => { out.push(tree.storage.bnoOf(ptr)); });
  return out;
}

t.test('each block of a directory btree and of a block-map btree is checked against the rmap', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(17));
  const dirIno = fsx.mkdir(fsx.rootIno, 'big', 0o755, 0, 0).ino;
  for (let i = 0; i < 1500; i++) fsx.create(dirIno, `a-rather-long-file-name-${i}`, S_IFREG | 0o644, 0, 0);
  const fileIno = fragmentedFile(fsx, new Model(), rng, 'frag', 600);
  fsx.fsync();
  const filePass = (): string[] => {
    const problems = new ProblemList(100000);
    scrubInodes(fsx.fs, problems, { rmapSound: () => true });
    return problems.problems.map(formatProblem);
  };
  t.same(filePass(), [], 'clean');
  const dirTree = new Directory(fsx.inodes.get(dirIno), fsx.fs.alloc, fsx.fs.geo).tree;
  const mapTree = new BlockMap(fsx.inodes.get(fileIno), fsx.fs.alloc, fsx.fs.geo).btree!;
  for (const [what, ino, blocks] of [['directory', dirIno, treeBlocks(dirTree)], ['block map', fileIno, treeBlocks(mapTree)]] as const) {
    t.ok(blocks.length >= 3, `the ${what}'s btree has ${blocks.length} blocks`);
    let missed = 0;
    for (const fsbno of blocks) {
      const [b, off] = rmapRecordOf(fsx, fsbno);
      const owner = b.readUInt32BE(off + OWNER_OFFSET);
      b.writeUInt32BE(owner + 1, off + OWNER_OFFSET); // in the cache only: the scrub reads the cache
      const found = filePass().some((p) => p.includes(`inode ${ino}: btree block ${fsbno}: the rmap says`));
      b.writeUInt32BE(owner, off + OWNER_OFFSET);
      if (!found) missed++;
    }
    t.equal(missed, 0, `the ${what}: every one of its ${blocks.length} blocks found with its rmap owner changed`);
  }
  t.same(filePass(), [], 'undone: clean again');
  t.end();
});
