/**
 * An rmap root pointing nowhere (block 0, or past the AG's end) is the rmap
 * btree's damage: the AG header still reads (online repair needs it to
 * install a new root), scrub names the tree, and the tree refuses the
 * pointer wherever it is used instead of reading some other block as rmap.
 */
import t from 'tap';
import { Filesystem } from '../../src/fs/filesystem';
import { RmapfsError } from '../../src/errors';
import { scratchImage, scrubAll } from '../lib/fs';
import { db } from '../cli/cli';
import { caught } from '../lib/caught';

for (const [what, root] of [['block 0', '0'], ['past the end of the AG', '99999']] as const) {
  t.test(`rmap root at ${what}`, async (t) => {
    const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
    await db(t, image, `set agh 1 rmapRoot ${root}`);
    const f = Filesystem.open(image);
    t.teardown(() => f.close());
    t.equal(f.alloc.ag(1).freeBlocks > 0, true, 'the header reads');
    t.same(scrubAll(f), [`rmap (AG 1): rmap btree: pointer ${root} to a level 0 block is out of range`]);
    const e = caught(() => f.run(() => f.alloc.alloc({ owner: 100000, minLen: 1, maxLen: 1, agno: 1 })));
    t.ok(e instanceof RmapfsError, 'an allocation in that AG fails');
    t.match(e, { code: 'EFSCORRUPTED', message: new RegExp(`pointer ${root} at level 0 is out of range`) }, 'as corruption');
    const ok = f.run(() => f.alloc.alloc({ owner: 100000, minLen: 1, maxLen: 1, agno: 0 }));
    t.equal(ok.agno, 0, 'the other AG still allocates');
  });
}

t.test('a bad root of the other AG btrees still makes the header unreadable', async (t) => {
  const image = scratchImage(t, { size: 16 << 20, agCount: 2 });
  await db(t, image, 'set agh 1 bnoRoot 0');
  const f = Filesystem.open(image);
  t.teardown(() => f.close());
  t.throws(() => f.alloc.ag(1).freeBlocks, /bno btree root 0 is outside the AG/);
});
