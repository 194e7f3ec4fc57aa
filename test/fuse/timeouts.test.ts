/**
 * -o entry_timeout=S,attr_timeout=S,negative_timeout=S (libfuse's names):
 * how long the kernel may keep a name's inode, its attributes, a name's
 * absence before asking the daemon again. Parsed as decimal seconds (default
 * 1 each); a bad value is refused in one line with the exit status of any
 * bad mount option, nothing mounted. Through a real mount, the daemon's
 * request counts (`rmapfs status`) show the kernel keeping what it was told
 * to for 60 s, and asking every time with 0.
 */
import t from 'tap';
import * as fs from 'fs';
import { spawnSync } from 'child_process';
import { DEFAULT_MOUNT_OPTIONS, parseMountOptions, remountOptions } from '../../src/daemon/daemon';
import { RMAPFS, ScratchMount, canMount } from '../lib/mount';

t.test('the options: decimal seconds, default 1, fixed at mount time', (t) => {
  t.same([DEFAULT_MOUNT_OPTIONS.attrTimeout, DEFAULT_MOUNT_OPTIONS.entryTimeout, DEFAULT_MOUNT_OPTIONS.negativeTimeout], [1, 1, 1], 'defaults');
  const o = parseMountOptions('attr_timeout=0.5,entry_timeout=30,negative_timeout=0');
  t.same([o.attrTimeout, o.entryTimeout, o.negativeTimeout], [0.5, 30, 0], 'parsed');
  t.equal(parseMountOptions('negative_timeout=.25').negativeTimeout, 0.25, 'a fraction without a leading 0');
  for (const bad of ['attr_timeout=-1', 'entry_timeout=', 'negative_timeout', 'negative_timeout=abc', 'attr_timeout=1e3',
    'entry_timeout=NaN', 'attr_timeout=0x10', 'negative_timeout=1.2.3']) {
    t.throws(() => parseMountOptions(bad), { code: 'EINVAL', message: /^mount option \w+_timeout needs a number of seconds >= 0 \(e\.g\. 1 or 0\.5\)$/ }, bad);
  }
  t.throws(() => remountOptions(o, 'negative_timeout=2'), { code: 'EINVAL', message: /^negative_timeout cannot change on a remount/ });
  t.same(remountOptions(o, 'negative_timeout=0'), o, 'the same value: no change');
  t.end();
});

if (!canMount) t.test('through a mount', (t) => { t.plan(0, 'skipped: needs root and /dev/fuse'); t.end(); });
else {
  t.test('through a mount: what the kernel keeps, and a bad value refused', (t) => {
    const cache = 'entry_timeout=60,attr_timeout=60,negative_timeout=60';
    const m = new ScratchMount(t, cache);
    fs.writeFileSync(m.path('file'), 'x');
    /**
     * New requests of each kind while `fn` runs. Not counted: what the first stat(x) of a connection
     * costs (the kernel learns the daemon has no FUSE_STATX and asks GETATTR once), and asking the
     * daemon, which stats the mountpoint: both done once before counting.
     */
    const requests = (fn: () => void): Record<string, number> => {
      const counts = (): Map<string, number> =>
        new Map(String(m.status().requests).split(', ').map((c) => c.split(' ')).map(([op, n]) => [op ?? '', Number(n)]));
      fs.statSync(m.mnt);
      counts();
      const before = counts();
      fn();
      const after = counts();
      return Object.fromEntries(['lookup', 'getattr'].map((op) => [op, (after.get(op) ?? 0) - (before.get(op) ?? 0)]));
    };
    const statThrice = (name: string) => (): void => {
      for (let i = 0; i < 3; i++) fs.statSync(m.path(name), { throwIfNoEntry: false });
    };

    m.cycle();
    t.same(requests(statThrice('file')), { lookup: 1, getattr: 0 }, `${cache}: one lookup, its attributes kept`);
    t.same(requests(statThrice('missing')), { lookup: 1, getattr: 0 }, `${cache}: the absence kept`);

    m.unmount();
    m.mount('entry_timeout=0,attr_timeout=60,negative_timeout=0');
    t.same(requests(statThrice('file')), { lookup: 3, getattr: 0 }, 'entry_timeout=0: a lookup every time');
    t.same(requests(statThrice('missing')), { lookup: 3, getattr: 0 }, 'negative_timeout=0: a lookup every time');

    m.unmount();
    m.mount('entry_timeout=60,attr_timeout=0,negative_timeout=60');
    // The root's attributes too, every time: the kernel checks search permission on it (default_permissions).
    const attrs = requests(statThrice('file'));
    t.equal(attrs.lookup, 1, 'attr_timeout=0, entry_timeout=60: one lookup');
    t.ok(attrs.getattr! >= 3, `attr_timeout=0: attributes asked every time (${attrs.getattr} getattr for 3 stats)`);
    m.unmount();

    // A bad value: refused as a bad commit= is, in one line, before anything is mounted.
    const mount = (o: string): { status: number | null; lines: string[] } => {
      const r = spawnSync(RMAPFS, ['mount', '-o', o, m.image, m.mnt], { encoding: 'utf8' });
      return { status: r.status, lines: r.stderr.trim().split('\n') };
    };
    const badCommit = mount('commit=x');
    const badTimeout = mount('negative_timeout=-1');
    t.equal(badTimeout.status, badCommit.status, `the exit status of a bad mount option (${badCommit.status})`);
    t.same(badTimeout.lines, ['rmapfs: mount option negative_timeout needs a number of seconds >= 0 (e.g. 1 or 0.5)'], 'one line');
    t.notOk(m.mounted(), 'nothing mounted');
    t.end();
  });
}
