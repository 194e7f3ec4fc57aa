/**
 * The structure table: every structure in it has a checker that finds a
 * damage of its own kind -- offline (`check`) and online (the live scrub's
 * sliced walk over a frozen view, as the daemon runs it) -- and --type picks
 * only that structure's problems. Also: the selection rules, bad input, and
 * the dependency order repair follows.
 *
 * One small filesystem (2 AGs) with a file of each shape (test/lib/file-shapes.ts);
 * each case damages a copy of it with `rmapfs db`.
 */
import t from 'tap';
import type { Test } from 'tap';
import { cli, db, fields } from '../cli/cli';
import { Rmapfs } from '../../src/fs/rmapfs';
import { Filesystem } from '../../src/fs/filesystem';
import { ALL_STRUCTURES } from '../../src/format/structures';
import type { StructureName } from '../../src/format/structures';
import { checkDevice } from '../../src/fsck/check';
import { checkerFor, dependencyOrder, FSCK_TABLE, selectStructures, trustedByRepairOf } from '../../src/fsck/table';
import { onlineRepair } from '../../src/fsck/online';
import { scrubLiveSliced } from '../../src/scrub/live-scrub';
import { structureOfProblem } from '../../src/scrub/health-marks';
import { formatProblem } from '../../src/scrub/common';
import type { Problem } from '../../src/scrub/common';
import { scratchCopy, scratchImage } from '../lib/fs';
import { populate } from '../lib/file-shapes';

const template = scratchImage(t, { size: 16 << 20, agCount: 2 });
const files = populate(template);

function copy(t: Test): string {
  return scratchCopy(t, template, 'fsck-table.img');
}

/** AG-relative roots of AG agno's btrees. */
function roots(image: string, agno: number): Record<'bno' | 'cnt' | 'rmap' | 'ino', number> {
  const f = Filesystem.open(image, { readOnly: true });
  try {
    const ag = f.alloc.ags[agno]!;
    return { bno: ag.bno.storage.getRoot().ptr, cnt: ag.cnt.storage.getRoot().ptr, rmap: ag.rmap.storage.getRoot().ptr, ino: ag.ino.storage.getRoot().ptr };
  } finally {
    f.close();
  }
}

/** One damage of each structure's own kind: the db commands for a copy of the fixture. */
const DAMAGE: Record<StructureName, (t: Test, image: string) => Promise<string[]>> = {
  superblock: async () => ['set sb 0 agCount 7'],
  'secondary-sb': async () => ['set sb 1 label other'],
  agh: async () => ['set agh 0 freeBlocks 5'],
  // A block twice on the free list.
  agfl: async (t, image) => {
    const list = /\[(.*)\]/.exec(fields((await db(t, image, 'agh 1')).out).get('agfl')!)![1]!.split(', ');
    return [`set agh 1 agfl[0] ${list[1]}`];
  },
  bnobt: async (_t, image) => [`fuzz block 0 ${roots(image, 0).bno} rec[0].startblock add`],
  cntbt: async (_t, image) => [`set block 0 ${roots(image, 0).cnt} numrecs 0`],
  rmapbt: async (_t, image) => [`set block 1 ${roots(image, 1).rmap} rec[1].owner 99`],
  inobt: async (_t, image) => [`fuzz block 0 ${roots(image, 0).ino} magic ones`],
  counters: async () => ['fuzz agh 1 freeExtents add'],
  inode: async () => [`set inode ${files.small} nblocks 5`],
  // (A size short of the mapped blocks is the core's damage now: the rmap agrees with the blocks.)
  bmap: async () => [`set inode ${files.frag} nextents 3`],
  directory: async () => [`set inode ${files.big} dataHeight 1`],
  xattr: async (t, image) => {
    const attrs = (await db(t, image, `inode ${files.xattrs}`)).out.join('\n');
    return [`set fsblock ${/^attr fork: btree, root (\d+)/m.exec(attrs)![1]} rec[0].name user.colox`];
  },
  symlink: async () => [`set inode ${files.short} size 5`],
  nlinks: async () => [`set inode ${files.small} nlink 5`],
};

const typesOf = (problems: readonly Problem[]): StructureName[] => [...new Set(problems.map((p) => structureOfProblem(p)!))];

t.test('the fixture checks clean', async (t) => {
  const r = checkDevice(template);
  t.same(r.result.problems.map(formatProblem), []);
});

for (const entry of FSCK_TABLE) {
  t.test(`${entry.name}: its checker finds its damage, offline and online`, async (t) => {
    const image = copy(t);
    await db(t, image, ...await DAMAGE[entry.name](t, image));
    const all = checkDevice(image);
    t.ok(typesOf(all.result.problems).includes(entry.name), `check: ${all.result.problems.map(formatProblem).join('; ')}`);
    if (entry.name === 'superblock') {
      // A damaged primary superblock is refused at open: no mount to scrub online.
      t.throws(() => Rmapfs.open(image), /superblock/, 'the mount refuses it');
      return;
    }
    const only = checkDevice(image, { types: [entry.name] });
    t.ok(only.result.problemCount > 0, 'check of that type alone finds it');
    t.same(typesOf(only.result.problems), [entry.name], 'and reports nothing else');
    const fsx = Rmapfs.open(image);
    t.teardown(() => fsx.close());
    const live = await scrubLiveSliced(fsx.fs, checkerFor(null, [entry.name]), { maxUnits: 8 });
    t.ok(live.problemCount > 0, `online scrub --type ${entry.name}: ${live.problems.map(formatProblem).join('; ')}`);
    t.same(typesOf(live.problems), [entry.name], 'and reports nothing else');
    if (entry.scope === 'ag') {
      const agno = live.problems.find((p) => p.agno >= 0)!.agno;
      const here = await scrubLiveSliced(fsx.fs, checkerFor(agno, [entry.name]), { maxUnits: 8 });
      t.ok(here.problemCount > 0, `--ag ${agno} finds it`);
      const there = await scrubLiveSliced(fsx.fs, checkerFor(1 - agno, [entry.name]), { maxUnits: 8 });
      t.same(there.problems.map(formatProblem), [], `--ag ${1 - agno} does not`);
    }
    const whole = await scrubLiveSliced(fsx.fs, checkerFor(null), { maxUnits: 8 });
    t.ok(typesOf(whole.problems).includes(entry.name), 'a whole online scrub finds it too');
  });
}

t.test('selection: every type by default, the AG ones with an AG; bad input is EINVAL', (t) => {
  t.same(selectStructures(null, null), ALL_STRUCTURES);
  t.same(selectStructures(null, 1), ['secondary-sb', 'agh', 'agfl', 'bnobt', 'cntbt', 'rmapbt', 'inobt']);
  t.same(selectStructures(['rmapbt', 'bnobt', 'rmapbt'], 0), ['rmapbt', 'bnobt']);
  t.throws(() => selectStructures(['bogus'], null), { code: 'EINVAL', message: /no structure type 'bogus'/ });
  t.throws(() => selectStructures(['counters'], 0), { code: 'EINVAL', message: /counters is one per filesystem/ });
  t.throws(() => selectStructures(['symlink'], 0), { code: 'EINVAL', message: /symlink is one per inode/ });
  t.end();
});

t.test('dependency order: the forward maps, then the rmap, then what is rebuilt from it', (t) => {
  // The inode btree goes before the rmap though it is rebuilt from it: the rmap's inode scan walks every AG's.
  t.same(dependencyOrder(['counters', 'inobt', 'rmapbt', 'bnobt']), ['inobt', 'rmapbt', 'counters', 'bnobt']);
  t.same(dependencyOrder(['rmapbt', 'inobt', 'inode']), ['inobt', 'inode', 'rmapbt']);
  t.ok(trustedByRepairOf('rmapbt').includes('inobt'), 'an rmap repair trusts the inode btrees');
  t.same(dependencyOrder(['agh', 'bmap', 'rmapbt', 'inode']), ['inode', 'bmap', 'rmapbt', 'agh']);
  t.same(dependencyOrder(['secondary-sb', 'superblock']), ['superblock', 'secondary-sb']);
  for (const e of FSCK_TABLE) {
    for (const d of e.dependsOn) t.ok(ALL_STRUCTURES.includes(d as StructureName), `${e.name} depends on ${d}, a structure of the table`);
  }
  t.end();
});

t.test('the command line: --type list, and a bad type is a usage error', async (t) => {
  const list = await cli('scrub', '--type', 'list');
  t.equal(list.code, 0);
  t.equal(list.out.length, 1 + FSCK_TABLE.length, 'a header and a line per structure');
  t.match(list.out.join('\n'), /^rmapbt +ag +yes +inode,bmap,directory,xattr$/m);
  const bad = await cli('repair', '--type', 'rmapbt,nope', '/');
  t.equal(bad.code, 8, "a usage error: exit 8 (xfs_scrub's scheme)");
  t.same(bad.err, ["rmapfs: no structure type 'nope' (--type list names them)"]);
});

t.test('one repairer serves both free-space btrees: --force-rebuild of bnobt,cntbt rebuilds each AG once', async (t) => {
  const fsx = Rmapfs.open(copy(t));
  t.teardown(() => fsx.close());
  const reply = await onlineRepair(fsx, ['bnobt', 'cntbt'], null,
    { forceRebuild: true, measureHeap: false, cancelled: () => false },
    { foregroundWaiting: () => false, abortReason: () => null, send: () => undefined });
  t.ok(reply.ok, String(reply.error));
  const rebuilt = (reply.freeSpace as { agno: number }[]).map((f) => f.agno);
  t.same(rebuilt, [0, 1], 'each AG once');
});
