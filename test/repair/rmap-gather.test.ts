/**
 * The offline collection (CollectOptions.unmounted: mappings gathered per AG,
 * sorted, bulk loaded) builds the same in-memory rmap and names the same sick
 * forks, with the same words, as the one-by-one inserts -- on images whose
 * block maps claim other owners' blocks, impossible blocks and overlapping
 * runs; and a live update that comes while gathering loses nothing.
 */
import t from 'tap';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { RmapCollector } from '../../src/repair/rmap-collect';
import type { CollectResult } from '../../src/repair/rmap-collect';
import { decodeRmap } from '../../src/rmap/rmap-btree';
import type { Btree } from '../../src/btree/btree';
import { OWN_AG } from '../../src/format/owners';
import { EXTENT_SIZE, FORK_EXTENTS, S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
import { BlockMap } from '../../src/file/bmap';
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

interface Collected {
  trees: string[][];
  sick: CollectResult['sickForks'];
  error: string | null;
}

async function collect(fsx: Rmapfs, unmounted: boolean): Promise<Collected> {
  const agnos = fsx.fs.alloc.ags.map((ag) => ag.agno);
  const c = new RmapCollector(fsx, agnos);
  try {
    const result = await c.collect({ unmounted, sliceMs: 1e9 });
    return { trees: agnos.map((agno) => records(c.memOf(agno).tree)), sick: result.sickForks, error: null };
  } catch (e) {
    return { trees: [], sick: [], error: e instanceof Error ? e.message : String(e) };
  } finally {
    c.close();
  }
}

t.test('gathered and sorted == inserted one by one, under random block-map damage', async (t) => {
  const seed = testSeed(1331);
  t.comment(`seed ${seed}`);
  const rng = new Rng(seed);
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const geo = fsx.fs.geo;
  const files: number[] = [];
  for (let i = 0; i < 80; i++) {
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    for (let k = 0, n = 1 + rng.int(4); k < n; k++) fsx.write(ino, k * 2 * 4096, Buffer.alloc(4096, i + 1));
    if (rng.int(4) === 0) fsx.setxattr(ino, 'user.v', crypto.randomBytes(5000 + rng.int(5000)));
    files.push(ino);
  }
  const big = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 300; i++) fsx.write(big, i * 2 * 4096, Buffer.alloc(4096, i & 0xff)); // a block-map btree
  fsx.fsync();
  const clean = await collect(fsx, false);
  t.same(await collect(fsx, true), clean, 'clean: the same trees');
  t.same(clean.trees.map((r, agno) => r.length === records(fsx.fs.alloc.ag(agno).rmap).length), [true, true], 'clean: as many records as on disk');
  const dataBlocks = (ino: number): number[] => new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, geo).extents().map((e) => e.fsbno);
  let differ = 0;
  let withSick = 0;
  const rounds = 25;
  for (let round = 0; round < rounds; round++) {
    // Damage accumulates: later rounds hold many overlapping and impossible claims at once.
    fsx.fs.run(() => {
      for (let k = 1 + rng.int(3); k > 0; k--) {
        const ino = files[rng.int(files.length)]!;
        const inode = fsx.inodes.get(ino);
        if (inode.format !== FORK_EXTENTS || inode.nextents === 0) continue;
        const { buf, offset } = inode.dataFork();
        const at = offset + EXTENT_SIZE * rng.int(inode.nextents);
        const e = decodeExtent(buf.data, at);
        const other = files[rng.int(files.length)]!;
        switch (rng.int(4)) {
          case 0: { // onto another file's block
            const blocks = dataBlocks(other);
            if (blocks.length > 0) e.fsbno = blocks[rng.int(blocks.length)]!;
            break;
          }
          case 1: e.fsbno = geo.fsbno(rng.int(geo.agCount), rng.int(geo.agBlocks)); break; // anywhere, headers too
          case 2: e.blockcount += 1 + rng.int(3); break; // over its neighbour
          default: e.fsbno = geo.fsbno(rng.int(geo.agCount), 0); // an AG's superblock
        }
        encodeExtent(e, buf.data, at);
        fsx.fs.cache.markDirty(buf);
      }
    });
    const one = await collect(fsx, false);
    const sorted = await collect(fsx, true);
    if (one.sick.length > 0) withSick++;
    if (JSON.stringify(one) !== JSON.stringify(sorted)) {
      differ++;
      if (differ <= 2) t.same(sorted, one, `round ${round}: same trees, sick forks and words`);
    }
  }
  t.equal(differ, 0, `${rounds} rounds: gathered == one by one`);
  t.ok(withSick > rounds / 2, `${withSick} rounds left mappings out (the damage reached the collection)`);
  t.end();
});

t.test('a live update while gathering: what was gathered goes in first, and the tree is exact', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(77));
  const files: number[] = [];
  for (let i = 0; i < 60; i++) {
    files.push(fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino);
    fsx.write(files[i]!, 0, crypto.randomBytes(1 + rng.int(20000)));
  }
  for (const agno of [0, 1]) {
    const c = new RmapCollector(fsx, agno);
    t.teardown(() => c.close());
    const result = await c.collect({ unmounted: true, sliceInodes: 8, sliceMs: 1e9,
      betweenSlices: () => { fsx.write(files[rng.int(files.length)]!, rng.int(100000), crypto.randomBytes(1 + rng.int(20000))); } });
    t.ok(result.hookUpdatesApplied > 0, `AG ${agno}: ${result.hookUpdatesApplied} live updates applied`);
    t.same(records(c.memOf(agno).tree), records(fsx.fs.alloc.ag(agno).rmap), `AG ${agno}: the in-memory rmap equals the on-disk one`);
  }
  t.end();
});
