/**
 * What an inode owns (src/file/owned.ts), the one walk behind the rmap
 * repair's scan and the inode scrub: for a file of every shape, the blocks it
 * yields -- read block by block or from node pointers only -- are exactly the
 * blocks the rmap gives that inode, with the same flags and file offsets.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { ownedBy, hasBtreeData, PAUSE, rmapFlagsOf } from '../../src/file/owned';
import type { OwnedWalk } from '../../src/file/owned';
import { decodeRmap, RMAP_ATTR_FORK, RMAP_BMBT_BLOCK } from '../../src/rmap/rmap-btree';
import { scratchImage } from '../lib/fs';
import { populate } from '../lib/file-shapes';

/** One string per block: "fsbno flags offset" (offset only for data). */
function blocksOwned(fsx: Rmapfs, ino: number, walk: OwnedWalk): string[] {
  const fs = fsx.fs;
  const ctx = { device: fs.device, alloc: fs.alloc, geo: fs.geo, noteDataWritten: () => undefined };
  const out: string[] = [];
  for (const o of ownedBy(fsx.inodes.handle(ino), ctx, walk)) {
    if (o === PAUSE) continue;
    for (let i = 0; i < o.blockcount; i++) out.push(`${o.fsbno + i} ${rmapFlagsOf(o)} ${o.kind === 'data' ? o.fileoff + i : 0}`);
  }
  return out.sort();
}

function blocksInRmap(fsx: Rmapfs, ino: number): string[] {
  const out: string[] = [];
  const geo = fsx.fs.geo;
  for (const ag of fsx.fs.alloc.ags) {
    const cur = ag.rmap.cursor();
    for (let ok = cur.first(); ok; ok = cur.increment()) {
      const r = decodeRmap(cur.record(), 0);
      if (r.owner !== ino) continue;
      const data = (r.flags & (RMAP_BMBT_BLOCK | RMAP_ATTR_FORK)) === 0;
      for (let i = 0; i < r.blockcount; i++) out.push(`${geo.fsbno(ag.agno, r.startblock + i)} ${r.flags} ${data ? r.offset + i : 0}`);
    }
  }
  return out.sort();
}

t.test('every shape of file: owned blocks = its rmap records, from pointers or read', (t) => {
  const image = scratchImage(t);
  const files = populate(image);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  // An out-of-line attribute value, beside the attr btree.
  fsx.setxattr(files.xattrs, 'user.big', Buffer.alloc(9000, 7));
  for (const [name, ino] of Object.entries(files)) {
    if (name === 'free') continue;
    const rmap = blocksInRmap(fsx, ino);
    t.same(blocksOwned(fsx, ino, { readBlocks: true }), rmap, `${name}: read, as the scrub walks it`);
    t.same(blocksOwned(fsx, ino, { readBlocks: false }), rmap, `${name}: from pointers, as the repair's scan does`);
  }
  t.ok(blocksOwned(fsx, files.xattrs, { readBlocks: false }).some((b) => b.split(' ')[1] !== '0'), 'the attribute fork is walked');
  // A block-map btree's data is the repair's to read in pieces: left out, and said so.
  t.ok(hasBtreeData(fsx.inodes.handle(files.frag), fsx.fs.alloc, fsx.fs.geo), 'the fragmented file has its data under a btree');
  const metadataOnly = blocksOwned(fsx, files.frag, { readBlocks: false, skipBtreeData: true });
  t.ok(metadataOnly.length > 0 && metadataOnly.every((b) => b.split(' ')[1] !== '0'), 'skipBtreeData: only the btree blocks');
  t.notOk(hasBtreeData(fsx.inodes.handle(files.small), fsx.fs.alloc, fsx.fs.geo), 'inline extents are not left out');
  t.end();
});
