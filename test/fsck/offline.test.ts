/**
 * Offline repair (src/fsck/offline.ts) in-process: what only a whole device
 * allows -- the primary superblock from its copies, an AG header from a scan
 * of its blocks, also when old btrees a repair freed still verify there --
 * ends with a filesystem that checks clean and every file's content as it
 * was; -n changes nothing.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as crypto from 'crypto';
import { Rmapfs } from '../../src/fs/rmapfs';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { AGH_AGBNO, slotOffset } from '../../src/format/ag-header';
import { S_IFREG, decodeExtent, encodeExtent } from '../../src/inode/inode-format';
import { BlockMap } from '../../src/file/bmap';
import type { FileRepairResult } from '../../src/repair/file-repair';
import { checkDevice } from '../../src/fsck/check';
import { FSCK_CLEAN, FSCK_CORRECTED, FSCK_UNCORRECTED, repairDevice } from '../../src/fsck/offline';
import { scratchCopy, scratchImage } from '../lib/fs';
import { run } from '../../src/cli/main';
import { OFF_NUMRECS } from '../../src/btree/btree-block';
import { isInodeOwner } from '../../src/format/owners';
import { decodeRmap } from '../../src/rmap/rmap-btree';
import type { RebuiltRmaps } from '../../src/rmap/rmap-digest';

const RMAP_SLOT = slotOffset('rmap');

interface Manifest { [ino: number]: string }

function sha(b: Buffer): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** A filesystem of 4 AGs with 1,500 small files (rmaps of two levels). */
function populated(t: Test): { image: string; manifest: Manifest; agBlocks: number } {
  const image = scratchImage(t, { size: 64 << 20, agCount: 4 });
  const fsx = Rmapfs.open(image);
  const manifest: Manifest = {};
  for (let i = 0; i < 1500; i++) {
    const ino = fsx.create(fsx.rootIno, `f${i}`, S_IFREG | 0o644, 0, 0).ino;
    const data = crypto.randomBytes(500 + (i % 5) * 700);
    fsx.write(ino, 0, data);
    manifest[ino] = sha(data);
  }
  const agBlocks = fsx.fs.geo.agBlocks;
  fsx.close();
  return { image, manifest, agBlocks };
}

function filesIntact(image: string, manifest: Manifest): boolean {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    return Object.entries(manifest).every(([ino, want]) => {
      const n = Number(ino);
      return sha(fsx.read(n, 0, fsx.stat(n).size)) === want;
    });
  } finally {
    fsx.close();
  }
}

function zeroBlock(image: string, bno: number): void {
  const fd = fs.openSync(image, 'r+');
  fs.writeSync(fd, Buffer.alloc(BLOCK_SIZE), 0, BLOCK_SIZE, bno * BLOCK_SIZE);
  fs.closeSync(fd);
}

/** AG agno's rmap root and height as its header says, and how many rmap blocks outside the live tree still verify. */
function rmapRoot(image: string, agno: number): { root: number; height: number; oldBlocksVerifying: number } {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    const ag = fsx.fs.alloc.ag(agno);
    const h = ag.header().data;
    const live = new Set<number>();
    ag.rmap.visitBlocks((ptr) => { live.add(ptr); });
    let old = 0;
    for (let agbno = 2; agbno < ag.length; agbno++) {
      const b = fsx.fs.cache.read(ag.start + agbno, null).data;
      if (b.readUInt32BE(0) === ag.rmap.ops.magic && !live.has(agbno)) old++;
    }
    return { root: h.readUInt32BE(RMAP_SLOT), height: h.readUInt32BE(RMAP_SLOT + 4), oldBlocksVerifying: old };
  } finally {
    fsx.close();
  }
}

/** A u32 of AG agno's header, read raw. */
function headerField(image: string, agno: number, offset: number): number {
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    return fsx.fs.alloc.ag(agno).header().data.readUInt32BE(offset);
  } finally {
    fsx.close();
  }
}

/** `rmapfs db IMAGE COMMAND` in this process (its output dropped); its exit status. */
function db(image: string, command: string): Promise<number> {
  return run(['db', image, command], { out: () => undefined, err: () => undefined });
}

function fileSha(image: string): string {
  return sha(fs.readFileSync(image));
}

t.test('offline repair of whole-device damage', async (t) => {
  const { image: template, manifest, agBlocks } = populated(t);

  await t.test('a zeroed primary superblock: rebuilt from the copies, the root found again', async (t) => {
    const image = scratchCopy(t, template, 'sb.img');
    zeroBlock(image, 0);
    t.equal(checkDevice(image).status, FSCK_UNCORRECTED, 'check sees the damage');
    const before = fileSha(image);
    const dry = await repairDevice(image, { dryRun: true });
    t.equal(dry.status, FSCK_UNCORRECTED, '-n: errors left');
    t.equal(fileSha(image), before, '-n changed nothing');
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice[0], /^primary superblock \(bad magic\) rebuilt from the copy in AG 1, 2, 3 \(3 of 3 copies agree/);
    t.match(r.wholeDevice[1], /^root directory found again: inode \d+/);
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
    t.ok(filesIntact(image, manifest), 'every file intact');
    t.equal((await repairDevice(image)).status, FSCK_CLEAN, 'a second repair finds nothing');
  });

  await t.test('a zeroed AG header whose AG holds an old rmap a repair freed: the live root is found', async (t) => {
    const image = scratchCopy(t, template, 'agh.img');
    // Rebuild AG 0's rmap: the old tree's blocks go back to free space, still verifying as rmap blocks.
    const rebuilt = await repairDevice(image, { forceRebuild: true, types: ['rmapbt'] });
    t.equal(rebuilt.status, FSCK_CORRECTED, 'rmap rebuilt');
    const live = rmapRoot(image, 0);
    t.ok(live.height >= 2 && live.oldBlocksVerifying > 0, `AG 0's rmap has ${live.height} levels and ${live.oldBlocksVerifying} old blocks that still verify`);
    zeroBlock(image, AGH_AGBNO);
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice[0], /^AG 0: header rebuilt from a scan of its \d+ blocks \(roots: bno \d+, cnt \d+, rmap (\d+) \(height (\d+)\), ino \d+;/);
    t.same(rmapRoot(image, 0).root, live.root, 'the scan found the live rmap root, not an old one');
    t.same(r.headersAfterScan.map((h) => h.type), ['agh', 'agfl'], 'counts recomputed, free list rebuilt');
    const after = checkDevice(image);
    t.equal(after.status, FSCK_CLEAN, `check clean ${after.result.problems.map((p) => p.message).join('; ')}`);
    t.ok(filesIntact(image, manifest), 'every file intact');
  });

  await t.test('AG 2 header: an impossible rmap height', async (t) => {
    const image = scratchCopy(t, template, 'height.img');
    const fd = fs.openSync(image, 'r+');
    const h = Buffer.alloc(BLOCK_SIZE);
    const bno = 2 * agBlocks + AGH_AGBNO;
    fs.readSync(fd, h, 0, BLOCK_SIZE, bno * BLOCK_SIZE);
    h.writeUInt32BE(77, RMAP_SLOT + 4); // the rmap's height
    fs.writeSync(fd, h, 0, BLOCK_SIZE, bno * BLOCK_SIZE);
    fs.closeSync(fd);
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice[0], /^AG 2: header rebuilt from a scan/);
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });

  await t.test('a primary superblock with a bad crc: its copies found where its geometry puts them', async (t) => {
    const image = scratchCopy(t, template, 'crc.img');
    const fd = fs.openSync(image, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 200); // the label area: only the crc tells
    fs.closeSync(fd);
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice[0], /^primary superblock \(bad crc32c\) rebuilt .* found where the geometry puts them\)$/);
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });

  // A primary that verifies but is not the filesystem's: the log it names cannot be opened (found by
  // fuzz-loop --offline: status 4, "the log cannot be replayed"), or a value no rewrite can hold
  // (status 8: the secondary superblocks' repair copies the primary).
  for (const [fuzz, why] of [['uuid sub', /its uuid differ from its copies' and its log cannot be opened/],
    ['logStart lastbit', /its logStart differ from its copies' and its log cannot be opened/],
    ['label ones', /label: longer than 32 bytes/], ['createdSec firstbit', /createdSec: \d+ is not a u64/],
    // A header field the open checks; a geometry that holds together yet is not the one the AG headers were made by.
    ['owner zeroes', /owner 0, want 1/],
    ['totalBlocks sub', /its totalBlocks differ from its copies', and the AG headers fit the copies' geometry/],
    ['agBlocks add', /its agBlocks(, \w+)* differ from its copies', and the AG headers fit/]] as const) {
    await t.test(`a primary superblock that verifies, its ${fuzz.split(' ')[0]} fuzzed (${fuzz.split(' ')[1]}): rebuilt from the copies`, async (t) => {
      const image = scratchCopy(t, template, 'sb-field.img');
      t.equal(await db(image, `fuzz sb 0 ${fuzz}`), 0, 'fuzzed');
      const r = await repairDevice(image);
      t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
      t.match(r.wholeDevice[0], why);
      t.match(r.wholeDevice[0], /rebuilt from the copy in AG 1, 2, 3/);
      t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
      t.ok(filesIntact(image, manifest), 'every file intact');
      t.equal((await repairDevice(image)).status, FSCK_CLEAN, 'a second repair finds nothing');
    });
  }

  await t.test('a primary superblock naming another inode as the root: the root found again', async (t) => {
    const image = scratchCopy(t, template, 'root.img');
    t.equal(await db(image, 'fuzz sb 0 rootIno sub'), 0, 'fuzzed');
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice, [/^root directory found again: inode \d+$/]);
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });

  await t.test('a repair of one inode only (no AG structure): exit 1, errors corrected', async (t) => {
    const image = scratchCopy(t, template, 'inode.img');
    const ino = Number(Object.keys(manifest)[7]);
    t.equal(await db(image, `fuzz inode ${ino} nblocks add`), 0, 'fuzzed');
    const r = await repairDevice(image);
    const files = (r.repair?.files ?? []) as { ino: number; changes: string[] }[];
    t.ok(files.some((f) => f.ino === ino && f.changes.length > 0), `the inode's repair is reported: ${JSON.stringify(files)}`);
    t.same(['ags', 'freeSpace', 'inodeBtree', 'headers'].filter((k) => ((r.repair?.[k] ?? []) as unknown[]).length > 0), [], 'no AG structure rebuilt');
    t.equal(r.status, FSCK_CORRECTED, 'fsck(8): 1, errors corrected -- not 0');
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
  });

  await t.test('a zeroed AG header and its bnobt root: the header from the scan, the bnobt from the rmap', async (t) => {
    const image = scratchCopy(t, template, 'bno.img');
    const bnoRoot = headerField(image, 3, slotOffset('bno'));
    zeroBlock(image, 3 * agBlocks + AGH_AGBNO);
    zeroBlock(image, 3 * agBlocks + bnoRoot);
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.match(r.wholeDevice[0], /^AG 3: header rebuilt from a scan .*\(roots: bno not found \(rebuilt next\), cnt \d+/);
    t.ok(r.repair !== null && (r.repair.freeSpace as { agno: number }[]).some((f) => f.agno === 3), 'AG 3 free-space btrees rebuilt');
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });
});

t.test('offline, nothing is checked twice: the check before is the repair list, the check after its closing scrub', async (t) => {
  const { image: template, manifest, agBlocks } = populated(t);
  const liveScrub = require('../../src/scrub/live-scrub') as { scrubLiveSliced: (...a: unknown[]) => unknown };
  const agScrub = require('../../src/scrub/ag-scrub') as { scrubAgForRmapRepair: (...a: unknown[]) => unknown };
  const check = require('../../src/fsck/check') as { checkDevice: (...a: unknown[]) => unknown };
  const counts = { scrubs: 0, trustedChecks: 0, checks: 0 };
  const spy = <M extends Record<K, (...a: unknown[]) => unknown>, K extends keyof M & string>(m: M, k: K, counter: keyof typeof counts): void => {
    const real = m[k];
    m[k] = ((...a: unknown[]) => { counts[counter]++; return real(...a); }) as M[K];
    t.teardown(() => { m[k] = real; });
  };
  spy(liveScrub, 'scrubLiveSliced', 'scrubs');
  spy(agScrub, 'scrubAgForRmapRepair', 'trustedChecks');
  spy(check, 'checkDevice', 'checks');

  // A zeroed btree root stops the check's file pass (it needs every AG's btrees walkable): the files are
  // scrubbed once after the rebuild, as their damage is unknown; nothing else is checked again.
  await t.test('damage: one check before, one after, the files scrubbed once as the check could not', async (t) => {
    const image = scratchCopy(t, template, 'once.img');
    zeroBlock(image, 3 * agBlocks + headerField(image, 3, slotOffset('bno')));
    Object.assign(counts, { scrubs: 0, trustedChecks: 0, checks: 0 });
    const r = await repairDevice(image);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.same({ scrubs: counts.scrubs, checks: counts.checks }, { scrubs: 1, checks: 2 }, 'the whole filesystem checked twice, the files scrubbed once');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });

  await t.test('--force-rebuild: no scrub of its own, each AG checked once before the rebuilds that trust it', async (t) => {
    const image = scratchCopy(t, template, 'forced.img');
    Object.assign(counts, { scrubs: 0, trustedChecks: 0, checks: 0 });
    const r = await repairDevice(image, { forceRebuild: true });
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.same(counts, { scrubs: 0, trustedChecks: 4, checks: 1 }, 'no scrub, 4 AGs checked once each, one whole check (after)');
    t.ok(filesIntact(image, manifest), 'every file intact');
  });
});

t.test('a block-map leaf record moved in the file: the map rebuilt from the rmap, the file unchanged, status 1', async (t) => {
  const image = scratchImage(t, { size: 32 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  const ino = fsx.create(fsx.rootIno, 'sparse', S_IFREG | 0o644, 0, 0).ino;
  // Every other block: 300 one-block extents, a two-level block map.
  for (let i = 0; i < 300; i++) fsx.write(ino, 2 * i * BLOCK_SIZE, crypto.randomBytes(BLOCK_SIZE));
  const before = sha(fsx.read(ino, 0, 600 * BLOCK_SIZE));
  fsx.fs.run(() => {
    const tree = new BlockMap(fsx.inodes.get(ino), fsx.fs.alloc, fsx.fs.geo).btree!;
    let leaf = -1;
    tree.visitBlocks((ptr, level) => { if (level === 0 && leaf < 0) leaf = ptr; });
    const buf = fsx.fs.cache.read(leaf, tree.bufOps);
    const off = tree.geo.recOffset(5);
    const e = decodeExtent(buf.data, off);
    encodeExtent({ ...e, fileoff: e.fileoff + 1 }, buf.data, off);
    fsx.fs.cache.markDirty(buf);
  });
  fsx.close();
  const r = await repairDevice(image);
  const files = ((r.repair?.files ?? []) as FileRepairResult[]).filter((f) => f.changes.length > 0);
  t.same(files.map((f) => [f.type, f.ino]), [['bmap', ino]], `the block map rebuilt: ${files.map((f) => f.changes.join('; ')).join(' | ')}`);
  t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
  t.equal(checkDevice(image).status, FSCK_CLEAN, 'clean after');
  const after = Rmapfs.open(image, { readOnly: true });
  t.teardown(() => after.close());
  t.equal(sha(after.read(ino, 0, 600 * BLOCK_SIZE)), before, 'the file reads as before the damage');
});

t.test('--force-rebuild: the check after leaves out only the files against the rmaps rebuilt from them', async (t) => {
  const { image: template, manifest } = populated(t);
  const files = Object.keys(manifest).map(Number);
  const problemsOf = (r: ReturnType<typeof checkDevice>): string => r.result.problems.map((p) => p.message).join('\n');

  await t.test('clean: left out in every AG, status 1; a plain check compares them', async (t) => {
    const image = scratchCopy(t, template, 'rebuilt.img');
    const r = await repairDevice(image, { forceRebuild: true });
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.same(r.after?.result.rmapRebuiltFromFiles, [0, 1, 2, 3], 'the check after compared no file with its rmap');
    const plain = checkDevice(image);
    t.equal(plain.status, FSCK_CLEAN, 'a plain check is clean');
    t.same(plain.result.rmapRebuiltFromFiles, [], 'and compared them all');
  });

  await t.test('damage no rebuild of the rmap covers (a block count) is found by the check after, and repaired', async (t) => {
    const image = scratchCopy(t, template, 'nblocks.img');
    const ino = files[11]!;
    t.equal(await db(image, `fuzz inode ${ino} nblocks add`), 0, 'fuzzed');
    const r = await repairDevice(image, { forceRebuild: true });
    const later = r.laterPasses.flatMap((p) => (p.files ?? []) as FileRepairResult[]);
    t.ok(later.some((f) => f.ino === ino && f.changes.length > 0), `the check after named it and a later pass repaired it: ${JSON.stringify(later)}`);
    t.equal(r.status, FSCK_CORRECTED, `corrected (${r.error ?? 'no error'})`);
    t.equal(checkDevice(image).status, FSCK_CLEAN, 'check clean');
  });

  // What the repair built, kept; then the disk changed behind it: the check with the same notes compares after all.
  const rebuilt = async (t: Test, name: string): Promise<{ image: string; rebuiltRmaps: RebuiltRmaps }> => {
    const image = scratchCopy(t, template, name);
    const rebuiltRmaps: RebuiltRmaps = new Map();
    t.equal((await repairDevice(image, { forceRebuild: true, rebuiltRmaps })).status, FSCK_CORRECTED, 'rebuilt');
    t.same([...rebuiltRmaps.keys()].sort(), [0, 1, 2, 3], 'every AG\'s rmap built from the files');
    return { image, rebuiltRmaps };
  };

  await t.test('a file\'s extent moved in the file after the rebuild: compared, and reported', async (t) => {
    const { image, rebuiltRmaps } = await rebuilt(t, 'file-moved.img');
    t.equal(await db(image, `set inode ${files[5]!} ext[0].fileoff 7`), 0, 'moved');
    const c = checkDevice(image, { rebuiltRmaps });
    t.equal(c.status, FSCK_UNCORRECTED, 'damage found');
    t.match(problemsOf(c), new RegExp(`inode ${files[5]!}: extent at \\d+ \\(file block 7\\).*the rmap says`), 'the rmap disagreement named');
    t.same(c.result.rmapRebuiltFromFiles, [], 'every AG compared');
  });

  await t.test('an rmap record of a file changed after the rebuild: compared, and reported', async (t) => {
    const { image, rebuiltRmaps } = await rebuilt(t, 'rmap-changed.img');
    // The first data record of a file in AG 1's rmap: its leaf and index.
    const fsx = Rmapfs.open(image, { readOnly: true });
    let where: { leaf: number; index: number; owner: number } | null = null;
    const tree = fsx.fs.alloc.ag(1).rmap;
    tree.visitBlocks((ptr, level) => {
      if (level !== 0 || where !== null) return;
      const b = tree.readBlock(ptr, 0).data;
      for (let i = 0; i < b.readUInt16BE(OFF_NUMRECS) && where === null; i++) {
        const r = decodeRmap(b, tree.geo.recOffset(i));
        if (isInodeOwner(r.owner) && r.flags === 0 && files.includes(r.owner)) where = { leaf: ptr, index: i, owner: r.owner };
      }
    });
    fsx.close();
    if (where === null) throw new Error('no file record in AG 1');
    const { leaf, index, owner } = where;
    t.equal(await db(image, `set block 1 ${leaf} rmap rec[${index}].offset 3`), 0, 'changed');
    const c = checkDevice(image, { rebuiltRmaps });
    t.equal(c.status, FSCK_UNCORRECTED, 'damage found');
    t.match(problemsOf(c), new RegExp(`inode ${owner}: extent at \\d+ \\(file block 0\\).*the rmap says .* offset 3`), 'the rmap disagreement named');
    t.notOk(c.result.rmapRebuiltFromFiles.includes(1), 'AG 1 compared');
  });
});
