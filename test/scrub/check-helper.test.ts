/**
 * test/lib/check.ts, the one check the tap tests use, runs everything
 * `rmapfs check` runs (issue 11 item 15): the six copies it replaced ran the
 * AG and inode scrubs only, and passed a filesystem with a bad secondary
 * superblock or a wrong AG summary counter.
 */
import t from 'tap';
import type { Test } from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { superblockBufOps } from '../../src/format/superblock';
import { OFF_FREE_EXTENTS, OFF_INODE_COUNT } from '../../src/format/ag-header';
import { checkDevice } from '../../src/fsck/check';
import { formatProblem } from '../../src/scrub/common';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

function damagedFs(t: Test, damage: (fsx: Rmapfs) => void): Rmapfs {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  for (let i = 0; i < 20; i++) fsx.write(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(9000, i));
  t.same(check(fsx), [], 'clean before the damage');
  fsx.fs.run(() => damage(fsx));
  return fsx;
}

t.test('a secondary superblock that disagrees with the primary', (t) => {
  const fsx = damagedFs(t, (fsx) => {
    const buf = fsx.fs.cache.read(fsx.fs.geo.agStart(1), superblockBufOps(fsx.fs.uuid));
    buf.data.writeUInt32BE(buf.data.readUInt32BE(64 + 8) + 1, 64 + 8); // agBlocks
    fsx.fs.cache.markDirty(buf);
  });
  t.match(check(fsx), [/superblock.*AG 1.*secondary: agBlocks/], 'found');
  t.end();
});

t.test('AG summary counters that disagree with the btrees', (t) => {
  const fsx = damagedFs(t, (fsx) => {
    const hdr = fsx.fs.alloc.ag(0).header();
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(OFF_FREE_EXTENTS) + 2, OFF_FREE_EXTENTS);
    hdr.data.writeUInt32BE(hdr.data.readUInt32BE(OFF_INODE_COUNT) + 64, OFF_INODE_COUNT);
    fsx.fs.cache.markDirty(hdr);
  });
  const problems = check(fsx);
  t.match(problems, [/free extents/, /inode count/], `found: ${problems.join('; ')}`);
  t.end();
});

t.test('the same problems as rmapfs check on the device', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  fsx.fs.run(() => {
    const buf = fsx.fs.cache.read(fsx.fs.geo.agStart(1), superblockBufOps(fsx.fs.uuid));
    buf.data.write('other', 64 + 68, 'latin1'); // label
    fsx.fs.cache.markDirty(buf);
  });
  const live = check(fsx);
  fsx.close();
  const offline = checkDevice(image).result.problems.map(formatProblem);
  t.ok(live.length > 0, `found: ${live.join('; ')}`);
  t.same(live, offline, 'what check on the closed device finds');
  t.end();
});
