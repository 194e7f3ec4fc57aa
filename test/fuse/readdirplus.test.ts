/**
 * readdirplus: the entries with what a lookup of each would answer, and the
 * lookup counts that go with them (libfuse: every entry returned, "." and ".."
 * aside, counts as a lookup). Two ways:
 *  - in process, through the handlers as the daemon runs them: an entry sent
 *    with attributes is a kernel reference (unlinked, it lives on as an orphan
 *    until forgotten); an entry the reply had no room for, "." and "..", and a
 *    reply that never reached the kernel count nothing (unlinked, freed at once);
 *  - through a real mount: `ls -l` of a directory after a remount asks no
 *    LOOKUP per name, and after `rm -rf` no orphan is left (the kernel's
 *    forgets match the counts).
 */
import t from 'tap';
import * as fs from 'fs';
import { execFileSync } from 'child_process';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import type { Stat } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import type { Caller, DirEntryPlus, ReaddirplusReply, StatusReply, OpenReply } from '../../src/fuse/lowlevel';
import { S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { ScratchMount, canMount } from '../lib/mount';

const caller: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };
const ROOT_NODE = 1;

/** Any reply a test here needs: keeps what was sent, "sends" only the first `room` entries. */
class FakeReply implements ReaddirplusReply, StatusReply, OpenReply {
  answered = false;
  errno = 0;
  fh = 0;
  sent: DirEntryPlus[] = [];
  constructor(private readonly room = Infinity, private readonly reachesKernel = true) {}
  private take(): void {
    if (this.answered) throw new Error('answered twice');
    this.answered = true;
  }
  error(errno: number): void { this.take(); this.errno = errno; }
  ok(): void { this.take(); }
  open(fh: number): void { this.take(); this.fh = fh; }
  entriesPlus(list: readonly DirEntryPlus[], start = 0): number {
    this.take();
    this.sent = list.slice(start, start + this.room);
    return this.reachesKernel ? this.sent.length : 0;
  }
}

t.test('readdirplus counts a lookup for each entry sent with attributes, and only those', (t) => {
  const fsx = Rmapfs.open(scratchImage(t));
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  const dir = fsx.mkdir(fsx.rootIno, 'd', S_IFDIR | 0o755, 0, 0).ino;
  const files = Array.from({ length: 10 }, (_, i) => fsx.create(dir, `f${i}`, S_IFREG | 0o644, 0, 0));
  const call = <R extends FakeReply>(reply: R, fn: (r: R) => void | Promise<void>): R => { void fn(reply); return reply; };

  const opened = call(new FakeReply(), (r) => h.opendir?.({ caller, ino: dir, flags: 0 }, r));
  t.equal(opened.errno, 0, 'opendir');
  // Room for ".", ".." and three files; the reply says how many went.
  const first = call(new FakeReply(5), (r) => h.readdirplus?.({ caller, ino: dir, fh: opened.fh, offset: 0, size: 4096 }, r));
  t.same(first.sent.map((e) => e.name).slice(0, 2), ['.', '..'], '"." and ".." first');
  t.same(first.sent.slice(0, 2).map((e) => e.entry), [null, null], '"." and ".." go without attributes');
  /** The file an entry names (directory order is the names' hash order). */
  const fileOf = (e: DirEntryPlus): Stat => files[Number(e.name.slice(1))]!;
  const held = first.sent.slice(2).map(fileOf);
  t.equal(held.length, 3, 'three files');
  const one = first.sent[2]!;
  t.equal(one.entry?.ino, fileOf(one).ino, 'an entry: the node id');
  t.equal(one.entry?.generation, fileOf(one).generation, 'its generation');
  t.equal(one.entry?.attr.mode, S_IFREG | 0o644, 'its attributes');
  t.equal(first.sent[1]!.ino, ROOT_NODE, '".." of a top-level directory is the root node');
  // A reply that did not reach the kernel (interrupted): nothing counts.
  const lost = call(new FakeReply(2, false), (r) => h.readdirplus?.({ caller, ino: dir, fh: opened.fh, offset: first.sent[4]!.off, size: 4096 }, r));
  t.equal(lost.sent.length, 2, 'the next two, lost on the way');
  call(new FakeReply(), (r) => h.releasedir?.({ caller, ino: dir, fh: opened.fh, flags: 0 }, r));

  files.forEach((_, i) => call(new FakeReply(), (r) => h.unlink?.({ caller, parent: dir, name: `f${i}` }, r)));
  t.same(files.filter((f) => fsx.isOrphan(f.ino)).map((f) => f.ino).sort(), held.map((f) => f.ino).sort(),
    'unlinked: the three the kernel holds live on as orphans, the others are freed');
  t.throws(() => fsx.statByHandle(fileOf(lost.sent[0]!).ino), { code: 'ESTALE' }, 'an entry lost on the way was freed');
  h.forget?.({ ino: held[0]!.ino, nlookup: 1 });
  t.notOk(fsx.isOrphan(held[0]!.ino), 'forgotten once: freed');
  t.throws(() => fsx.statByHandle(held[0]!.ino), { code: 'ESTALE' }, 'gone');
  call(new FakeReply(), (r) => h.rmdir?.({ caller, parent: ROOT_NODE, name: 'd' }, r));
  t.notOk(fsx.isOrphan(dir), 'the directory itself was not counted by its "." entry: freed at rmdir');
  t.end();
});

if (!canMount) t.test('through a mount', (t) => { t.plan(0, 'skipped: needs root and /dev/fuse'); t.end(); });
else {
  t.test('ls -l through a mount: no LOOKUP per name, no orphan left after rm -rf', (t) => {
    const m = new ScratchMount(t);
    fs.mkdirSync(m.path('big'));
    for (let i = 0; i < 300; i++) fs.writeFileSync(m.path('big', `f${i}`), `${i}`);
    m.cycle();
    /** Requests of one kind the daemon has had so far. */
    const count = (op: string): number => Number(new RegExp(`\\b${op} (\\d+)`).exec(String(m.status().requests))?.[1] ?? 0);
    const lookups = count('lookup');
    const listing = execFileSync('ls', ['-l', m.path('big')], { encoding: 'utf8' }).trim().split('\n');
    t.equal(listing.length, 301, 'ls -l lists them all');
    t.ok(count('readdirplus') > 0, 'the kernel asked for readdirplus');
    t.ok(count('lookup') - lookups <= 2, `no lookup per name (${count('lookup') - lookups} for 300 names)`);
    fs.rmSync(m.path('big'), { recursive: true });
    // The kernel forgets the inodes it was given as it evicts them, at the unlinks at the latest.
    t.equal(m.status().orphans, 0, 'no orphan left: every count was forgotten');
    t.end();
  });
}
