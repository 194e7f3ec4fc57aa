/**
 * Online repair of an inode core: a wrong block count, a mode with no file
 * type, a data fork format a regular file cannot have (emptied, then the
 * block map rebuilt from the rmap) -- each found by the scrub, repaired
 * through the structure table, then clean and every file byte for byte.
 */
import t from 'tap';
import { damageAndRepair } from '../lib/damaged-files';

t.test('a wrong block count is recomputed from the forks', async (t) => {
  const files = await damageAndRepair(t, 'wrong block count');
  t.ok(files.some((f) => f.type === 'inode' && f.changes.some((c) => /^block count \d+ -> \d+$/.test(c))), 'the block count was fixed');
});

t.test('a mode with no file type gets the type its forks say', async (t) => {
  const files = await damageAndRepair(t, 'bad mode');
  t.ok(files.some((f) => f.type === 'inode' && f.changes.some((c) => c.startsWith('mode 170644 -> 100644'))), 'a regular file again');
});

t.test('a local data fork in a regular file is emptied and its block map rebuilt from the rmap', async (t) => {
  const files = await damageAndRepair(t, 'local fork in a file');
  t.same(files.map((f) => f.type), ['inode', 'bmap'], 'the core, then the block map');
  t.same(files[0]!.leftFor, ['bmap'], 'the core left the block map to its repair');
});
