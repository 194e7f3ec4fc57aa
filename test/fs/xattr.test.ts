/** Extended attributes: flags, limits, large values, persistence, and space coming back. */
import t from 'tap';
import { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { scratchImage } from '../lib/fs';
import { check } from '../lib/check';

/** Free blocks plus the AG free lists (which grow and shrink with the btrees). */
function unused(fsx: Rmapfs): number {
  return fsx.statfs().bfree + fsx.fs.alloc.ags.reduce((n, ag) => n + ag.agflCount, 0);
}

t.test('set, get, list, replace, remove; errors as POSIX wants them', (t) => {
  const image = scratchImage(t);
  let fsx = Rmapfs.open(image);
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  const free0 = unused(fsx);
  fsx.setxattr(f, 'user.small', Buffer.from('hello'));
  const big = Buffer.alloc(65536, 7);
  big.write('start');
  fsx.setxattr(f, 'user.big', big);
  t.same(fsx.listxattr(f).sort(), ['user.big', 'user.small']);
  t.equal(fsx.getxattr(f, 'user.small').toString(), 'hello');
  t.ok(fsx.getxattr(f, 'user.big').equals(big), 'a 64 KiB value round-trips');
  t.throws(() => fsx.setxattr(f, 'user.small', Buffer.from('x'), 'create'), { code: 'EEXIST' });
  t.throws(() => fsx.setxattr(f, 'user.none', Buffer.from('x'), 'replace'), { code: 'ENODATA' });
  t.throws(() => fsx.getxattr(f, 'user.none'), { code: 'ENODATA' });
  t.throws(() => fsx.removexattr(f, 'user.none'), { code: 'ENODATA' });
  t.throws(() => fsx.setxattr(f, 'user.x', Buffer.alloc(65537)), { code: 'E2BIG' });
  t.throws(() => fsx.setxattr(f, `user.${'n'.repeat(260)}`, Buffer.alloc(1)), { code: 'ERANGE' });
  fsx.setxattr(f, 'user.small', Buffer.alloc(0), 'replace');
  t.equal(fsx.getxattr(f, 'user.small').length, 0, 'an empty value is a value');
  t.same(check(fsx), [], 'check clean with attributes');
  fsx.close();
  fsx = Rmapfs.open(image);
  t.ok(fsx.getxattr(f, 'user.big').equals(big), 'survives reopen');
  fsx.removexattr(f, 'user.big');
  fsx.removexattr(f, 'user.small');
  t.same(fsx.listxattr(f), []);
  fsx.fsync();
  t.equal(unused(fsx), free0, 'the attribute blocks came back');
  for (let i = 0; i < 300; i++) fsx.setxattr(f, `user.k${i}`, Buffer.alloc(100 + i, i));
  t.equal(fsx.listxattr(f).length, 300, '300 attributes (a multi-level attr btree)');
  fsx.unlink(fsx.rootIno, 'f');
  fsx.fsync();
  t.same(check(fsx), [], 'deleting the file frees its attributes');
  t.equal(unused(fsx), free0, 'all of their space');
  fsx.close();
  t.end();
});

// POSIX ACLs (system.posix_acl_*): test/fs/posix-acl.test.ts, test/fuse/posix-acl.test.ts.
