/**
 * Every metadata block is self-checking: one byte changed anywhere in any
 * metadata block of a fresh filesystem -- the superblock and AG header of
 * every AG, every block of every AG btree, the log superblock, the inode
 * block holding the root directory's inode, the root directory's btree
 * block, and the bmbt block of a file of more than 12 extents -- makes
 * `check` report corruption (exit 4). Bytes are changed in the image
 * directly, one at a time, and put back.
 */
import t from 'tap';
import * as fs from 'fs';
import { run } from '../../src/cli/main';
import { Filesystem } from '../../src/fs/filesystem';
import { Rmapfs } from '../../src/fs/rmapfs';
import { FORK_BTREE, S_IFREG } from '../../src/inode/inode-format';
import { AG_BTREES } from '../../src/format/ag-header';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { scratchImage } from '../lib/fs';

/** Offsets tried in each block: every byte of the 64-byte header (crc at 56..59 included), then a spread over the body to the last byte. */
const OFFSETS = [...Array.from({ length: 64 }, (_, i) => i), ...Array.from({ length: 42 }, (_, i) => 64 + i * 97), 4095];

interface MetaBlock {
  what: string;
  fsbno: number;
}

/** A file of 20 one-block extents (every other file block): more than the inode's 12, so it has a bmbt. */
function makeFragmentedFile(image: string): number {
  const f = Rmapfs.open(image);
  try {
    const ino = f.create(f.rootIno, 'frag', S_IFREG | 0o644, 0, 0).ino;
    for (let i = 0; i < 20; i++) f.write(ino, 2 * i * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, i + 1));
    return ino;
  } finally {
    f.close();
  }
}

/** The blocks of the files: the root inode's block, the root directory's btree root, the file's bmbt root. */
function fileBlocks(image: string, fileIno: number): MetaBlock[] {
  const f = Rmapfs.open(image, { readOnly: true });
  try {
    const root = f.inodes.get(f.rootIno);
    const file = f.inodes.get(fileIno);
    if (root.dataHeight !== 1 || file.format !== FORK_BTREE || file.dataHeight !== 1) {
      throw new Error(`unexpected shapes: root directory height ${root.dataHeight}, file format ${file.format} height ${file.dataHeight}`);
    }
    return [
      { what: `inode block of the root directory (inode ${root.ino})`, fsbno: f.fs.geo.inoLocation(root.ino).fsbno },
      { what: 'root directory btree', fsbno: root.dataRoot },
      { what: `bmbt of inode ${fileIno}`, fsbno: file.dataRoot },
    ];
  } finally {
    f.close();
  }
}

function metadataBlocks(image: string): MetaBlock[] {
  const f = Filesystem.open(image, { readOnly: true });
  try {
    const out: MetaBlock[] = [];
    for (const ag of f.alloc.ags) {
      out.push({ what: `AG ${ag.agno} superblock`, fsbno: ag.start });
      out.push({ what: `AG ${ag.agno} header`, fsbno: ag.start + 1 });
      for (const name of AG_BTREES) {
        const tree = name === 'bno' ? ag.bno : name === 'cnt' ? ag.cnt : name === 'rmap' ? ag.rmap : ag.ino;
        tree.visitBlocks((ptr, level) => out.push({ what: `AG ${ag.agno} ${name} btree level ${level}`, fsbno: ag.start + ptr }));
      }
    }
    out.push({ what: 'log superblock', fsbno: f.geo.logStart });
    return out;
  } finally {
    f.close();
  }
}

t.test('a byte changed in any metadata block is caught', async (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  const fileIno = makeFragmentedFile(image);
  const blocks = [...metadataBlocks(image), ...fileBlocks(image, fileIno)];
  t.equal(blocks.length, 2 * (2 + 4) + 1 + 3, 'sb, header and four btree roots per AG, the log superblock, and 3 blocks of the files');
  t.equal(new Set(blocks.map((b) => b.fsbno)).size, blocks.length, 'all different blocks');
  const quiet = { out: (): void => {}, err: (): void => {} };
  t.equal(await run(['check', image], quiet), 0, 'clean to begin with');
  const fd = fs.openSync(image, 'r+');
  t.teardown(() => fs.closeSync(fd));
  const one = Buffer.alloc(1);
  const missed: string[] = [];
  let tried = 0;
  for (const b of blocks) {
    for (const off of OFFSETS) {
      const pos = b.fsbno * BLOCK_SIZE + off;
      fs.readSync(fd, one, 0, 1, pos);
      const old = one[0]!;
      one[0] = old ^ ((1 << (off % 8)) | 0x80); // flips one or two bits, never none
      fs.writeSync(fd, one, 0, 1, pos);
      const code = await run(['check', image], quiet);
      one[0] = old;
      fs.writeSync(fd, one, 0, 1, pos);
      tried++;
      if (code !== 4) missed.push(`${b.what} (block ${b.fsbno}) byte ${off}: exit ${code}`);
    }
  }
  t.same(missed, [], `all ${tried} changes caught as corruption`);
  t.equal(await run(['check', image], quiet), 0, 'clean again once every byte is back');
});
