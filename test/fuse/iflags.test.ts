/**
 * Inode flags and copy_file_range through a real mount (the daemon as
 * `rmapfs mount` runs it, the kernel's FUSE in between): lsattr/chattr and
 * xfs_io's lsattr/chattr (FS_IOC_GETFLAGS/SETFLAGS, FS_IOC_FSGETXATTR/
 * FSSETXATTR as FUSE_IOCTL requests), each rule the daemon enforces (the
 * kernel does not know the flags), a user who is not root, noatime on a
 * strictatime mount, and copy_file_range(2) (python3's os.copy_file_range):
 * offsets, holes kept (a copy the kernel fell back to splicing would
 * allocate them), the refusals. The image checks clean after.
 */
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const RMAPFS = path.join(ROOT, 'bin', 'rmapfs');
const USER = 1000;
/** The system's python3 (a user's shim, e.g. pyenv under /root, may not be reachable by USER). */
const PYTHON = fs.existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0
  && spawnSync('sh', ['-c', 'command -v chattr && command -v lsattr && command -v setpriv && command -v python3']).status === 0;

/** Runs a command; its output (stdout then stderr) and status. */
function run(cmd: string, args: string[], opts: { cwd?: string; asUser?: boolean } = {}): { status: number | null; out: string } {
  const [file, argv] = opts.asUser ? ['setpriv', [`--reuid=${USER}`, `--regid=${USER}`, '--clear-groups', cmd, ...args]] : [cmd, args];
  const r = spawnSync(file, argv, { cwd: opts.cwd, encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}`.trim() };
}

/**
 * A python3 step that prints "ok" or the errno's name: `op` is an expression
 * over os (and argv), e.g. "os.open(argv[1], os.O_WRONLY)".
 */
const TRY = `import errno, os, sys
argv = sys.argv
try:
    r = eval(argv[1])
    print("ok" if r is None or isinstance(r, int) and r >= 0 else r)
except OSError as e:
    print(errno.errorcode[e.errno])`;

if (!canMount) {
  t.plan(0, 'skipped: needs root, /dev/fuse, chattr, lsattr, setpriv and python3');
} else {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'iflags-test-'));
  fs.chmodSync(dir, 0o755);
  const image = path.join(dir, 'fs.img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const mounted = (): boolean => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === mnt);
  t.teardown(() => {
    if (mounted()) {
      const r = run(RMAPFS, ['umount', mnt]);
      if (r.status !== 0) spawnSync('umount', ['-l', mnt]);
    }
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const p = (name: string): string => path.join(mnt, name);
  /** `expr` evaluated by python3 (as root, or as USER): "ok" or the errno name. */
  const py = (expr: string, args: string[] = [], asUser = false): string => run(PYTHON, ['-c', TRY, expr, ...args], { asUser }).out;
  const lsattr = (...args: string[]): string => run('lsattr', args, { cwd: mnt }).out;

  t.before(() => {
    const mk = run(RMAPFS, ['mkfs', '--size', String(64 << 20), image]);
    if (mk.status !== 0) throw new Error(`mkfs: ${mk.out}`);
    const m = run(RMAPFS, ['mount', '-o', 'allow_other,strictatime', image, mnt]);
    if (m.status !== 0) throw new Error(`mount: ${m.out}`);
  });

  t.test('lsattr and chattr', (t) => {
    fs.writeFileSync(p('f'), 'hello\n');
    fs.mkdirSync(p('d'));
    t.equal(lsattr('f'), '---------------------- f', 'no flags');
    t.equal(run('chattr', ['+d', '+A', 'f'], { cwd: mnt }).status, 0, 'chattr +dA');
    t.equal(lsattr('f'), '------dA-------------- f');
    t.equal(run('chattr', ['+i', 'f'], { cwd: mnt }).status, 0, 'chattr +i');
    t.equal(lsattr('f'), '----i-dA-------------- f');
    t.equal(run('chattr', ['-i', '-d', '-A', '+a', 'f'], { cwd: mnt }).status, 0, 'chattr -idA +a');
    t.equal(lsattr('f'), '-----a---------------- f');
    t.match(run('chattr', ['+C', 'f'], { cwd: mnt }).out, /Operation not supported/, 'a flag rmapfs does not keep: EOPNOTSUPP');
    t.equal(run('chattr', ['-a', 'f'], { cwd: mnt }).status, 0);
    t.equal(run('chattr', ['+i', 'd'], { cwd: mnt }).status, 0, 'a directory');
    t.equal(lsattr('-d', 'd'), '----i----------------- d');
    t.equal(run('chattr', ['-i', 'd'], { cwd: mnt }).status, 0);
    if (run('sh', ['-c', 'command -v xfs_io']).status === 0) {
      const x = run('xfs_io', ['-r', '-c', 'chattr +iA', '-c', 'lsattr', '-c', 'chattr -iA', '-c', 'lsattr', 'f'], { cwd: mnt });
      t.equal(x.out, '--i--A----------- f \n----------------- f', 'xfs_io chattr/lsattr (FS_IOC_FSGETXATTR/FSSETXATTR)');
      t.match(run('xfs_io', ['-r', '-c', 'chattr +x', 'f'], { cwd: mnt }).out, /Operation not supported/, 'xfs_io chattr +x: EOPNOTSUPP');
    }
    t.end();
  });

  t.test('an immutable file and directory refuse every change', (t) => {
    fs.writeFileSync(p('i'), 'data');
    fs.mkdirSync(p('idir'));
    fs.writeFileSync(p('idir/in'), 'x');
    run('chattr', ['+i', 'i', 'idir'], { cwd: mnt });
    const f = p('i');
    const refused: Array<[string, string, string[]]> = [
      ['open for writing', 'os.open(argv[2], os.O_WRONLY)', [f]],
      ['open O_APPEND', 'os.open(argv[2], os.O_WRONLY | os.O_APPEND)', [f]],
      ['truncate', 'os.truncate(argv[2], 0)', [f]],
      ['chmod', 'os.chmod(argv[2], 0o600)', [f]],
      ['chown', 'os.chown(argv[2], 5, 5)', [f]],
      ['utime', 'os.utime(argv[2], (1, 1))', [f]],
      ['touch', 'os.utime(argv[2])', [f]],
      ['setxattr', 'os.setxattr(argv[2], "user.a", b"1")', [f]],
      ['link', 'os.link(argv[2], argv[3])', [f, p('i2')]],
      ['rename', 'os.rename(argv[2], argv[3])', [f, p('i2')]],
      ['unlink', 'os.unlink(argv[2])', [f]],
      ['a new entry in the directory', 'os.open(argv[2], os.O_CREAT | os.O_WRONLY)', [p('idir/new')]],
      ['mkdir in the directory', 'os.mkdir(argv[2])', [p('idir/sub')]],
      ['unlink in the directory', 'os.unlink(argv[2])', [p('idir/in')]],
      ['rename out of the directory', 'os.rename(argv[2], argv[3])', [p('idir/in'), p('out')]],
    ];
    for (const [what, expr, args] of refused) t.equal(py(expr, args), 'EPERM', `${what}: EPERM`);
    t.equal(fs.readFileSync(f, 'utf8'), 'data', 'still readable, unchanged');
    t.equal(py('os.write(os.open(argv[2], os.O_WRONLY), b"y")', [p('idir/in')]), 'ok', 'a file in the directory can be written');
    run('chattr', ['-i', 'i', 'idir'], { cwd: mnt });
    t.equal(py('os.unlink(argv[2])', [f]), 'ok', 'unlinked once the flag is gone');
    t.end();
  });

  t.test('an append-only file takes appends only', (t) => {
    const f = p('a');
    fs.writeFileSync(f, 'one\n');
    run('chattr', ['+a', 'a'], { cwd: mnt });
    t.equal(py('os.write(os.open(argv[2], os.O_WRONLY | os.O_APPEND), b"two\\n")', [f]), 'ok', 'O_APPEND write');
    t.equal(fs.readFileSync(f, 'utf8'), 'one\ntwo\n');
    const refused: Array<[string, string, string[]]> = [
      ['open for writing', 'os.open(argv[2], os.O_WRONLY)', [f]],
      ['open O_RDWR', 'os.open(argv[2], os.O_RDWR)', [f]],
      ['open O_APPEND|O_TRUNC', 'os.open(argv[2], os.O_WRONLY | os.O_APPEND | os.O_TRUNC)', [f]],
      ['truncate', 'os.truncate(argv[2], 0)', [f]],
      ['chmod', 'os.chmod(argv[2], 0o600)', [f]],
      ['punch a hole', 'os.system("fallocate -p -o 0 -l 4096 " + argv[2]) and os.strerror(1)', [f]],
      ['unlink', 'os.unlink(argv[2])', [f]],
      ['rename', 'os.rename(argv[2], argv[3])', [f, p('a2')]],
      ['setxattr', 'os.setxattr(argv[2], "user.a", b"1")', [f]],
    ];
    for (const [what, expr, args] of refused) {
      if (what === 'punch a hole') {
        // fallocate(1) opens O_RDWR, which the flag refuses first; python's posix_fallocate cannot punch.
        t.match(run('fallocate', ['-p', '-o', '0', '-l', '4096', f]).out, /Operation not permitted/, `${what}: EPERM`);
        continue;
      }
      t.equal(py(expr, args), 'EPERM', `${what}: EPERM`);
    }
    t.equal(py('os.utime(argv[2])', [f]), 'ok', 'touch (times to now) is allowed');
    t.equal(fs.readFileSync(f, 'utf8'), 'one\ntwo\n', 'unchanged');
    run('chattr', ['-a', 'a'], { cwd: mnt });
    t.end();
  });

  t.test('a user who is not root', (t) => {
    const u = p('u');
    fs.mkdirSync(u);
    fs.chownSync(u, USER, USER);
    fs.writeFileSync(p('u/mine'), 'x');
    fs.chownSync(p('u/mine'), USER, USER);
    fs.writeFileSync(p('u/roots'), 'x');
    const chattr = (...args: string[]): string => run('chattr', args, { cwd: mnt, asUser: true }).out;
    t.equal(chattr('+d', 'u/mine'), '', 'the owner sets nodump');
    t.equal(lsattr('u/mine'), '------d--------------- u/mine');
    t.match(chattr('+i', 'u/mine'), /Operation not permitted/, 'the owner may not set immutable');
    t.match(chattr('+a', 'u/mine'), /Operation not permitted/, 'nor append-only');
    t.match(chattr('+d', 'u/roots'), /Operation not permitted/, 'not the owner: EPERM');
    run('chattr', ['+i', 'u/mine'], { cwd: mnt });
    t.match(chattr('-i', 'u/mine'), /Operation not permitted/, 'the owner may not clear immutable');
    t.equal(py('os.unlink(argv[2])', [p('u/mine')], true), 'EPERM', 'nor unlink the file');
    run('chattr', ['-i', 'u/mine'], { cwd: mnt });
    t.end();
  });

  t.test('noatime: a read leaves atime on a strictatime mount', (t) => {
    const f = p('n');
    fs.writeFileSync(f, 'read me');
    const old = new Date('2020-01-01T00:00:00Z');
    fs.utimesSync(f, old, old);
    run('chattr', ['+A', 'n'], { cwd: mnt });
    run('cat', [f]);
    t.equal(fs.statSync(f).atimeMs, old.getTime(), 'noatime: unchanged');
    run('chattr', ['-A', 'n'], { cwd: mnt });
    run('cat', [f]);
    t.ok(fs.statSync(f).atimeMs > old.getTime(), 'without it: updated');
    t.end();
  });

  t.test('copy_file_range', (t) => {
    const src = p('src');
    const fd = fs.openSync(src, 'w');
    fs.writeSync(fd, Buffer.alloc(1 << 20, 'a'), 0, 1 << 20, 0);
    fs.writeSync(fd, Buffer.alloc(65536, 'b'), 0, 65536, 4 << 20);
    fs.ftruncateSync(fd, 6 << 20);
    fs.closeSync(fd);
    const copy = (from: string, to: string, count: number, offIn = 0, offOut = 0): string =>
      py('os.copy_file_range(os.open(argv[2], os.O_RDONLY), os.open(argv[3], os.O_WRONLY | os.O_CREAT), int(argv[4]), int(argv[5]), int(argv[6]))',
        [from, to, String(count), String(offIn), String(offOut)]);
    // python's copy_file_range returns the count: print it.
    const count = (from: string, to: string, n: number, offIn = 0, offOut = 0): string =>
      run('python3', ['-c', 'import os, sys; a = sys.argv; print(os.copy_file_range(os.open(a[1], os.O_RDONLY), os.open(a[2], os.O_WRONLY | os.O_CREAT), int(a[3]), int(a[4]), int(a[5])))',
        from, to, String(n), String(offIn), String(offOut)]).out;
    let copied = 0;
    for (let i = 0; i < 10 && copied < (6 << 20); i++) copied += Number(count(src, p('dst'), (6 << 20) - copied, copied, copied));
    t.equal(copied, 6 << 20, 'every byte counted');
    t.ok(fs.readFileSync(p('dst')).equals(fs.readFileSync(src)), 'same bytes');
    t.equal(fs.statSync(p('dst')).blocks, fs.statSync(src).blocks, 'holes kept: the daemon copied it (a spliced copy fills them)');
    t.ok(fs.statSync(p('dst')).blocks < 4096, 'and the holes are there');
    t.equal(count(src, p('off'), 100, 1048570, 3), '100', 'offsets: 100 bytes');
    const off = fs.readFileSync(p('off'));
    t.equal(off.length, 103);
    t.equal(off.subarray(3).toString('latin1'), `${'a'.repeat(6)}${'\0'.repeat(94)}`, 'from the right place to the right place');
    t.equal(count(src, p('off'), 100, 6 << 20, 0), '0', 'at the end of the source: 0');
    t.equal(copy(src, src, 4096, 0, 2048), 'EINVAL', 'overlapping ranges of one file: EINVAL');
    t.equal(run('cp', ['--reflink=never', src, p('cp')]).status, 0, 'cp');
    t.ok(fs.readFileSync(p('cp')).equals(fs.readFileSync(src)), 'cp: same bytes');
    t.end();
  });

  t.test('unmounted, the image checks clean', (t) => {
    t.equal(run(RMAPFS, ['umount', mnt]).status, 0, 'unmounted');
    const c = run(RMAPFS, ['check', image]);
    t.equal(c.status, 0, `check: ${c.out}`);
    t.end();
  });
}
