/**
 * remount,ro and remount,rw of an open filesystem: read-only, everything is
 * in place and the image is clean as it stands (a copy opens without a log to
 * replay and checks clean), every change is EROFS, reads and fsync go on;
 * read-write again, changes work. Mount options for the kernel are parsed in
 * groups, the last choice of each winning.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import { Rmapfs } from '../../src/fs/rmapfs';
import { Filesystem } from '../../src/fs/filesystem';
import { STATE_CLEAN, STATE_DIRTY } from '../../src/format/superblock';
import { checkDevice, CHECK_CLEAN } from '../../src/fsck/check';
import { S_IFREG } from '../../src/inode/inode-format';
import { describeLiveOptions, kernelMountFlags, parseMountOptions, remountOptions, writebackCacheWanted } from '../../src/daemon/daemon';
import { kernelDaemonFlags } from '../../src/io/mountinfo';
import { scratchImage } from '../lib/fs';

/** What a copy of the image, taken now, holds: its state and what its log would replay. */
function copyState(t: Test, image: string): { state: number; replayed: number } {
  const copy = `${image}.copy`;
  fs.copyFileSync(image, copy);
  t.teardown(() => fs.rmSync(copy, { force: true }));
  const f = Filesystem.open(copy, { readOnly: true });
  try {
    return { state: f.superblock().state, replayed: f.replayed.transactions };
  } finally {
    f.close();
  }
}

t.test('remount,ro leaves a clean image and refuses changes; remount,rw takes them again', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(ino, 0, Buffer.from('before'));
  for (let i = 0; i < 50; i++) fsx.create(fsx.rootIno, `g${i}`, S_IFREG | 0o644, 0, 0);
  t.equal(copyState(t, image).state, STATE_DIRTY, 'mounted read-write: dirty');

  fsx.fs.remountReadOnly();
  t.ok(fsx.fs.readOnlyNow, 'read-only now');
  t.same(copyState(t, image), { state: STATE_CLEAN, replayed: 0 }, 'clean on disk, nothing in the log');
  t.equal(checkDevice(`${image}.copy`).status, CHECK_CLEAN, 'the copy checks clean');
  t.throws(() => fsx.create(fsx.rootIno, 'no', S_IFREG | 0o644, 0, 0), { code: 'EROFS' }, 'create refused');
  t.throws(() => fsx.write(ino, 0, Buffer.from('x')), { code: 'EROFS' }, 'write refused');
  t.equal(fsx.read(ino, 0, 6).toString(), 'before', 'reads go on');
  t.doesNotThrow(() => fsx.fsync(), 'fsync of a read-only filesystem succeeds');
  fsx.fs.remountReadOnly(); // twice: nothing more

  fsx.fs.remountReadWrite();
  t.notOk(fsx.fs.readOnlyNow, 'read-write again');
  t.equal(copyState(t, image).state, STATE_DIRTY, 'dirty on disk again');
  fsx.write(ino, 0, Buffer.from('after!'));
  fsx.fsync();
  t.equal(fsx.read(ino, 0, 6).toString(), 'after!', 'writes work');
  t.end();
});

t.test('remount,ro with unlinked files still in use leaves the filesystem marked dirty', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  fsx.fs.remountReadOnly(true);
  t.same(copyState(t, image), { state: STATE_DIRTY, replayed: 0 }, 'dirty: the next rw mount frees the orphans');
  t.end();
});

t.test('a filesystem opened read-only cannot be remounted read-write', (t) => {
  const image = scratchImage(t, { size: 64 << 20, agCount: 2 });
  const f = Filesystem.open(image, { readOnly: true });
  t.teardown(() => f.close());
  t.throws(() => f.remountReadWrite(), { code: 'EROFS' });
  t.end();
});

t.test('kernel mount flags: collected in order, the last of each group wins', (t) => {
  const o = parseMountOptions('dev,noexec,commit=3,noatime,relatime,nodiratime,suid,sync,nonempty');
  t.same(o.kernelFlags, ['dev', 'noexec', 'noatime', 'relatime', 'nodiratime', 'suid', 'sync']);
  t.notOk(o.kernelFlags.includes('nonempty'), 'nonempty: accepted, not a kernel flag (libfuse 3 always allows it)');
  t.notOk(o.remount);
  t.equal(o.commit, 3);
  const k = kernelMountFlags(o.kernelFlags);
  t.same(k.libfuse, ['suid', 'dev', 'noexec', 'sync'], 'what libfuse sets (relatime is the default)');
  t.same(k.afterMount, ['nodiratime'], 'what a bind remount sets');
  t.same(kernelMountFlags(['strictatime']).afterMount, ['strictatime']);
  t.same(kernelMountFlags(['strictatime', 'noatime']).libfuse, ['noatime'], 'the last atime choice');
  t.same(kernelMountFlags(['ro', 'rw', 'nosuid']).chosen, ['rw', 'nosuid']);
  t.ok(parseMountOptions('remount,ro').remount, 'remount');
  t.throws(() => parseMountOptions('remountx'), { code: 'EINVAL' });
  t.end();
});

t.test('a remount changes sync, dirsync, the atime policy and commit=, and refuses options fixed at mount time', (t) => {
  const live = parseMountOptions('allow_other,uid=1000,commit=5,strictatime');
  const next = remountOptions(live, 'sync,dirsync,noatime,nodiratime,commit=9');
  t.equal(describeLiveOptions(next), 'sync,dirsync,noatime,nodiratime,commit=9');
  t.equal(next.uid, 1000, 'what is not named stays');
  t.ok(next.allowOther);
  t.equal(describeLiveOptions(remountOptions(next, 'async,relatime,diratime')), 'async,dirsync,relatime,commit=9');
  t.equal(describeLiveOptions(remountOptions(live, 'atime')), 'async,strictatime,commit=5', 'atime undoes only noatime');
  // What mount(8) hands back (the options the mount shows) changes nothing.
  t.same(remountOptions(live, 'rw,nosuid,nodev,allow_other,default_permissions,uid=1000'), live);
  t.throws(() => remountOptions(live, 'uid=0'), { code: 'EINVAL', message: /^uid cannot change on a remount/ });
  t.throws(() => remountOptions(parseMountOptions(''), 'allow_other,max_write=4096'),
    { code: 'EINVAL', message: /^allow_other, max_write cannot change on a remount: unmount and mount again$/ });
  t.throws(() => remountOptions(live, 'writelog=/tmp/x'), { code: 'EINVAL', message: /^writelog cannot/ });
  t.throws(() => remountOptions(live, 'no_writeback_cache'), { code: 'EINVAL', message: /^writeback_cache cannot/ },
    'the writeback cache was agreed with the kernel at INIT');
  t.end();
});

t.test('the writeback cache: on by default, -o no_writeback_cache turns it off, never with -o sync', (t) => {
  t.ok(writebackCacheWanted(parseMountOptions('')), 'on by default');
  t.notOk(writebackCacheWanted(parseMountOptions('no_writeback_cache')), 'no_writeback_cache');
  t.ok(writebackCacheWanted(parseMountOptions('writeback_cache')), 'writeback_cache');
  t.notOk(writebackCacheWanted(parseMountOptions('writeback_cache,no_writeback_cache')), 'the last one given wins');
  t.notOk(writebackCacheWanted(parseMountOptions('sync')), '-o sync: a write must be durable before write(2) returns');
  t.notOk(writebackCacheWanted(parseMountOptions('writeback_cache,sync')), 'even when asked for');
  t.ok(writebackCacheWanted(parseMountOptions('writeback_cache,sync,async')), 'async undoes sync');
  t.end();
});

t.test('killpriv_v2: on by default, -o no_killpriv_v2 turns it off', (t) => {
  t.ok(parseMountOptions('').killprivV2, 'on by default (the daemon kills privileges; writes cost no GETXATTR)');
  t.notOk(parseMountOptions('no_killpriv_v2').killprivV2, 'no_killpriv_v2');
  t.ok(parseMountOptions('no_killpriv_v2,killpriv_v2').killprivV2, 'the last one given wins');
  t.end();
});

t.test("the kernel's sync and atime flags as the daemon follows them", (t) => {
  const entry = (mountOptions: string, superOptions: string) => ({ mountpoint: '/m', fstype: 'fuse.rmapfs', source: '/i',
    mountOptions: mountOptions.split(','), superOptions: superOptions.split(',') });
  t.equal(kernelDaemonFlags(entry('rw,nosuid,nodev,relatime', 'rw,user_id=0')), 'async,relatime,diratime');
  t.equal(kernelDaemonFlags(entry('rw,noatime,nodiratime', 'rw,sync,user_id=0')), 'sync,noatime,nodiratime');
  t.equal(kernelDaemonFlags(entry('rw,nosuid', 'rw')), 'async,strictatime,diratime', 'neither relatime nor noatime: strictatime');
  t.end();
});
