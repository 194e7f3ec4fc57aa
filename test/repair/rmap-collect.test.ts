/**
 * The rmap collector rebuilds an AG's rmap in memory while foreground
 * operations run between its slices; the live hooks must keep it exact.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapCollector } from '../../src/repair/rmap-collect';
import { decodeRmap } from '../../src/rmap/rmap-btree';
import type { Btree } from '../../src/btree/btree';
import { OWN_AG } from '../../src/format/owners';
import { S_IFREG } from '../../src/inode/inode-format';
import { Rng, testSeed } from '../lib/rng';
import { scratchImage } from '../lib/fs';

/** Records other than the "ag" owner's (those the commit step redoes), as strings. */
function records(tree: Btree): string[] {
  const out: string[] = [];
  tree.forEach((b, off) => {
    const r = decodeRmap(b, off);
    if (r.owner !== OWN_AG) out.push(`${r.startblock}+${r.blockcount}:${r.owner}:${r.offset}:${r.flags}`);
  });
  return out;
}

t.test('the in-memory rmap equals the on-disk one, with foreground work between slices', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(55));
  const root = fsx.rootIno;
  const files: number[] = [];
  const work = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const r = rng.next();
      if (r < 0.35 || files.length < 5) {
        const dir = rng.next() < 0.2 ? fsx.mkdir(root, `d${rng.int(1e9)}`, 0o755, 0, 0).ino : root;
        files.push(fsx.create(dir, `f${rng.int(1e9)}`, S_IFREG | 0o644, 0, 0).ino);
      } else if (r < 0.75) {
        const f = files[rng.int(files.length)]!;
        fsx.write(f, rng.int(200000), crypto.randomBytes(1 + rng.int(30000)));
      } else if (r < 0.85) {
        const f = files[rng.int(files.length)]!;
        fsx.setxattr(f, `user.k${rng.int(4)}`, crypto.randomBytes(rng.int(6000)));
      } else {
        const f = files.splice(rng.int(files.length), 1)[0]!;
        fsx.truncate(f, rng.int(50000));
      }
    }
  };
  work(400);
  for (const agno of [0, 1]) {
    const c = new RmapCollector(fsx, agno);
    const result = await c.collect({ sliceInodes: 16, betweenSlices: () => work(20) });
    const want = records(fsx.fs.alloc.ag(agno).rmap);
    const got = records(c.mem.tree);
    t.ok(result.slices > 5, `AG ${agno}: ${result.slices} slices, ${result.inodesScanned} inodes`);
    t.ok(result.hookUpdatesApplied > 0 && result.hookUpdatesIgnored > 0,
      `live updates: ${result.hookUpdatesApplied} applied, ${result.hookUpdatesIgnored} left to the scan`);
    t.same(got, want, `AG ${agno}: ${got.length} records equal the on-disk rmap`);
    c.close();
  }
  t.end();
});
