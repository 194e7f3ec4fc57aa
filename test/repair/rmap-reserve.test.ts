/**
 * The new rmap btree's reservation converges: reserving blocks changes the
 * "ag" records the btree must hold (and so its size), so it iterates until the
 * size it needs is the size it has.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { agOwnedExtents, reserveRmapBtree } from '../../src/repair/rmap-repair';
import { computeBulkLoadGeometry } from '../../src/btree/bulk-load';
import { S_IFREG } from '../../src/inode/inode-format';
import { RmapfsError } from '../../src/errors';
import { scratchImage } from '../lib/fs';

/** Free extents of an AG as "start+len" strings. */
function freeSpace(fsx: Rmapfs, agno: number): string[] {
  const out: string[] = [];
  fsx.fs.alloc.ag(agno).bno.forEach((b, off) => { out.push(`${b.readUInt32BE(off)}+${b.readUInt32BE(off + 4)}`); });
  return out;
}

t.test('on fragmented free space the reservation takes several rounds and ends exact', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 1 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  // Fill the AG with one-block files, then free every other one: free space is all single blocks.
  const files: number[] = [];
  for (let i = 0; ; i++) {
    try {
      const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
      fsx.write(ino, 0, Buffer.alloc(4096, 1));
      files.push(ino);
    } catch (e) {
      if (e instanceof RmapfsError && e.code === 'ENOSPC') break;
      throw e;
    }
    if (files.length >= 3000) break;
  }
  for (let i = 0; i < files.length; i += 2) fsx.truncate(files[i]!, 0);
  fsx.fs.checkpoint(); // freed blocks are reusable now
  const ag = fsx.fs.alloc.ag(0);
  const before = freeSpace(fsx, 0);
  for (const others of [0, 10, 5000, 40000, 120000]) {
    let result = { rounds: 0, records: 0, blocks: 0, extents: [] as { start: number; len: number }[] };
    const rollback = new RmapfsError('ECANCELED', 'test rollback');
    t.throws(() => fsx.fs.run(() => {
      result = reserveRmapBtree(ag, others);
      const need = computeBulkLoadGeometry(ag.rmap, result.records, 1).totalBlocks;
      t.equal(result.blocks, need, `${others} other records: reserved exactly what ${result.records} records take (${need} blocks)`);
      t.equal(result.extents.reduce((n, e) => n + e.len, 0), need, 'the extents add up to it');
      t.equal(result.records, others + agOwnedExtents(ag, result.extents).length,
        'and the record count it was sized for is the one the AG has now');
      throw rollback;
    }), rollback);
    if (others >= 5000) t.ok(result.rounds > 1, `${others} other records: ${result.rounds} rounds`);
    t.same(freeSpace(fsx, 0), before, 'the rollback gave every block back');
  }
  t.end();
});

t.test('no room for the new btree: ENOSPC, nothing taken', (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 1 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const before = freeSpace(fsx, 0);
  const ag = fsx.fs.alloc.ag(0);
  t.throws(() => fsx.fs.run(() => reserveRmapBtree(ag, 50_000_000)), { code: 'ENOSPC' });
  t.same(freeSpace(fsx, 0), before, 'free space unchanged');
  t.end();
});
