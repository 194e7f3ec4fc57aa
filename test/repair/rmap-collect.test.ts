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
import { EXTENT_SIZE, S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
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
    const result = await c.collect({ sliceInodes: 16, sliceMs: 1e9, betweenSlices: () => work(20) });
    const want = records(fsx.fs.alloc.ag(agno).rmap);
    const got = records(c.memOf(agno).tree);
    t.ok(result.slices > 5, `AG ${agno}: ${result.slices} slices, ${result.inodesScanned} inodes`);
    t.ok(result.hookUpdatesApplied > 0 && result.hookUpdatesIgnored > 0,
      `live updates: ${result.hookUpdatesApplied} applied, ${result.hookUpdatesIgnored} left to the scan`);
    t.same(got, want, `AG ${agno}: ${got.length} records equal the on-disk rmap`);
    c.close();
  }
  t.end();
});

t.test('the scan cursor: an update for a scanned owner is applied, for an unscanned one left to the scan', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const a = fsx.create(fsx.rootIno, 'a', S_IFREG | 0o644, 0, 0).ino;
  for (let i = 0; i < 40; i++) fsx.create(fsx.rootIno, `filler${i}`, S_IFREG | 0o644, 0, 0);
  const b = fsx.create(fsx.rootIno, 'b', S_IFREG | 0o644, 0, 0).ino;
  t.ok(a < b, `a (${a}) is scanned before b (${b})`);
  // At the first pause once the scan has passed a (slices of 4 units: b is 40 inodes further), a is
  // scanned and b is not.
  const c = new RmapCollector(fsx, [0, 1]);
  let done = false;
  let scannedAt = -1;
  const result = await c.collect({
    sliceInodes: 4,
    sliceMs: 1e9, // slices end after 4 units exactly, never by time
    betweenSlices: () => {
      if (done || c.position.ino < a) return;
      done = true;
      scannedAt = c.position.ino;
      fsx.write(a, 4096 * 200, Buffer.alloc(4096, 3));
      fsx.write(b, 4096 * 200, Buffer.alloc(4096, 4));
    },
  });
  t.ok(scannedAt >= a && scannedAt < b, `the writes came with the scan at inode ${scannedAt}`);
  t.equal(result.hookUpdatesApplied, 1, 'the write to a (scanned) reached the in-memory rmap through the hook');
  t.equal(result.hookUpdatesIgnored, 1, 'the write to b (not scanned yet) was left to the scan');
  for (const agno of [0, 1]) t.same(records(c.memOf(agno).tree), records(fsx.fs.alloc.ag(agno).rmap), `AG ${agno}: exact`);
  c.close();
  t.end();
});

t.test('a file with many mappings is read in pieces across slices while it changes', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const big = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
  const other = fsx.create(fsx.rootIno, 'other', S_IFREG | 0o644, 0, 0).ino;
  // Every other block: no two extents can merge, so 300 extents and as many rmap records.
  for (let i = 0; i < 300; i++) fsx.write(big, i * 2 * 4096, Buffer.alloc(4096, i & 0xff));
  fsx.write(other, 0, Buffer.alloc(64 << 10, 9));
  const rng = new Rng(testSeed(91));
  const c = new RmapCollector(fsx, [0, 1]);
  let slices = 0;
  const result = await c.collect({
    sliceInodes: 1,
    sliceMs: 1e9,
    betweenSlices: () => {
      slices++;
      // Change the big file while its mappings are being added: fill holes, cut its tail, and move
      // blocks between owners (freed by one, taken by the other).
      fsx.write(big, (rng.int(300) * 2 + 1) * 4096, Buffer.alloc(4096, 7));
      if (slices === 5) fsx.truncate(big, 250 * 2 * 4096);
      if (slices === 6) fsx.truncate(other, 0);
      if (slices === 7) fsx.write(other, 0, Buffer.alloc(256 << 10, 8));
    },
  });
  t.ok(slices > 10, `${slices} slices`);
  t.ok(result.hookUpdatesIgnored > 0, `${result.hookUpdatesIgnored} live updates past the scan (or the big file's cursor) left to it`);
  for (const agno of [0, 1]) t.same(records(c.memOf(agno).tree), records(fsx.fs.alloc.ag(agno).rmap), `AG ${agno}: exact`);
  c.close();
  t.end();
});

t.test('live updates that straddle a file\'s data cursor are cut there; a file freed between its pieces', async (t) => {
  for (const seed of [1, 2, 3, 4]) {
    const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
    const fsx = Rmapfs.open(image);
    const rng = new Rng(testSeed(300 + seed));
    const big = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
    const doomed = fsx.create(fsx.rootIno, 'doomed', S_IFREG | 0o644, 0, 0).ino;
    // 1,200 one-block extents at every other file block (~40 pieces), written last to first: side by side on
    // disk in reverse order, so none can merge and no free block is left between them -- a later write
    // where blocks were just freed gets a long extent from the free space after them. The doomed file: 100.
    for (let i = 1199; i >= 0; i--) fsx.write(big, i * 2 * 4096, Buffer.alloc(4096, i & 0xff));
    for (let i = 99; i >= 0; i--) fsx.write(doomed, i * 2 * 4096, Buffer.alloc(4096, 3));
    const c = new RmapCollector(fsx, [0, 1]);
    let slices = 0;
    let didCut = false;
    let doomedGone = false;
    const result = await c.collect({
      sliceInodes: 1,
      sliceMs: 1e9,
      betweenSlices: () => {
        slices++;
        // Fill some holes (one-block extents that merge with their neighbours); once, cut the file just
        // below its cursor and write a long run from there: new multi-block extents, the first one's rmap
        // update starting below the cursor and ending past it.
        fsx.write(big, rng.int(2400) * 4096, Buffer.alloc((1 + rng.int(20)) * 4096, 5));
        const at = c.position;
        if (!didCut && at.ino === big && at.dataCursor !== null && at.dataCursor > 600) {
          didCut = true;
          const cut = at.dataCursor - 1 - rng.int(8);
          fsx.truncate(big, cut * 4096);
          fsx.write(big, cut * 4096, Buffer.alloc((200 + rng.int(200)) * 4096, 6));
        }
        if (slices > 3 && !doomedGone) {
          fsx.unlink(fsx.rootIno, 'doomed');
          doomedGone = true;
        }
        if (slices === 6) fsx.write(fsx.create(fsx.rootIno, 'reborn', S_IFREG | 0o644, 0, 0).ino, 0, Buffer.alloc(8192, 1));
      },
    });
    t.ok(slices > 10, `seed ${seed}: ${slices} slices`);
    t.ok(didCut, `seed ${seed}: the big file was cut just below its cursor`);
    t.ok(result.hookUpdatesClipped > 0, `seed ${seed}: ${result.hookUpdatesClipped} live updates cut at the big file's cursor`);
    for (const agno of [0, 1]) t.same(records(c.memOf(agno).tree), records(fsx.fs.alloc.ag(agno).rmap), `seed ${seed}, AG ${agno}: exact`);
    c.close();
    fsx.close();
  }
  t.end();
});

t.test('a directory of many blocks is added in pieces (a snapshot), live updates queued behind it', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const rng = new Rng(testSeed(404));
  const dir = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  const names: string[] = [];
  for (let i = 0; i < 600; i++) {
    const name = `file-with-a-longish-name-${i}`;
    fsx.create(dir, name, S_IFREG | 0o644, 0, 0);
    names.push(name);
  }
  const other = fsx.create(fsx.rootIno, 'other', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(other, 0, Buffer.alloc(64 << 10, 1));
  const c = new RmapCollector(fsx, [0, 1]);
  let slices = 0;
  let next = 600;
  const result = await c.collect({
    sliceInodes: 1,
    sliceMs: 1e9,
    betweenSlices: () => {
      slices++;
      // The directory grows and shrinks (blocks split off, merge away), and blocks change owners.
      for (let k = 0; k < 5; k++) {
        const name = `file-with-a-longish-name-${next++}`;
        fsx.create(dir, name, S_IFREG | 0o644, 0, 0);
        names.push(name);
      }
      for (let k = 0; k < 4 && names.length > 0; k++) fsx.unlink(dir, names.splice(rng.int(names.length), 1)[0]!);
      if (slices % 7 === 0) fsx.truncate(other, rng.int(16) * 4096);
      if (slices % 7 === 3) fsx.write(other, rng.int(32) * 4096, Buffer.alloc(8 * 4096, 2));
    },
  });
  t.ok(slices > 40, `${slices} slices`);
  t.ok(result.hookUpdatesQueued > 0, `${result.hookUpdatesQueued} live updates waited behind the directory's snapshot`);
  for (const agno of [0, 1]) t.same(records(c.memOf(agno).tree), records(fsx.fs.alloc.ag(agno).rmap), `AG ${agno}: exact`);
  c.close();
  t.end();
});

t.test('a forward-map extent that cannot be right is left out, its fork named sick, and the scan goes on', async (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const geo = fsx.fs.geo;
  const victim = fsx.create(fsx.rootIno, 'victim', S_IFREG | 0o644, 0, 0).ino;
  const thief = fsx.create(fsx.rootIno, 'thief', S_IFREG | 0o644, 0, 0).ino;
  const overSb = fsx.create(fsx.rootIno, 'over-sb', S_IFREG | 0o644, 0, 0).ino;
  const big = fsx.create(fsx.rootIno, 'big', S_IFREG | 0o644, 0, 0).ino;
  for (const ino of [victim, thief, overSb]) for (let i = 0; i < 3; i++) fsx.write(ino, i * 2 * 4096, Buffer.alloc(4096, ino & 0xff));
  // Every other block: 300 extents, a block-map btree (its data is read in pieces behind the data cursor).
  for (let i = 0; i < 300; i++) fsx.write(big, i * 2 * 4096, Buffer.alloc(4096, i & 0xff));
  const victimBlock = new BlockMap(fsx.inodes.get(victim), fsx.fs.alloc, geo).extents()[1]!.fsbno;
  fsx.fs.run(() => {
    // Inline extents: the thief's second one onto the victim's block (a second owner), over-sb's onto block 0.
    for (const [ino, fsbno] of [[thief, victimBlock], [overSb, 0]] as const) {
      const { buf, offset } = fsx.inodes.get(ino).dataFork();
      encodeExtent({ ...decodeExtent(buf.data, offset + EXTENT_SIZE), fsbno }, buf.data, offset + EXTENT_SIZE);
      fsx.fs.cache.markDirty(buf);
    }
    // A btree leaf's record onto AG 1's superblock.
    const tree = new BlockMap(fsx.inodes.get(big), fsx.fs.alloc, geo).btree!;
    let leaf = -1;
    tree.visitBlocks((ptr, level) => { if (level === 0 && leaf < 0) leaf = ptr; });
    const buf = fsx.fs.cache.read(leaf, tree.bufOps);
    const off = tree.geo.recOffset(5);
    encodeExtent({ ...decodeExtent(buf.data, off), fsbno: geo.fsbno(1, 1) }, buf.data, off);
    fsx.fs.cache.markDirty(buf);
  });
  const c = new RmapCollector(fsx, [0, 1]);
  t.teardown(() => c.close());
  const result = await c.collect({ sliceInodes: 1, sliceMs: 1e9 });
  t.same(result.sickForks.map((f) => [f.ino, f.fork]), [[thief, 'data'], [overSb, 'data'], [big, 'data']].sort((a, b) => (a[0] as number) - (b[0] as number)),
    'the three files\' data forks are named sick');
  t.match(result.sickForks.find((f) => f.ino === thief)!.what, /another owner's too.*left out of the rebuilt rmap/);
  t.match(result.sickForks.find((f) => f.ino === overSb)!.what, /at 0\+1 .* lies over AG 0's superblock and headers/);
  t.match(result.sickForks.find((f) => f.ino === big)!.what, /lies over AG 1's superblock and headers/);
  // The victim keeps its block; nothing of the left-out mappings is collected.
  const held = (agno: number, ino: number): string[] => records(c.memOf(agno).tree).filter((r) => r.split(':')[1] === String(ino));
  t.ok(held(geo.agnoOf(victimBlock), victim).some((r) => r.startsWith(`${geo.agbnoOf(victimBlock)}+`)), 'the first owner keeps the block');
  t.same([...held(0, overSb), ...held(1, overSb)].filter((r) => r.startsWith('0+')), [], 'nothing over block 0');
  t.end();
});
