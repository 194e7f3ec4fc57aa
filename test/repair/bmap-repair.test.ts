/**
 * Online repair of a file's block map from the rmap: a leaf record pointing
 * at free space, moved in the file, marked unwritten, one block longer or at
 * the superblock, a zeroed btree leaf, a zeroed btree root -- each found by
 * the scrub, repaired through the structure table, then the filesystem
 * checks clean and every file reads back byte for byte. And the collection
 * is kept current: other files and the file itself change between its
 * slices.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { repairBlockMap } from '../../src/repair/bmap-repair';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';
import { DAMAGED_FILE_EXTENTS, Model, bystanders, damageAndRepair, fragmentedFile } from '../lib/damaged-files';

// The leaf records the rmap contradicts (xfs_scrub's xchk_bmap_xref_rmap), and one over the superblock: the
// block map is blamed and rebuilt from the rmap -- never the rmap from the damaged map.
for (const how of ['leaf record at free space', 'leaf record moved in the file', 'leaf record marked unwritten', 'leaf record one block longer',
  'leaf record at the superblock', 'zeroed leaf', 'zeroed root'] as const) {
  t.test(`a file's ${how} is repaired online through the structure table`, async (t) => {
    const files = await damageAndRepair(t, how);
    t.ok(files.some((f) => f.type === 'bmap' && f.changes[0]!.startsWith('block map rebuilt from the rmap')), 'the block map was rebuilt');
  });
}

t.test('the collection is kept current while other files and the same file change between its slices', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(14));
  const model = new Model();
  const others = bystanders(fsx, model, rng, 10);
  const ino = fragmentedFile(fsx, model, rng, 'big', DAMAGED_FILE_EXTENTS);
  let slices = 0;
  const between = (): void => {
    slices++;
    // Another file grows; this one gets new blocks past its end, an overwrite, a hole filled, and shrinks.
    const other = others[slices % others.length]!;
    model.write(fsx, other, rng.int(4) * BLOCK_SIZE, Buffer.alloc(BLOCK_SIZE, slices & 0xff));
    const size = model.files.get(ino)!.length;
    if (slices % 3 === 0) model.write(fsx, ino, size + BLOCK_SIZE * (1 + rng.int(3)), Buffer.alloc(BLOCK_SIZE, 0x40 + (slices & 0x3f)));
    if (slices % 3 === 1) model.write(fsx, ino, rng.int(2 * DAMAGED_FILE_EXTENTS) * BLOCK_SIZE + 17, Buffer.alloc(100, slices & 0xff));
    if (slices % 7 === 2) model.truncate(fsx, ino, size - BLOCK_SIZE * (1 + rng.int(4)));
  };
  const r = await repairBlockMap(fsx, ino, { sliceMs: 1e9, maxUnits: 20, betweenSlices: between });
  t.ok(slices > 10, `${slices} slices with changes between them`);
  t.equal(r.error, undefined);
  t.ok(r.changes[0]!.startsWith('block map rebuilt from the rmap'), r.changes.join('; '));
  t.same(check(fsx), [], 'clean after the repair');
  model.unchanged(t, fsx);
});
