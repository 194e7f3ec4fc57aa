/**
 * The automatic repair's scheduling (daemon/autoheal.ts), with a fake
 * repair: what a verifier finds sick in use is repaired once, with its
 * same-scope dependencies; a scrub's findings are not; nothing repairs in a
 * loop (a failed repair is not retried until the structure was healthy and
 * became sick again); one repair at a time; disabled, nothing runs.
 */
import t from 'tap';
import { HealthBus, HealthRecord, InodeHealthTable } from '../../src/alloc/health';
import type { AgStructure } from '../../src/alloc/health';
import { AutoHeal } from '../../src/daemon/autoheal';
import type { AutoHealTarget } from '../../src/daemon/autoheal';

/** An AutoHeal listening to a bus, its repairs recorded; `fail` makes them fail as a repair that leaves it sick. */
function setup(opts: { enabled?: () => boolean; busy?: () => boolean } = {}) {
  const bus = new HealthBus();
  const inodes = new InodeHealthTable((ino) => Math.floor(ino / 1000), bus);
  const ag = new HealthRecord<AgStructure>({ kind: 'ag', agno: 2 }, bus);
  const repairs: AutoHealTarget[] = [];
  let outcome: 'heal' | 'fail' = 'heal';
  const heal = new AutoHeal({
    enabled: opts.enabled ?? (() => true),
    busy: opts.busy ?? (() => false),
    repair: async (target) => {
      repairs.push(target);
      for (const ino of target.ino === null ? [] : [target.ino]) {
        const s = target.types[target.types.length - 1]! as 'inode' | 'bmap';
        if (outcome === 'heal') inodes.markHealthy(ino, s, 'repair', 'rebuilding it');
        else inodes.noteRepairFailed(ino, s, 'repair failed: no source');
      }
    },
  }, 0);
  bus.listen((e) => heal.onHealth(e));
  return { inodes, ag, repairs, heal, setOutcome: (o: 'heal' | 'fail') => { outcome = o; } };
}

const settle = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 20));

t.test('a verifier finding is repaired once, with its dependencies of the same scope; a scrub finding is not', async (t) => {
  const { inodes, ag, repairs } = setup();
  inodes.markSick(1005, 'bmap', 'verifier', 'bad crc');
  inodes.markSick(1005, 'bmap', 'verifier', 'bad crc again');
  ag.markSick('bnobt', 'verifier', 'keys out of order', 'allocating');
  inodes.markSick(1006, 'xattr', 'scrub', 'bad record');
  await settle();
  t.same(repairs, [
    { types: ['inode', 'bmap'], ag: null, ino: 1005 },
    { types: ['rmapbt', 'bnobt'], ag: 2, ino: null },
  ], 'the block map with its inode core first, the AG structure in its AG; nothing for the scrub\'s finding');
});

t.test('no loop: a failed repair is not retried; healthy and sick again, it is', async (t) => {
  const { inodes, repairs, setOutcome } = setup();
  setOutcome('fail');
  inodes.markSick(7, 'inode', 'verifier', 'bad magic');
  await settle();
  t.equal(repairs.length, 1, 'repaired once');
  t.ok(inodes.isSick(7, 'inode'), 'the failed repair left it sick');
  t.match(inodes.get(7)?.note('inode')?.repairFailed, { why: 'repair failed: no source' }, 'saying why');
  inodes.markSick(7, 'inode', 'verifier', 'bad magic, read again');
  await settle();
  t.equal(repairs.length, 1, 'found again while still sick: not repaired again');
  inodes.forget(7);
  inodes.markSick(7, 'inode', 'verifier', 'bad magic, its record dropped (the bound) and found again');
  await settle();
  t.equal(repairs.length, 1, 'nor after its record was dropped and it was found again');
  setOutcome('heal');
  inodes.markHealthy(7, 'inode', 'scrub', 'scrubbing');
  inodes.markSick(7, 'inode', 'verifier', 'bad magic, new damage');
  await settle();
  t.equal(repairs.length, 2, 'healthy, then sick again: repaired again');
});

t.test('one repair at a time; disabled, none', async (t) => {
  let busy = true;
  const a = setup({ busy: () => busy });
  a.inodes.markSick(9, 'inode', 'verifier', 'bad magic');
  await settle();
  t.equal(a.repairs.length, 0, 'waits while another repair runs');
  busy = false;
  a.heal.idle();
  await settle();
  t.equal(a.repairs.length, 1, 'runs when it ends');
  const b = setup({ enabled: () => false });
  b.inodes.markSick(9, 'inode', 'verifier', 'bad magic');
  await settle();
  t.equal(b.repairs.length, 0, 'nothing with autoheal off (or read-only)');
});
