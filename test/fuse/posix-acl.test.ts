/**
 * POSIX ACLs through a real mount (the daemon started by `rmapfs mount`, as
 * users run it), side by side with kernel ext4 on a loop device: one script
 * of setfacl, chmod, creates under default ACLs (umask 022 and 077), mknod,
 * `setfacl -b` and `-k`, `cp -a` and `rsync -aA` between two directories,
 * and reads and writes by another uid (setpriv) that a named entry grants or
 * the mask or the mode denies, runs in both; its output (modes, `getfacl
 * -n` of every file, what uid 1000 and 1001 could do) must be the same. A
 * setfacl by an owner outside the file's group clears S_ISGID. A
 * few lines of it are checked on their own too, so the test does not lean
 * on ext4 alone. With -o noacl the ACL attributes are refused (EOPNOTSUPP)
 * and `cp -a` falls back to the mode.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';

const RMAPFS = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');

const have = (cmd: string): boolean => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0
  && ['setfacl', 'getfacl', 'setpriv', 'rsync', 'mkfs.ext4'].every(have);

/** The script run in both filesystems (its directory is $1); everything it prints is compared. */
const SCRIPT = String.raw`
set -u
cd "$1"
umask 022
as() { local uid=$1; shift; setpriv --reuid="$uid" --regid="$uid" --clear-groups "$@" 2>/dev/null; }
can() { # can UID read|write FILE
  if [ "$2" = read ]; then as "$1" cat "$3" >/dev/null; else as "$1" sh -c 'echo x >> "$1"' _ "$3"; fi \
    && echo "uid $1 $2 $3: ok" || echo "uid $1 $2 $3: denied"
}
touch f && setfacl -m u:1000:rw,g:1000:r f
chmod 600 f && echo "chmod 600 with a named user"
can 1000 write f
chmod 660 f
can 1000 write f; can 1000 read f; can 1001 read f
chmod g-w f
can 1000 write f; can 1000 read f
touch p && chmod 600 p && setfacl -m u:1000:r p
can 1000 read p; can 1000 write p; can 1001 read p
touch e && setfacl -m u::rwx,g::r,o::- e
touch b && setfacl -m u:1000:rwx,m::r b && setfacl -b b
mkdir d && setfacl -d -m u:1000:rwx,g::rx d && chmod 750 d && setfacl -m u:1000:rx d
touch d/f && mkdir d/sub && touch d/sub/f && mknod d/fifo p
(umask 077 && touch d/masked && mkdir d/mdir)
can 1000 write d/f; can 1001 read d/f
touch s && chown 1000:0 s && chmod 2775 s && as 1000 setfacl -m u:1001:r s && stat -c '%A s: setgid cleared (1000 not in group 0)' s
touch s2 && chown 1000:1000 s2 && chmod 2775 s2 && as 1000 setfacl -m u:1001:r s2 && stat -c '%A s2: setgid kept' s2
touch s3 && chown 1000:50 s3 && chmod 2775 s3 && setpriv --reuid=1000 --regid=1000 --groups=50 setfacl -m u:1001:r s3 \
  && stat -c '%A s3: setgid kept (group 50 supplementary)' s3
mkdir k && setfacl -d -m u:1000:rx k && setfacl -k k && touch k/f
mkdir copies && cp -a d copies/cp && rsync -aA d/ copies/rsync/ && cp -a f copies/f
can 1000 write copies/cp/f
(umask 077 && touch plain)
xattr() { # xattr FILE NAME HEX: setxattr(2) itself, past setfacl's own checks
  python3 -c 'import os, sys
try:
    os.setxattr(sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3])); print("ok")
except OSError as e:
    print(os.strerror(e.errno))' "$@"
}
echo "default ACL on a file: $(xattr f system.posix_acl_default 0200000001000600ffffffff04000400ffffffff20000400ffffffff)"
echo "version 1: $(xattr f system.posix_acl_access 0100000001000600ffffffff04000400ffffffff20000400ffffffff)"
echo "no mask: $(xattr f system.posix_acl_access 0200000001000600ffffffff02000600e803000004000400ffffffff20000400ffffffff)"
find . -mindepth 1 -not -path './lost+found*' | LC_ALL=C sort | while read -r p; do
  stat -c '%A %n' "$p"
  getfacl -n -p "$p" 2>&1 | grep -v '^# file:'
done
echo "== stored ACL attributes (an ACL the mode says all of is not stored)"
find . -mindepth 1 -not -path './lost+found*' | LC_ALL=C sort | python3 -c 'import os, sys
for p in sys.stdin.read().split():
    print(p, " ".join(sorted(os.listxattr(p))) or "-")'
`;

function sh(cmd: string, ...args: string[]): string {
  return execFileSync('sh', ['-c', cmd, '_', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** A scratch directory other uids can reach (the mountpoints are below it). */
function scratchDir(t: Test): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-acl-test-'));
  fs.chmodSync(dir, 0o755);
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** rmapfs mounted at dir/mnt with these options, unmounted at teardown (also on failure). */
function mountRmapfs(t: Test, dir: string, options: string): string {
  const image = path.join(dir, 'rmapfs.img');
  const mnt = path.join(dir, 'rmapfs');
  fs.mkdirSync(mnt);
  execFileSync(RMAPFS, ['mkfs', '--size', '64M', image], { stdio: 'ignore' });
  execFileSync(RMAPFS, ['mount', '-o', options, image, mnt], { stdio: 'ignore' });
  t.teardown(() => {
    if (spawnSync(RMAPFS, ['umount', mnt]).status !== 0) spawnSync('umount', ['-l', mnt]);
    const checked = spawnSync(RMAPFS, ['check', image], { encoding: 'utf8' });
    if (checked.status !== 0) t.fail(`rmapfs check after unmount: ${checked.stdout}${checked.stderr}`);
  });
  return mnt;
}

if (!canMount) {
  t.plan(0, 'skipped: needs root, /dev/fuse, setfacl/getfacl, setpriv, rsync and mkfs.ext4');
} else {
  t.test('setfacl, chmod, inheritance, permission checks, cp -a and rsync -aA: as on ext4', (t) => {
    const dir = scratchDir(t);
    const mnt = mountRmapfs(t, dir, 'allow_other');
    const ext4Image = path.join(dir, 'ext4.img');
    const ext4 = path.join(dir, 'ext4');
    fs.mkdirSync(ext4);
    execFileSync('mkfs.ext4', ['-q', '-F', ext4Image, '32M']);
    execFileSync('mount', ['-o', 'loop', ext4Image, ext4]);
    t.teardown(() => { spawnSync('umount', [ext4]); });
    const ours = sh(SCRIPT, mnt);
    const theirs = sh(SCRIPT, ext4);
    t.equal(ours, theirs, 'the same output as ext4');
    // A few lines on their own (the script's order), in case ext4 ever changes under us.
    const lines = ours.split('\n');
    for (const l of [
      'uid 1000 write f: denied', // chmod 600: the mask (group class) lost w
      'uid 1000 write f: ok', // chmod 660: the mask rw again, the named user's rw effective
      'uid 1001 read f: denied',
      'uid 1000 read p: ok', 'uid 1000 write p: denied', 'uid 1001 read p: denied',
      '-rwxrwxr-x s: setgid cleared (1000 not in group 0)', '-rwxrwsr-x s3: setgid kept (group 50 supplementary)',
      'uid 1000 write d/f: ok', 'uid 1001 read d/f: denied', 'uid 1000 write copies/cp/f: ok',
      'default ACL on a file: Permission denied', 'version 1: Operation not supported', 'no mask: Invalid argument',
      '-rw-r----- ./f', '-rwxr----- ./e', '-rw-r--r-- ./b', '-rw------- ./plain',
      // Under the default ACL: the mode masked by it, the umask (077 for the last two) not applied.
      '-rw-rw-r-- ./d/f', 'drwxrwxr-x ./d/sub', 'prw-rw-r-- ./d/fifo', '-rw-rw-r-- ./d/masked', 'drwxrwxr-x ./d/mdir',
      '-rw-r--r-- ./k/f', 'default:user:1000:rwx', 'user:1000:rwx\t#effective:rw-', 'mask::r--',
      // An ACL the mode says all of is not stored; setfacl -b and -k leave none.
      './e -', './b -', './k -', './d system.posix_acl_access system.posix_acl_default',
    ]) t.ok(lines.includes(l), `the output has: ${l}`);
    t.end();
  });

  t.test('-o noacl: the ACL attributes are refused, cp -a falls back to the mode', (t) => {
    const dir = scratchDir(t);
    const mnt = mountRmapfs(t, dir, 'noacl');
    const r = spawnSync('setfacl', ['-m', 'u:1000:rw', path.join(mnt, 'nothing')], { encoding: 'utf8' });
    t.not(r.status, 0, 'setfacl fails');
    fs.writeFileSync(path.join(mnt, 'f'), 'x');
    const set = spawnSync('setfacl', ['-m', 'u:1000:rw', path.join(mnt, 'f')], { encoding: 'utf8' });
    t.match(set.stderr, /Operation not supported/, 'EOPNOTSUPP');
    fs.chmodSync(path.join(mnt, 'f'), 0o640);
    sh('cp -a "$1/f" "$1/g"', mnt);
    t.equal(fs.statSync(path.join(mnt, 'g')).mode & 0o7777, 0o640, 'cp -a kept the mode');
    t.end();
  });
}
