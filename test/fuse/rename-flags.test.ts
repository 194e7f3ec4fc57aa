/**
 * libfuse 3 hands rename renameat2's flags, and the daemon's handler
 * (LowLevelOps, as the daemon runs it) follows rename(2): RENAME_NOREPLACE
 * refuses an existing target with EEXIST, RENAME_EXCHANGE swaps two names,
 * and EINVAL, with nothing changed, for RENAME_WHITEOUT (not done), for
 * NOREPLACE with EXCHANGE and for unknown bits -- never a plain rename that
 * would replace the target the caller asked to keep.
 */
import * as os from 'os';
import t from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import { RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT } from '../../src/fuse/lowlevel';
import type { Caller, StatusReply } from '../../src/fuse/lowlevel';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

const ROOT_NODE = 1;
const ENOENT = os.constants.errno.ENOENT;
const EEXIST = os.constants.errno.EEXIST;
const EINVAL = os.constants.errno.EINVAL;
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

t.test('rename with renameat2 flags through the handler', (t) => {
  const image = scratchImage(t, { size: 16 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  const a = fsx.create(fsx.rootIno, 'a', S_IFREG | 0o644, 0, 0).ino;
  const b = fsx.create(fsx.rootIno, 'b', S_IFREG | 0o644, 0, 0).ino;
  const names = (): Record<string, number> => Object.fromEntries(fsx.readdir(fsx.rootIno)
    .filter((e) => e.name !== '.' && e.name !== '..').map((e) => [e.name, e.ino]));
  const rename = (name: string, newName: string, flags: number): number | null => {
    const reply = statusReply();
    void h.rename?.({ caller, parent: ROOT_NODE, name, newParent: ROOT_NODE, newName, flags }, reply);
    return reply.errno;
  };

  const refused = [
    [RENAME_WHITEOUT, 'WHITEOUT'], [RENAME_NOREPLACE | RENAME_EXCHANGE, 'NOREPLACE | EXCHANGE'],
    [RENAME_EXCHANGE | RENAME_WHITEOUT, 'EXCHANGE | WHITEOUT'], [1 << 3, 'an unknown bit'], [RENAME_NOREPLACE | (1 << 31), 'NOREPLACE and an unknown bit'],
  ] as const;
  for (const [flags, what] of refused) {
    t.equal(rename('a', 'b', flags), EINVAL, `${what}: EINVAL`);
    t.same(names(), { a, b }, `${what}: nothing changed`);
  }
  t.equal(rename('a', 'b', RENAME_NOREPLACE), EEXIST, 'NOREPLACE onto an existing name: EEXIST');
  t.same(names(), { a, b }, 'NOREPLACE: b not replaced');
  t.equal(rename('a', 'b', RENAME_EXCHANGE), 0, 'EXCHANGE: done');
  t.same(names(), { a: b, b: a }, 'EXCHANGE: a and b swapped');
  t.equal(rename('a', 'c', RENAME_EXCHANGE), ENOENT, 'EXCHANGE with a missing target: ENOENT');
  t.equal(rename('a', 'c', RENAME_NOREPLACE), 0, 'NOREPLACE onto a free name: renamed');
  t.same(names(), { b: a, c: b }, 'NOREPLACE: renamed to c');
  t.equal(rename('c', 'b', 0), 0, 'a plain rename succeeds');
  t.same(names(), { b }, 'and replaces the target');
  t.end();
});
