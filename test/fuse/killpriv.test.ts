/**
 * killpriv_v2 (DEVELOPERS.md, FUSE): with FUSE_HANDLE_KILLPRIV_V2 granted the kernel leaves
 * killing suid/sgid to the daemon. The FUSE handlers (LowLevelOps, in process) get each kind of
 * request the kernel sends, one rule at a time -- regress 053/054 see them only together through
 * a mount, where the SETATTR without attributes that file_remove_privs sends before a write or a
 * fallocate hides whether the WRITE's or FALLOCATE's own rule works. Also Rmapfs.dropPrivs:
 * S_ISGID only with group-exec, security.capability, directories untouched, nothing changed (not
 * even ctime) when there is nothing to drop, EPERM on an immutable file.
 */
import t from 'tap';
import type { Test } from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import type { Caller, LowLevelHandlers, SetattrRequest } from '../../src/fuse/lowlevel';
import { IFLAG_IMMUTABLE, S_IFDIR, S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';

const ROOT: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };
const USER: Caller = { uid: 1000, gid: 1000, pid: 1, umask: 0o022 };
const CAPABILITY = 'security.capability';
/** VFS_CAP_REVISION_2 with the effective bit, cap_net_raw permitted: what setcap writes. */
const CAP_VALUE = Buffer.from([1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);

/** Answers anything; remembers an error. */
class Reply {
  errno = 0;
  error(errno: number): void { this.errno = errno; }
  ok(): void { /* answered */ }
  attr(): void { /* answered */ }
  written(): void { /* answered */ }
}

interface Setup {
  fsx: Rmapfs;
  h: LowLevelHandlers;
  /** A new regular file of uid 1000 with this mode and a capability. */
  file(mode: number): number;
  mode(ino: number): string;
  hasCap(ino: number): boolean;
}

function setup(t: Test, killPrivs: boolean): Setup {
  const fsx = Rmapfs.open(scratchImage(t, { size: 64 << 20 }));
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY,
    killPrivs: () => killPrivs }).handlers();
  let serial = 0;
  return {
    fsx, h,
    file: (mode) => {
      const ino = fsx.create(fsx.rootIno, `f${serial++}`, S_IFREG | 0o644, 1000, 1000).ino;
      fsx.write(ino, 0, Buffer.from('data'));
      fsx.setattr(ino, { mode });
      fsx.setxattr(ino, CAPABILITY, CAP_VALUE);
      return ino;
    },
    mode: (ino) => (fsx.stat(ino).mode & 0o7777).toString(8),
    hasCap: (ino) => fsx.findxattr(ino, CAPABILITY) !== null,
  };
}

function setattr(s: Setup, ino: number, caller: Caller, fields: Partial<SetattrRequest>): void {
  const reply = new Reply();
  void s.h.setattr!({ caller, ino, fh: null, killSuidgid: false, ...fields }, reply as never);
  if (reply.errno !== 0) throw new Error(`setattr: errno ${reply.errno}`);
}

function write(s: Setup, ino: number, caller: Caller, killSuidgid: boolean, fromCache = false): void {
  const reply = new Reply();
  void s.h.write!({ caller, ino, fh: ino, offset: 0, data: Buffer.from('x'), killSuidgid, fromCache }, reply as never);
  if (reply.errno !== 0) throw new Error(`write: errno ${reply.errno}`);
}

t.test('the handlers drop what the kernel would have, request by request', (t) => {
  const s = setup(t, true);
  const cases: Array<[string, number, (ino: number) => void, string, boolean]> = [
    // what, mode before, the request, mode after, capability after
    ['WRITE with FUSE_WRITE_KILL_SUIDGID', 0o6775, (f) => write(s, f, USER, true), '775', false],
    ['WRITE with it, setgid without group-exec', 0o2745, (f) => write(s, f, USER, true), '2745', false],
    ['WRITE without it (CAP_FSETID)', 0o6775, (f) => write(s, f, ROOT, false), '6775', false],
    ['writeback of cached pages', 0o6775, (f) => write(s, f, USER, true, true), '6775', true],
    ['truncate with FATTR_KILL_SUIDGID', 0o6755, (f) => setattr(s, f, USER, { size: 1, killSuidgid: true }), '755', false],
    ['truncate without it', 0o6755, (f) => setattr(s, f, ROOT, { size: 1 }), '6755', false],
    ['chown by root', 0o6775, (f) => setattr(s, f, ROOT, { uid: 1001 }), '775', false],
    ['chgrp by the owner', 0o4644, (f) => setattr(s, f, USER, { gid: 1234 }), '644', false],
    ['SETATTR without attributes, not root', 0o6775, (f) => setattr(s, f, USER, {}), '775', false],
    ['SETATTR without attributes, root', 0o6775, (f) => setattr(s, f, ROOT, {}), '6775', false],
    ['chmod', 0o6775, (f) => setattr(s, f, USER, { mode: 0o6771 }), '6771', true],
    ['utimes', 0o6775, (f) => setattr(s, f, USER, { mtime: { sec: 1, nsec: 0 } }), '6775', true],
    ['fallocate by a user', 0o6775, (f) => { void s.h.fallocate!({ caller: USER, ino: f, fh: f, mode: 0, offset: 0, length: 65536 }, new Reply() as never); }, '775', false],
    ['fallocate by root', 0o6775, (f) => { void s.h.fallocate!({ caller: ROOT, ino: f, fh: f, mode: 0, offset: 0, length: 65536 }, new Reply() as never); }, '6775', false],
  ];
  for (const [what, before, request, after, cap] of cases) {
    const f = s.file(before);
    request(f);
    t.equal(s.mode(f), after, `${what}: ${before.toString(8)} -> ${after}`);
    t.equal(s.hasCap(f), cap, `${what}: capability ${cap ? 'kept' : 'gone'}`);
  }
  t.end();
});

t.test('without killpriv_v2 the handlers leave it all to the kernel', (t) => {
  const s = setup(t, false);
  const f = s.file(0o6775);
  write(s, f, USER, true);
  setattr(s, f, USER, { size: 1, killSuidgid: true });
  setattr(s, f, ROOT, { uid: 1001 });
  setattr(s, f, USER, {});
  t.equal(s.mode(f), '6775', 'mode kept');
  t.ok(s.hasCap(f), 'capability kept');
  t.end();
});

t.test('Rmapfs.dropPrivs', (t) => {
  const s = setup(t, true);
  const { fsx } = s;
  const plain = fsx.create(fsx.rootIno, 'plain', S_IFREG | 0o755, 0, 0).ino;
  const ctime = fsx.stat(plain).ctime;
  fsx.dropPrivs(plain, { suidgid: true, capability: true });
  t.same(fsx.stat(plain).ctime, ctime, 'nothing to drop: nothing changes, not even ctime');
  const dir = fsx.mkdir(fsx.rootIno, 'd', S_IFDIR | 0o2775, 0, 1234).ino;
  fsx.dropPrivs(dir, { suidgid: true, capability: true });
  t.equal(s.mode(dir), '2775', 'a directory keeps its setgid bit (chown_common kills for non-directories only)');
  const onlyCap = s.file(0o6775);
  fsx.dropPrivs(onlyCap, { suidgid: false, capability: true });
  t.equal(s.mode(onlyCap), '6775', 'capability only: the mode stays');
  t.notOk(s.hasCap(onlyCap), 'and the capability goes');
  const sticky = s.file(0o4755);
  fsx.setFlags(sticky, IFLAG_IMMUTABLE, { uid: 0 });
  t.throws(() => fsx.dropPrivs(sticky, { suidgid: true, capability: false }), { code: 'EPERM' }, 'immutable: EPERM');
  t.equal(s.mode(sticky), '4755', 'and nothing changed');
  t.end();
});
