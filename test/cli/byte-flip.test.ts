/**
 * Every metadata block is self-checking: one byte changed anywhere in any
 * metadata block of a fresh filesystem -- the superblock and AG header of
 * every AG, every block of every AG btree, the log superblock -- makes
 * `check` report corruption (exit 4). Bytes are changed in the image
 * directly, one at a time, and put back.
 */
import t from 'tap';
import * as fs from 'fs';
import { run } from '../../src/cli/main';
import { Filesystem } from '../../src/fs/filesystem';
import { AG_BTREES } from '../../src/format/ag-header';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { scratchImage } from '../lib/fs';

/** Offsets tried in each block: every byte of the 64-byte header (crc at 56..59 included), then a spread over the body to the last byte. */
const OFFSETS = [...Array.from({ length: 64 }, (_, i) => i), ...Array.from({ length: 42 }, (_, i) => 64 + i * 97), 4095];

interface MetaBlock {
  what: string;
  fsbno: number;
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
  const blocks = metadataBlocks(image);
  t.equal(blocks.length, 2 * (2 + 4) + 1, 'sb, header and four btree roots per AG, and the log superblock');
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
