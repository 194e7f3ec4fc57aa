/**
 * rmapfs_fuse (src/fuse/lowlevel.ts) end to end: bench/fuse-ll's in-memory
 * filesystem is served through the binding by a child process, and this
 * process uses the mount through the kernel. (Never the other way round:
 * a synchronous fs call from the serving JS thread would wait for itself.)
 *
 * Inode numbers start at 2^40 + 2, so st_ino and the file handles (the
 * memfs uses the inode number as handle) must get through as 64 bits.
 */
import t, { Test } from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import { FUSERMOUNT } from '../../src/fuse/lowlevel';

const SERVER = path.resolve(__dirname, '..', '..', 'bench', 'fuse-ll', 'main.js');
const FIRST_INO = 2 ** 40 + 2;

const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0
  && spawnSync('sh', ['-c', `command -v ${FUSERMOUNT}`]).status === 0;

if (!canMount) {
  t.plan(0, `skipped: needs root, /dev/fuse and ${FUSERMOUNT}`);
} else {
  // The binding as the daemon uses it (/dev/fuse polled by the event loop,
  // spinning 30 us before sleeping) and without the spin.
  for (const variant of ['ll', 'll-nospin']) {
    t.test(`served by ${variant}`, async (t) => suite(t, variant));
  }
}

function suite(t: Test, variant: string): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-fuse-ll-test-'));
  fs.chmodSync(dir, 0o755); // other uids must reach the mount (the uid/gid test)
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  let server: ChildProcess | null = null;
  let serverStderr = '';
  let exitCode: Promise<number | null> = Promise.resolve(null);

  t.teardown(() => {
    spawnSync(FUSERMOUNT, ['-uz', mnt]);
    if (server !== null && server.exitCode === null) server.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const py = (code: string, ...args: string[]): string =>
    execFileSync('python3', ['-c', code, ...args], { encoding: 'utf8' }).trim();

  t.before(async () => {
    const child = spawn(process.execPath, [SERVER, '--serve', variant, mnt, '--first-ino', String(FIRST_INO), '--allow-other'],
      { stdio: ['ignore', 'pipe', 'pipe'] });
    server = child;
    child.stderr.on('data', (d: Buffer) => { serverStderr += d.toString(); });
    exitCode = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => reject(new Error('the server did not mount within 10 s')), 10_000);
      child.on('exit', (code) => reject(new Error(`the server exited (${code}): ${serverStderr}`)));
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('ready\n')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  });

  t.test('the mount is there', async (t) => {
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt);
    t.ok(line, 'listed in mountinfo');
    t.match(line ?? '', / - fuse\.memfs fuse-ll-bench /, 'type fuse.memfs, source fuse-ll-bench');
    t.ok(fs.statSync(mnt).isDirectory(), 'root is a directory');
    t.equal(fs.statSync(mnt).ino, 1, 'root is inode 1');
  });

  t.test('create, write, read', async (t) => {
    const p = path.join(mnt, 'hello.txt');
    fs.writeFileSync(p, 'hello, low level\n', { flag: 'wx' });
    t.equal(fs.readFileSync(p, 'utf8'), 'hello, low level\n', 'read back');
    const st = fs.statSync(p, { bigint: true });
    t.equal(st.size, 17n, 'size');
    t.ok(st.isFile(), 'a regular file');
    t.ok(st.ino >= BigInt(FIRST_INO), `st_ino ${st.ino} is the 64-bit inode number`);
    t.throws(() => fs.writeFileSync(p, 'x', { flag: 'wx' }), { code: 'EEXIST' }, 'O_EXCL on an existing name');

    // Random access through one descriptor, past 4 GiB (64-bit offsets).
    const big = path.join(mnt, 'sparse');
    const fd = fs.openSync(big, 'w+');
    try {
      const chunk = Buffer.alloc(8192, 0xab);
      fs.writeSync(fd, chunk, 0, chunk.length, 100_000);
      fs.writeSync(fd, Buffer.from('tail'), 0, 4, 2 ** 20);
      const back = Buffer.alloc(8192);
      t.equal(fs.readSync(fd, back, 0, back.length, 100_000), 8192, 'full read');
      t.same(back, chunk, 'same bytes');
      t.equal(fs.fstatSync(fd).size, 2 ** 20 + 4, 'size after the last write');
      fs.ftruncateSync(fd, 10);
      t.equal(fs.fstatSync(fd).size, 10, 'ftruncate (setattr with a handle)');
    } finally {
      fs.closeSync(fd);
    }
    fs.unlinkSync(big);
  });

  t.test('fallocate', async (t) => {
    const p = path.join(mnt, 'falloc');
    fs.writeFileSync(p, '');
    py('import os,sys; fd=os.open(sys.argv[1], os.O_RDWR); os.posix_fallocate(fd, 0, 65536); os.close(fd)', p);
    t.equal(fs.statSync(p).size, 65536, 'posix_fallocate grew the file');
    fs.unlinkSync(p);
  });

  t.test('directories, rename, links', async (t) => {
    const d = path.join(mnt, 'd');
    fs.mkdirSync(d);
    fs.mkdirSync(path.join(d, 'sub'));
    fs.writeFileSync(path.join(d, 'a'), 'A');
    fs.writeFileSync(path.join(d, 'b'), 'B');
    fs.symlinkSync('a', path.join(d, 'link'));
    t.same(fs.readdirSync(d).sort(), ['a', 'b', 'link', 'sub'], 'readdir');
    t.equal(fs.readlinkSync(path.join(d, 'link')), 'a', 'readlink');
    t.equal(fs.readFileSync(path.join(d, 'link'), 'utf8'), 'A', 'through the symlink');
    fs.linkSync(path.join(d, 'a'), path.join(d, 'hard'));
    t.equal(fs.statSync(path.join(d, 'a')).nlink, 2, 'hard link counted');
    fs.renameSync(path.join(d, 'b'), path.join(d, 'sub', 'b2'));
    t.equal(fs.readFileSync(path.join(d, 'sub', 'b2'), 'utf8'), 'B', 'renamed across directories');
    t.throws(() => fs.rmdirSync(path.join(d, 'sub')), { code: 'ENOTEMPTY' }, 'rmdir of a non-empty directory');
    // renameat2's flags reach the filesystem (the memfs honours RENAME_NOREPLACE only, and answers
    // EINVAL for the others).
    const renameat2 = (from: string, to: string, flags: number): string => py(`
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
rc = libc.renameat2(AT_FDCWD, sys.argv[1].encode(), AT_FDCWD, sys.argv[2].encode(), int(sys.argv[3]))
print('ok' if rc == 0 else errno.errorcode[ctypes.get_errno()])
`, from, to, String(flags));
    t.equal(renameat2(path.join(d, 'a'), path.join(d, 'hard'), 1), 'EEXIST', 'RENAME_NOREPLACE onto an existing name: EEXIST (the VFS checks that itself)');
    t.equal(fs.readFileSync(path.join(d, 'hard'), 'utf8'), 'A', 'the target is still there');
    t.equal(renameat2(path.join(d, 'a'), path.join(d, 'link'), 2), 'EINVAL', 'RENAME_EXCHANGE: EINVAL from the filesystem');
    t.equal(renameat2(path.join(d, 'sub', 'b2'), path.join(d, 'b3'), 1), 'ok', 'RENAME_NOREPLACE onto a free name: renamed');
    fs.renameSync(path.join(d, 'b3'), path.join(d, 'sub', 'b2'));
    // Many entries: readdir must page through several requests.
    const many = path.join(mnt, 'many');
    fs.mkdirSync(many);
    const names = Array.from({ length: 600 }, (_, i) => `entry-with-a-longish-name-${i}`);
    for (const n of names) fs.writeFileSync(path.join(many, n), '');
    t.same(fs.readdirSync(many).sort(), [...names].sort(), 'all 600 entries listed');
    for (const n of names) fs.unlinkSync(path.join(many, n));
    fs.rmdirSync(many);
  });

  t.test('unlink', async (t) => {
    const p = path.join(mnt, 'hello.txt');
    fs.unlinkSync(p);
    t.notOk(fs.existsSync(p), 'gone');
    t.throws(() => fs.unlinkSync(p), { code: 'ENOENT' }, 'a second unlink is ENOENT');
    fs.rmSync(path.join(mnt, 'd'), { recursive: true });
    t.same(fs.readdirSync(mnt), [], 'the root is empty again');
  });

  t.test('extended attributes', async (t) => {
    const p = path.join(mnt, 'x');
    fs.writeFileSync(p, '');
    const out = py(`
import errno, os, sys
p = sys.argv[1]
os.setxattr(p, 'user.color', b'blue')
print(os.getxattr(p, 'user.color').decode())
print(','.join(sorted(os.listxattr(p))))
try:
    os.setxattr(p, 'user.color', b'red', os.XATTR_CREATE)
    print('no error')
except OSError as e:
    print(errno.errorcode[e.errno])
try:
    os.getxattr(p, 'user.none')
except OSError as e:
    print(errno.errorcode[e.errno])
os.removexattr(p, 'user.color')
print(len(os.listxattr(p)))
`, p);
    t.same(out.split('\n'), ['blue', 'user.color', 'EEXIST', 'ENODATA', '0'], 'set, get, list, create-only, missing, remove');
    fs.unlinkSync(p);
  });

  t.test("the caller's uid and gid reach the filesystem", async (t) => {
    const shared = path.join(mnt, 'shared');
    fs.mkdirSync(shared);
    fs.chmodSync(shared, 0o777);
    t.equal(fs.statSync(shared).mode & 0o777, 0o777, 'chmod (setattr)');
    const p = path.join(shared, 'mine');
    execFileSync('python3', ['-c', 'import os,sys; os.close(os.open(sys.argv[1], os.O_CREAT|os.O_WRONLY, 0o600))', p],
      { uid: 4321, gid: 8765 });
    const st = fs.statSync(p);
    t.equal(st.uid, 4321, 'owner is the caller');
    t.equal(st.gid, 8765, 'group is the caller');
    fs.rmSync(shared, { recursive: true });
  });

  t.test('statfs', async (t) => {
    const s = fs.statfsSync(mnt);
    t.equal(s.bsize, 4096, 'block size');
    t.equal(s.blocks, 1 << 20, 'blocks');
  });

  t.test('unmounting ends the server cleanly', async (t) => {
    execFileSync(FUSERMOUNT, ['-uz', mnt]);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>((resolve) => { timer = setTimeout(() => resolve('timeout'), 10_000); });
    const code = await Promise.race([exitCode, timeout]);
    clearTimeout(timer);
    t.equal(code, 0, 'the server exited with 0 once the kernel let go');
    t.equal(serverStderr, '', 'and said nothing on stderr');
  });
}
