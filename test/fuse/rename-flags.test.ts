/**
 * libfuse 3 hands rename renameat2's flags. Until RENAME_NOREPLACE and
 * RENAME_EXCHANGE are implemented, the daemon's handler (LowLevelOps, as the
 * daemon runs it) answers EINVAL for any flag and changes nothing -- never a
 * plain rename that would replace the target the caller asked to keep.
 */
import t from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT } from '../../src/fuse/lowlevel';
import type { Caller, StatusReply } from '../../src/fuse/lowlevel';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

const ROOT_NODE = 1;
const EINVAL = 22;
const caller: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

/** A status reply that keeps its answer (0: ok). */
function statusReply(): StatusReply & { errno: number | null } {
  const r = {
    errno: null as number | null,
    get answered(): boolean { return r.errno !== null; },
    ok(): void { r.errno = 0; },
    error(errno: number): void { r.errno = errno; },
  };
  return r;
}

t.test('rename with renameat2 flags: EINVAL, nothing changed; without: renamed', (t) => {
  const image = scratchImage(t, { size: 16 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  const a = fsx.create(fsx.rootIno, 'a', S_IFREG | 0o644, 0, 0).ino;
  const b = fsx.create(fsx.rootIno, 'b', S_IFREG | 0o644, 0, 0).ino;
  const names = (): string[] => fsx.readdir(fsx.rootIno).map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort();

  for (const [flags, what] of [[RENAME_NOREPLACE, 'NOREPLACE'], [RENAME_EXCHANGE, 'EXCHANGE'], [RENAME_WHITEOUT, 'WHITEOUT']] as const) {
    const reply = statusReply();
    void h.rename?.({ caller, parent: ROOT_NODE, name: 'a', newParent: ROOT_NODE, newName: 'b', flags }, reply);
    t.equal(reply.errno, EINVAL, `RENAME_${what}: EINVAL`);
    t.same(names(), ['a', 'b'], `RENAME_${what}: both names still there`);
    t.equal(fsx.lookup(fsx.rootIno, 'b'), b, `RENAME_${what}: b not replaced`);
  }

  const reply = statusReply();
  void h.rename?.({ caller, parent: ROOT_NODE, name: 'a', newParent: ROOT_NODE, newName: 'b', flags: 0 }, reply);
  t.equal(reply.errno, 0, 'a plain rename succeeds');
  t.same(names(), ['b'], 'and replaces the target');
  t.equal(fsx.lookup(fsx.rootIno, 'b'), a, 'b is now the old a');
  t.end();
});
