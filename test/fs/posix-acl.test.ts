/**
 * POSIX ACLs in Rmapfs (what the daemon does for the kernel, which only
 * enforces them): a malformed value is EINVAL; an access ACL sets the mode
 * (group bits from the mask) and is stored only when the mode cannot say it
 * all; chmod rewrites the owner, mask and other entries; a default ACL only
 * on a directory; a new file takes its access ACL from its directory's
 * default (mode and ACL masked together, no umask), a new directory both;
 * without a default ACL the umask applies. `check` reports a malformed ACL
 * attribute written beneath Rmapfs, and the attribute repair drops it.
 */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFDIR, S_IFMT, S_IFREG, S_ISGID } from '../../src/inode/inode-format';
import { AttrFork } from '../../src/attr/attr';
import {
  ACL_ACCESS_NAME, ACL_DEFAULT_NAME, ACL_GROUP, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER, ACL_USER, ACL_USER_OBJ, aclProblem, decodeAcl,
  encodeAcl,
} from '../../src/attr/posix-acl';
import type { AclEntry } from '../../src/attr/posix-acl';
import { repairXattrs } from '../../src/repair/attr-repair';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

const NONE = 0xffffffff;
const ent = (tag: number, perm: number, id = NONE): AclEntry => ({ tag, perm, id });
/** user::rw- user:1000:rwx group::r-- mask::rwx other::r-- (what `setfacl -m u:1000:rwx` makes of 0644). */
const WITH_USER = [ent(ACL_USER_OBJ, 6), ent(ACL_USER, 7, 1000), ent(ACL_GROUP_OBJ, 4), ent(ACL_MASK, 7), ent(ACL_OTHER, 4)];

function perms(fsx: Rmapfs, ino: number): number {
  return fsx.stat(ino).mode & 0o7777;
}

function aclOf(fsx: Rmapfs, ino: number, name: string): AclEntry[] | null {
  const v = fsx.findxattr(ino, name);
  return v === null ? null : decodeAcl(v);
}

t.test('malformed ACLs are EINVAL (another version EOPNOTSUPP), as the kernel checks them', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  const good = encodeAcl(WITH_USER);
  const bad: [string, Buffer][] = [
    ['too short for the header', Buffer.from([2, 0])],
    ['a partial entry', Buffer.concat([good, Buffer.alloc(3)])],
    ['version 1', Buffer.concat([Buffer.from([1, 0, 0, 0]), good.subarray(4)])],
    ['permission bit 8', encodeAcl([ent(ACL_USER_OBJ, 8), ent(ACL_GROUP_OBJ, 4), ent(ACL_OTHER, 4)])],
    ['group before owner', encodeAcl([ent(ACL_GROUP_OBJ, 4), ent(ACL_USER_OBJ, 6), ent(ACL_OTHER, 4)])],
    ['no other entry', encodeAcl([ent(ACL_USER_OBJ, 6), ent(ACL_GROUP_OBJ, 4)])],
    ['a named user without a mask', encodeAcl([ent(ACL_USER_OBJ, 6), ent(ACL_USER, 7, 5), ent(ACL_GROUP_OBJ, 4), ent(ACL_OTHER, 4)])],
    ['a named group with no gid', encodeAcl([ent(ACL_USER_OBJ, 6), ent(ACL_GROUP_OBJ, 4), ent(ACL_GROUP, 4), ent(ACL_MASK, 7), ent(ACL_OTHER, 4)])],
    ['an unknown tag', encodeAcl([ent(ACL_USER_OBJ, 6), ent(0x40, 4), ent(ACL_GROUP_OBJ, 4), ent(ACL_OTHER, 4)])],
  ];
  for (const [what, value] of bad) {
    t.not(aclProblem(value), null, `${what}: a problem`);
    const code = what === 'version 1' ? 'EOPNOTSUPP' : 'EINVAL';
    t.throws(() => fsx.setxattr(f, ACL_ACCESS_NAME, value), { code }, `${what}: ${code}`);
  }
  t.equal(aclProblem(good), null, 'a valid ACL');
  t.equal(fsx.findxattr(f, ACL_ACCESS_NAME), null, 'nothing stored');
  t.equal(perms(fsx, f), 0o644, 'the mode untouched');
  t.end();
});

t.test('an access ACL sets the mode; equivalent to the mode, it is not stored; chmod rewrites it', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | S_ISGID | 0o644, 0, 7).ino;
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl([ent(ACL_USER_OBJ, 7), ent(ACL_GROUP_OBJ, 5), ent(ACL_OTHER, 0)]));
  t.equal(perms(fsx, f), S_ISGID | 0o750, 'a 3-entry ACL is a mode (setgid kept)');
  t.equal(fsx.findxattr(f, ACL_ACCESS_NAME), null, '... and stores nothing');
  t.same(fsx.listxattr(f), [], 'nothing listed');
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl(WITH_USER));
  t.equal(perms(fsx, f), S_ISGID | 0o674, 'owner rw, group class = the mask rwx, other r');
  t.same(aclOf(fsx, f, ACL_ACCESS_NAME), WITH_USER, 'stored as set');
  t.same(fsx.listxattr(f), [ACL_ACCESS_NAME], 'listed');
  fsx.setattr(f, { mode: 0o640 });
  t.same(aclOf(fsx, f, ACL_ACCESS_NAME),
    [ent(ACL_USER_OBJ, 6), ent(ACL_USER, 7, 1000), ent(ACL_GROUP_OBJ, 4), ent(ACL_MASK, 4), ent(ACL_OTHER, 0)],
    'chmod 640: the mask takes the group bits, owner and other theirs, named entries stay');
  t.equal(perms(fsx, f), 0o640);
  fsx.removexattr(f, ACL_ACCESS_NAME);
  t.equal(fsx.findxattr(f, ACL_ACCESS_NAME), null, 'removed');
  t.equal(perms(fsx, f), 0o640, 'the mode stays');
  fsx.setattr(f, { mode: S_ISGID | 0o640 });
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl(WITH_USER), 'any', { inGroupOrPrivileged: (gid) => gid === 7 });
  t.equal(perms(fsx, f), S_ISGID | 0o674, 'set by a member of the group: setgid kept');
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl(WITH_USER), 'any', { inGroupOrPrivileged: () => false });
  t.equal(perms(fsx, f), 0o674, 'set by someone outside it: setgid cleared');
  fsx.removexattr(f, ACL_ACCESS_NAME);
  fsx.setattr(f, { mode: 0o640 });
  fsx.removexattr(f, ACL_ACCESS_NAME);
  t.pass('removing an absent ACL is no error (as ext4)');
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl([ent(ACL_USER_OBJ, 6), ent(ACL_GROUP_OBJ, 0), ent(ACL_OTHER, 0)]));
  fsx.setattr(f, { mode: 0o755 });
  t.equal(fsx.findxattr(f, ACL_ACCESS_NAME), null, 'no ACL stored: chmod has nothing to rewrite');
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('default ACLs: only on directories, inherited by files and directories; the umask otherwise', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const root = fsx.rootIno;
  const file = fsx.create(root, 'file', S_IFREG | 0o644, 0, 0).ino;
  t.throws(() => fsx.setxattr(file, ACL_DEFAULT_NAME, encodeAcl(WITH_USER)), { code: 'EACCES' }, 'a default ACL on a file: EACCES');
  fsx.setxattr(file, ACL_DEFAULT_NAME, encodeAcl([]));
  t.pass('an empty default ACL on a file: nothing to do');
  const plain = fsx.mkdir(root, 'plain', 0o777, 0, 0, 0o027).ino;
  t.equal(perms(fsx, plain), 0o750, 'no default ACL: the umask applies to mkdir');
  t.equal(perms(fsx, fsx.create(plain, 'f', S_IFREG | 0o666, 0, 0, 0, 0o027).ino), 0o640, '... and to create');
  const d = fsx.mkdir(root, 'd', 0o755, 0, 0).ino;
  const defaults = [ent(ACL_USER_OBJ, 7), ent(ACL_USER, 7, 1000), ent(ACL_GROUP_OBJ, 5), ent(ACL_GROUP, 6, 50), ent(ACL_MASK, 7), ent(ACL_OTHER, 5)];
  fsx.setxattr(d, ACL_DEFAULT_NAME, encodeAcl(defaults));
  t.same(aclOf(fsx, d, ACL_DEFAULT_NAME), defaults, 'stored on the directory');
  t.equal(perms(fsx, d), 0o755, 'a default ACL leaves the mode alone');

  const f = fsx.create(d, 'f', S_IFREG | 0o666, 0, 0, 0, 0o077).ino;
  t.equal(perms(fsx, f), 0o664, 'the new file: mode 666 masked by the default ACL (owner rw, mask rw, other r), no umask');
  t.same(aclOf(fsx, f, ACL_ACCESS_NAME),
    [ent(ACL_USER_OBJ, 6), ent(ACL_USER, 7, 1000), ent(ACL_GROUP_OBJ, 5), ent(ACL_GROUP, 6, 50), ent(ACL_MASK, 6), ent(ACL_OTHER, 4)],
    'its access ACL: the default with owner, mask and other cut to the mode');
  t.equal(fsx.findxattr(f, ACL_DEFAULT_NAME), null, 'a file gets no default ACL');

  const sub = fsx.mkdir(d, 'sub', 0o777, 0, 0, 0o077).ino;
  t.equal(perms(fsx, sub), 0o775, 'the new directory: 777 masked by the ACL');
  t.same(aclOf(fsx, sub, ACL_ACCESS_NAME), defaults, 'its access ACL');
  t.same(aclOf(fsx, sub, ACL_DEFAULT_NAME), defaults, 'and the default ACL, inherited');
  const deeper = fsx.create(sub, 'g', S_IFREG | 0o600, 0, 0).ino;
  t.equal(perms(fsx, deeper), 0o600, 'two levels down: a 600 file');
  t.same(aclOf(fsx, deeper, ACL_ACCESS_NAME)?.find((e) => e.tag === ACL_MASK), ent(ACL_MASK, 0), 'its mask: none');

  const minimal = fsx.mkdir(root, 'minimal', 0o755, 0, 0).ino;
  fsx.setxattr(minimal, ACL_DEFAULT_NAME, encodeAcl([ent(ACL_USER_OBJ, 7), ent(ACL_GROUP_OBJ, 0), ent(ACL_OTHER, 0)]));
  const m = fsx.create(minimal, 'm', S_IFREG | 0o666, 0, 0, 0, 0o022).ino;
  t.equal(perms(fsx, m), 0o600, 'a 3-entry default ACL: the mode only');
  t.equal(fsx.findxattr(m, ACL_ACCESS_NAME), null, 'and no access ACL stored');
  const link = fsx.symlink(d, 'link', 'f', 0, 0).ino;
  t.equal(fsx.stat(link).mode & ~S_IFMT, 0o777, 'a symlink: 777, no ACL');
  t.same(fsx.listxattr(link), []);
  t.equal(fsx.stat(sub).mode & S_IFMT, S_IFDIR);
  t.same(check(fsx), [], 'check clean');
  t.end();
});

t.test('ACLs off (a noacl mount): no inheritance, chmod leaves a stored ACL alone', (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const d = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  fsx.setxattr(d, ACL_DEFAULT_NAME, encodeAcl(WITH_USER));
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl(WITH_USER));
  fsx.setPosixAcls(() => false);
  const g = fsx.create(d, 'g', S_IFREG | 0o666, 0, 0, 0, 0o022).ino;
  t.equal(perms(fsx, g), 0o644, 'the umask applies under the default ACL');
  t.same(fsx.listxattr(g), [], 'no ACL inherited');
  fsx.setattr(f, { mode: 0o600 });
  t.same(aclOf(fsx, f, ACL_ACCESS_NAME), WITH_USER, 'chmod left the ACL as it was');
  fsx.setPosixAcls(() => true);
  t.ok(aclOf(fsx, fsx.create(d, 'h', S_IFREG | 0o666, 0, 0, 0, 0o022).ino, ACL_ACCESS_NAME) !== null, 'on again: inherited');
  t.end();
});

t.test('check reports a malformed ACL written beneath Rmapfs; the attribute repair drops it', async (t) => {
  const image = scratchImage(t);
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.setxattr(f, 'user.kept', Buffer.from('x'));
  fsx.setxattr(f, ACL_ACCESS_NAME, encodeAcl(WITH_USER));
  const ctx = { device: fsx.fs.device, alloc: fsx.fs.alloc, geo: fsx.fs.geo, noteDataWritten: () => undefined };
  const unordered = encodeAcl([ent(ACL_USER_OBJ, 6), ent(ACL_GROUP_OBJ, 4), ent(ACL_USER, 7, 1000), ent(ACL_MASK, 7), ent(ACL_OTHER, 4)]);
  fsx.fs.run(() => new AttrFork(fsx.inodes.get(f), ctx).set(Buffer.from(ACL_ACCESS_NAME), unordered));
  // Long enough to be stored out of line (over 64 bytes), and with a bad version.
  const long = encodeAcl([...Array.from({ length: 10 }, (_, i) => ent(ACL_USER, 7, 2000 + i))]);
  long.writeUInt32LE(7, 0);
  fsx.fs.run(() => new AttrFork(fsx.inodes.get(fsx.rootIno), ctx).set(Buffer.from(ACL_DEFAULT_NAME), long));
  fsx.fs.run(() => new AttrFork(fsx.inodes.get(f), ctx).set(Buffer.from(ACL_DEFAULT_NAME), encodeAcl(WITH_USER)));
  const problems = check(fsx);
  t.ok(problems.some((l) => /^attr .*system\.posix_acl_access: malformed ACL \(entry 2: tag 2 out of order\)/.test(l)), 'the unordered access ACL');
  t.ok(problems.some((l) => /system\.posix_acl_default: malformed ACL \(ACL version 7, not 2\)/.test(l)), `the root's bad version: ${problems.join(' | ')}`);
  t.ok(problems.some((l) => /system\.posix_acl_default: a default ACL on a file that is not a directory/.test(l)), 'a default ACL on a file');
  t.equal(problems.length, 3, 'three problems');
  t.throws(() => fsx.create(fsx.rootIno, 'g', S_IFREG | 0o644, 0, 0), { code: 'EFSCORRUPTED' }, 'a create under the damaged default ACL: EFSCORRUPTED');
  const r = await repairXattrs(fsx, f);
  t.same(r.changes.sort(), [
    `${ACL_ACCESS_NAME}: value dropped (malformed ACL (entry 2: tag 2 out of order))`,
    `${ACL_DEFAULT_NAME}: value dropped (a default ACL on a file that is not a directory)`,
  ], 'both of the file\'s named as dropped');
  const rr = await repairXattrs(fsx, fsx.rootIno);
  t.same(rr.changes, [`${ACL_DEFAULT_NAME}: value dropped (malformed ACL (ACL version 7, not 2))`], 'the out-of-line one too');
  t.same(fsx.listxattr(f), ['user.kept'], 'the other attribute kept');
  t.same(check(fsx), [], 'check clean after the repair (the value blocks freed)');
  t.equal(perms(fsx, fsx.create(fsx.rootIno, 'g', S_IFREG | 0o644, 0, 0).ino), 0o644, 'creates work again');
  t.end();
});
