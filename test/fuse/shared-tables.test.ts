/**
 * The opcode and scratch-slot numbers native/fuse_ll.cc shares with
 * src/fuse/lowlevel.ts are checked against each other when the addon loads:
 * a mismatch (a stale build/, an edit on one side only) fails in one line
 * naming every difference, instead of answering one operation with another's
 * handler or reading a reply from the wrong slot.
 */
import t from 'tap';
import { addonSharedTables, checkSharedTables, LOCAL_TABLES, Op } from '../../src/fuse/lowlevel';
import type { SharedTables } from '../../src/fuse/lowlevel';

t.test("the built addon's tables are this file's", (t) => {
  const tables = addonSharedTables();
  t.same(tables, LOCAL_TABLES, 'ops, in, out and statfs agree name by name');
  t.equal(tables.ops.RENAME, Op.RENAME, 'e.g. RENAME');
  t.doesNotThrow(() => checkSharedTables(tables));
  t.end();
});

t.test('a mismatch fails at load in one line that names it', (t) => {
  const copy = (): SharedTables => JSON.parse(JSON.stringify(LOCAL_TABLES)) as SharedTables;

  const renumbered = copy();
  renumbered.ops = { ...renumbered.ops, RENAME: 12, LINK: 11 };
  t.throws(() => checkSharedTables(renumbered), {
    message: /^rmapfs_fuse: build\/Release\/rmapfs_fuse\.node and src\/fuse\/lowlevel\.ts disagree \(ops\.RENAME is 12 in the addon, 11 here; ops\.LINK is 11 in the addon, 12 here\): rebuild with make$/,
  }, 'two opcodes swapped');

  const slotMoved = copy();
  slotMoved.out = { ...slotMoved.out, CTIME_NS: 18 };
  t.throws(() => checkSharedTables(slotMoved), { message: /\(out\.CTIME_NS is 18 in the addon, 17 here\)/ }, 'an out slot moved');

  const added = copy();
  added.in = { ...added.in, GROUPS: 23 };
  t.throws(() => checkSharedTables(added), { message: /\(in\.GROUPS is 23 in the addon, missing here\)/ }, 'a slot only the addon has');

  const dropped = copy();
  const { NAMEMAX: _gone, ...statfs } = dropped.statfs;
  dropped.statfs = statfs;
  t.throws(() => checkSharedTables(dropped), { message: /\(statfs\.NAMEMAX is missing in the addon, 10 here\)/ }, 'a slot only TypeScript has');

  for (const bad of [renumbered, slotMoved, added, dropped]) {
    let line = '';
    try {
      checkSharedTables(bad);
    } catch (e) {
      line = e instanceof Error ? e.message : String(e);
    }
    t.notOk(line.includes('\n'), 'one line');
  }
  t.end();
});
