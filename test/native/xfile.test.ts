import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { native, isNativeError, NativeError } from '../../src/native';
import { caught } from '../lib/caught';

const PAGE = 4096;


function page(fill: number): Buffer {
  const b = Buffer.alloc(PAGE);
  for (let i = 0; i < PAGE; i++) b[i] = (fill + i * 7) & 0xff;
  return b;
}

/** Where /proc says the fd points, e.g. "/tmp/#1234 (deleted)" or "/memfd:x (deleted)". */
function fdTarget(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

const kinds: Array<['memfd' | 'tmpfile', boolean]> = [['memfd', false], ['tmpfile', true]];

t.test('memfd by default', async (t) => {
  const h = native.xfileCreate('rmapfs-test', null, false);
  t.teardown(() => native.close(h.fd));
  t.equal(h.kind, 'memfd');
  t.ok(Number.isInteger(h.fd) && h.fd >= 0, 'fd is a descriptor');
  t.match(fdTarget(h.fd), /^\/memfd:rmapfs-test/, 'fd is a memfd');
  const info = native.fdInfo(h.fd);
  t.equal(info.isRegularFile, true);
  t.equal(info.isBlockDevice, false);
  t.equal(info.size, 0);
  t.equal(info.sectorSize, 512);
  // close-on-exec is set
  const flags = fs.readFileSync(`/proc/self/fdinfo/${h.fd}`, 'utf8').match(/^flags:\s+(\d+)/m);
  t.ok(flags && (parseInt(flags[1], 8) & 0o2000000) !== 0, 'O_CLOEXEC is set');
});

t.test('forceTmpfile gives an O_TMPFILE file in the directory', async (t) => {
  const dir = fs.realpathSync(os.tmpdir());
  const h = native.xfileCreate('ignored', dir, true);
  t.teardown(() => native.close(h.fd));
  t.equal(h.kind, 'tmpfile');
  const target = fdTarget(h.fd);
  t.ok(target.startsWith(dir + '/'), `${target} is in ${dir}`);
  t.match(target, /\(deleted\)$/, 'anonymous (never linked)');
  t.equal(native.fdInfo(h.fd).isRegularFile, true);
});

t.test('forceTmpfile with no dir uses $TMPDIR', async (t) => {
  const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-xfile-')));
  const saved = process.env.TMPDIR;
  t.teardown(() => {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });
  process.env.TMPDIR = dir;
  const h = native.xfileCreate('x', null, true);
  const target = fdTarget(h.fd);
  native.close(h.fd);
  t.equal(h.kind, 'tmpfile');
  t.ok(target.startsWith(dir + '/'), `${target} is in $TMPDIR=${dir}`);
});

t.test('falls back to O_TMPFILE when memfd_create fails', async (t) => {
  // memfd_create refuses names longer than 249 bytes (EINVAL).
  const dir = fs.realpathSync(os.tmpdir());
  const h = native.xfileCreate('n'.repeat(300), dir, false);
  t.teardown(() => native.close(h.fd));
  t.equal(h.kind, 'tmpfile');
  t.ok(fdTarget(h.fd).startsWith(dir + '/'), 'in the given directory');
});

t.test('tmpfile fallback in a missing directory throws ENOENT with the path', async (t) => {
  const bad = path.join(os.tmpdir(), 'rmapfs-no-such-dir-' + process.pid, 'deeper');
  const e = caught(() => native.xfileCreate('x', bad, true));
  t.ok(isNativeError(e), 'a native error');
  const ne = e as NativeError;
  t.equal(ne.code, 'ENOENT');
  t.equal(ne.errno, os.constants.errno.ENOENT);
  t.equal(ne.syscall, 'open');
  t.equal(ne.path, bad);
  t.equal(ne.message, `ENOENT: no such file or directory, open '${bad}'`);
  // The directory does not matter when memfd_create works.
  const h = native.xfileCreate('x', bad, false);
  t.equal(h.kind, 'memfd', 'memfd ignores dir');
  native.close(h.fd);
});

t.test('tmpfile in a directory that is a file throws ENOTDIR', async (t) => {
  const file = path.join(os.tmpdir(), `rmapfs-xfile-notdir-${process.pid}`);
  fs.writeFileSync(file, '');
  t.teardown(() => fs.rmSync(file, { force: true }));
  const e = caught(() => native.xfileCreate('x', file, true));
  t.ok(isNativeError(e));
  t.equal((e as NativeError).code, 'ENOTDIR');
  t.equal((e as NativeError).path, file);
});

for (const [kind, force] of kinds) {
  t.test(`${kind}: pages, EOF, ftruncate, punchHole`, async (t) => {
    const h = native.xfileCreate(`rmapfs-${kind}`, os.tmpdir(), force);
    t.teardown(() => native.close(h.fd));
    t.equal(h.kind, kind);
    const fd = h.fd;

    t.test('whole pages at offsets round-trip', async (t) => {
      const pages = [0, 5, 100, 3];
      for (const p of pages) {
        t.equal(native.pwrite(fd, page(p), 0, PAGE, p * PAGE), PAGE, `wrote page ${p}`);
      }
      t.equal(native.fdInfo(fd).size, 101 * PAGE, 'size follows the last page');
      for (const p of pages) {
        const got = Buffer.alloc(PAGE);
        t.equal(native.pread(fd, got, 0, PAGE, p * PAGE), PAGE);
        t.same(got, page(p), `page ${p} reads back`);
      }
      const hole = Buffer.alloc(PAGE, 0xaa);
      t.equal(native.pread(fd, hole, 0, PAGE, 50 * PAGE), PAGE);
      t.ok(hole.every((b) => b === 0), 'an unwritten page reads as zeros');
      // Several pages in one call, into the middle of a larger buffer.
      const big = Buffer.alloc(PAGE * 3 + 10, 0xee);
      t.equal(native.pread(fd, big, 5, PAGE * 3, 3 * PAGE), PAGE * 3);
      t.same(big.subarray(5, 5 + PAGE), page(3), 'multi-page read, first page');
      t.ok(big.subarray(5 + PAGE, 5 + 2 * PAGE).every((b) => b === 0), 'multi-page read, hole at page 4');
      t.same(big.subarray(5 + 2 * PAGE, 5 + 3 * PAGE), page(5), 'multi-page read, page 5');
      t.equal(big[4], 0xee, 'byte before the range untouched');
      t.equal(big[5 + 3 * PAGE], 0xee, 'byte after the range untouched');
    });

    t.test('reading past EOF returns a short count', async (t) => {
      const size = native.fdInfo(fd).size;
      const buf = Buffer.alloc(PAGE);
      t.equal(native.pread(fd, buf, 0, PAGE, size - 100), 100, 'short read at EOF');
      t.equal(native.pread(fd, buf, 0, PAGE, size), 0, 'read at EOF is 0');
      t.equal(native.pread(fd, buf, 0, PAGE, size + 10 * PAGE), 0, 'read beyond EOF is 0');
      t.equal(native.pread(fd, buf, 0, 0, 0), 0, 'zero-length read');
    });

    t.test('ftruncate', async (t) => {
      native.ftruncate(fd, PAGE);
      t.equal(native.fdInfo(fd).size, PAGE, 'shrunk');
      const buf = Buffer.alloc(PAGE);
      t.equal(native.pread(fd, buf, 0, PAGE, PAGE), 0, 'nothing past the new end');
      t.equal(native.pread(fd, buf, 0, PAGE, 0), PAGE);
      t.same(buf, page(0), 'data before the cut survives');
      native.ftruncate(fd, 16 * PAGE);
      t.equal(native.fdInfo(fd).size, 16 * PAGE, 'grown');
      t.equal(native.pread(fd, buf, 0, PAGE, 5 * PAGE), PAGE);
      t.ok(buf.every((b) => b === 0), 'old page 5 is gone: grown area reads zeros');
      native.ftruncate(fd, 0);
      t.equal(native.fdInfo(fd).size, 0, 'emptied');
    });

    t.test('punchHole releases storage', async (t) => {
      const N = 256;
      const chunk = Buffer.alloc(N * PAGE);
      for (let p = 0; p < N; p++) page(p).copy(chunk, p * PAGE);
      t.equal(native.pwrite(fd, chunk, 0, chunk.length, 0), chunk.length);
      native.fdatasync(fd);
      const before = native.fdInfo(fd);
      t.ok(before.bytesHeld >= N * PAGE, `bytesHeld ${before.bytesHeld} >= ${N * PAGE}`);

      native.punchHole(fd, 8 * PAGE, 240 * PAGE);
      const after = native.fdInfo(fd);
      t.equal(after.size, N * PAGE, 'KEEP_SIZE: size unchanged');
      t.ok(before.bytesHeld - after.bytesHeld >= 200 * PAGE,
        `bytesHeld dropped from ${before.bytesHeld} to ${after.bytesHeld}`);

      const buf = Buffer.alloc(PAGE);
      for (const p of [8, 9, 100, 247]) {
        t.equal(native.pread(fd, buf, 0, PAGE, p * PAGE), PAGE);
        t.ok(buf.every((b) => b === 0), `punched page ${p} reads zeros`);
      }
      for (const p of [0, 7, 248, 255]) {
        t.equal(native.pread(fd, buf, 0, PAGE, p * PAGE), PAGE);
        t.same(buf, page(p), `page ${p} outside the hole is intact`);
      }
    });
  });
}

t.test('bad arguments', async (t) => {
  t.ok(caught(() => native.xfileCreate(42 as unknown as string, null, false)) instanceof TypeError, 'name must be a string');
  t.ok(caught(() => native.xfileCreate('x', 7 as unknown as string, true)) instanceof TypeError, 'dir must be a string or null');
  t.ok(caught(() => native.xfileCreate('x', '/tmp\0/x', true)) instanceof TypeError, 'dir must not contain NUL');
  t.ok(caught(() => native.xfileCreate('x', null, 'yes' as unknown as boolean)) instanceof TypeError, 'forceTmpfile must be a boolean');
  const h = native.xfileCreate('x', null, false);
  t.teardown(() => native.close(h.fd));
  const e = caught(() => native.punchHole(h.fd, 0, 0));
  t.ok(isNativeError(e), 'zero-length punchHole is passed to the kernel and fails');
  t.equal((e as NativeError).code, 'EINVAL');
  t.equal((e as NativeError).syscall, 'fallocate');
  t.ok(caught(() => native.ftruncate(h.fd, -1)) instanceof RangeError, 'negative size');
  t.ok(caught(() => native.punchHole(h.fd, -4096, 4096)) instanceof RangeError, 'negative offset');
});
