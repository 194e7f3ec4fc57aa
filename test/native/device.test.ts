import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { native, isNativeError, NativeError } from '../../src/native';
import { caught } from '../lib/caught';

const MiB = 1024 * 1024;


const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-device-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function makeImage(name: string, size: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, size);
  return p;
}

t.test('missing path: ENOENT with the path', async (t) => {
  const missing = path.join(dir, 'no-such-image');
  for (const options of [{}, { readOnly: true }, { exclusive: true }, { direct: true }]) {
    const e = caught(() => native.deviceOpen(missing, options));
    t.ok(isNativeError(e), `native error for ${JSON.stringify(options)}`);
    const ne = e as NativeError;
    t.equal(ne.code, 'ENOENT');
    t.equal(ne.errno, os.constants.errno.ENOENT);
    t.equal(ne.syscall, 'open');
    t.equal(ne.path, missing);
    t.equal(ne.message, `ENOENT: no such file or directory, open '${missing}'`);
  }
});

t.test('image file: fdInfo, round trip, EOF, fdatasync', async (t) => {
  const img = makeImage('a.img', 4 * MiB);
  const fd = native.deviceOpen(img, {});
  t.teardown(() => native.close(fd));

  const info = native.fdInfo(fd);
  t.equal(info.isRegularFile, true);
  t.equal(info.isBlockDevice, false);
  t.equal(info.size, 4 * MiB, 'size is st_size');
  t.equal(info.sectorSize, 512);
  t.ok(info.bytesHeld < info.size, `sparse image holds ${info.bytesHeld} bytes`);

  const src = randomBytes(20000);
  t.equal(native.pwrite(fd, src, 1000, 10000, 12345), 10000, 'pwrite returns the length');
  const back = Buffer.alloc(12000, 0x55);
  t.equal(native.pread(fd, back, 1000, 10000, 12345), 10000, 'pread returns the length');
  t.same(back.subarray(1000, 11000), src.subarray(1000, 11000), 'data round-trips');
  t.equal(back[999], 0x55, 'bytes before the range untouched');
  t.equal(back[11000], 0x55, 'bytes after the range untouched');
  t.same(fs.readFileSync(img).subarray(12345, 22345), src.subarray(1000, 11000), 'visible through fs too');

  const buf = Buffer.alloc(4096);
  t.equal(native.pread(fd, buf, 0, 4096, 4 * MiB - 1000), 1000, 'short read at the end');
  t.equal(native.pread(fd, buf, 0, 4096, 4 * MiB), 0, 'read at the end returns 0');

  native.fdatasync(fd);
  t.pass('fdatasync works');

  // A position beyond 2^32 (sparse, so cheap).
  const far = 2 ** 32 + 5;
  t.equal(native.pwrite(fd, Buffer.from('far!'), 0, 4, far), 4);
  const farBack = Buffer.alloc(4);
  t.equal(native.pread(fd, farBack, 0, 4, far), 4);
  t.equal(farBack.toString(), 'far!', '64-bit positions work');
  t.equal(native.fdInfo(fd).size, far + 4);
  native.ftruncate(fd, 4 * MiB);
});

t.test('readOnly: reads work, pwrite throws EBADF', async (t) => {
  const img = makeImage('ro.img', MiB);
  fs.writeFileSync(img, Buffer.from('hello'), { flag: 'r+' });
  const fd = native.deviceOpen(img, { readOnly: true });
  t.teardown(() => native.close(fd));
  const buf = Buffer.alloc(5);
  t.equal(native.pread(fd, buf, 0, 5, 0), 5);
  t.equal(buf.toString(), 'hello');
  const e = caught(() => native.pwrite(fd, Buffer.from('x'), 0, 1, 0));
  t.ok(isNativeError(e), 'native error');
  t.equal((e as NativeError).code, 'EBADF');
  t.equal((e as NativeError).syscall, 'pwrite');
  t.equal((e as NativeError).path, undefined, 'no path for an fd operation');
  t.match((e as NativeError).message, /^EBADF: bad file descriptor, pwrite$/);
});

t.test('O_DIRECT with alignedBuffer', async (t) => {
  const img = makeImage('direct.img', MiB);
  let fd: number;
  try {
    fd = native.deviceOpen(img, { direct: true });
  } catch (e) {
    if (isNativeError(e) && e.code === 'EINVAL') {
      t.pass('O_DIRECT round trip', { skip: `O_DIRECT is not supported by the filesystem under ${dir}` });
      return;
    }
    throw e;
  }
  t.teardown(() => native.close(fd));
  const out = native.alignedBuffer(8192, 4096);
  for (let i = 0; i < out.length; i++) out[i] = (i * 13) & 0xff;
  t.equal(native.pwrite(fd, out, 0, 8192, 4096), 8192, 'aligned direct write');
  const back = native.alignedBuffer(8192, 4096);
  t.equal(native.pread(fd, back, 0, 8192, 4096), 8192, 'aligned direct read');
  t.same(back, out, 'direct round trip');
  t.equal(native.pread(fd, back, 0, 4096, MiB), 0, 'direct read at the end returns 0');

  // O_DIRECT really is set on the descriptor.
  const flags = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8').match(/^flags:\s+(\d+)/m);
  t.ok(flags && (parseInt(flags[1], 8) & fs.constants.O_DIRECT) !== 0, 'O_DIRECT is set on the fd');
  // Most filesystems refuse a file position that is not sector-aligned;
  // some (tmpfs since Linux 6.6) accept anything.
  const e = caught(() => native.pread(fd, back, 0, 4096, 1));
  if (e === undefined) {
    t.comment(`the filesystem under ${dir} accepts unaligned O_DIRECT reads`);
  } else {
    t.equal((e as NativeError).code, 'EINVAL', 'misaligned direct read fails with EINVAL');
  }
});

t.test('alignedBuffer', async (t) => {
  for (const [size, align] of [[4096, 4096], [1, 512], [0, 4096], [100000, 65536], [8, 8]]) {
    const b = native.alignedBuffer(size, align);
    t.ok(Buffer.isBuffer(b), 'is a Buffer');
    t.equal(b.length, size, `length ${size}`);
    t.ok(b.every((x) => x === 0), 'zeroed');
    b.fill(0xab); // writable
  }
  for (const [size, align] of [[4096, 0], [4096, 3], [4096, 4], [4096, 4097], [-1, 4096], [4096, 2 ** 31], [2 ** 33, 4096]]) {
    t.ok(caught(() => native.alignedBuffer(size, align)) instanceof RangeError,
      `alignedBuffer(${size}, ${align}) throws RangeError`);
  }
  t.ok(caught(() => native.alignedBuffer('1' as unknown as number, 4096)) instanceof TypeError, 'string size');
  // Lots of them, so the finalizer runs (and must not crash).
  for (let i = 0; i < 500; i++) native.alignedBuffer(65536, 4096);
  t.pass('allocated and dropped 500 buffers');
});

t.test('close, then pread throws EBADF', async (t) => {
  const img = makeImage('closed.img', MiB);
  const fd = native.deviceOpen(img, {});
  native.close(fd);
  const e = caught(() => native.pread(fd, Buffer.alloc(16), 0, 16, 0));
  t.ok(isNativeError(e), 'native error');
  t.equal((e as NativeError).code, 'EBADF');
  t.equal((e as NativeError).syscall, 'pread');
  const e2 = caught(() => native.close(fd));
  t.equal((e2 as NativeError).code, 'EBADF', 'closing twice: EBADF');
  t.equal((e2 as NativeError).syscall, 'close');
  t.equal((caught(() => native.fdInfo(fd)) as NativeError).code, 'EBADF', 'fdInfo on a closed fd');
});

t.test('errors surface with their code: a directory', async (t) => {
  const fd = native.deviceOpen(dir, { readOnly: true });
  t.teardown(() => native.close(fd));
  const info = native.fdInfo(fd);
  t.equal(info.isRegularFile, false);
  t.equal(info.isBlockDevice, false);
  const e = caught(() => native.pread(fd, Buffer.alloc(512), 0, 512, 0));
  t.ok(isNativeError(e), 'native error');
  t.equal((e as NativeError).code, 'EISDIR');
  t.equal((e as NativeError).errno, os.constants.errno.EISDIR);
  t.equal((e as NativeError).syscall, 'pread');
  t.equal((e as NativeError).message, 'EISDIR: is a directory, pread');
  const e2 = caught(() => native.deviceOpen(dir, {}));
  t.equal((e2 as NativeError).code, 'EISDIR', 'opening a directory read-write fails');
  t.equal((e2 as NativeError).path, dir);
});

t.test('bad arguments throw instead of aborting', async (t) => {
  const img = makeImage('args.img', MiB);
  const fd = native.deviceOpen(img, {});
  t.teardown(() => native.close(fd));
  const buf = Buffer.alloc(64);
  const ranges: Array<[string, () => unknown]> = [
    ['negative position', () => native.pread(fd, buf, 0, 8, -1)],
    ['fractional position', () => native.pwrite(fd, buf, 0, 8, 1.5)],
    ['position beyond 2^53', () => native.pread(fd, buf, 0, 8, 2 ** 53)],
    ['NaN position', () => native.pread(fd, buf, 0, 8, NaN)],
    ['offset beyond buffer', () => native.pread(fd, buf, 65, 0, 0)],
    ['offset + length beyond buffer', () => native.pwrite(fd, buf, 60, 5, 0)],
    ['length beyond buffer', () => native.pread(fd, buf, 0, 65, 0)],
    ['negative length', () => native.pread(fd, buf, 0, -1, 0)],
    ['negative offset', () => native.pwrite(fd, buf, -1, 8, 0)],
    ['negative fd', () => native.pread(-1, buf, 0, 8, 0)],
    ['huge fd', () => native.fdInfo(2 ** 31)],
  ];
  for (const [name, fn] of ranges) t.ok(caught(fn) instanceof RangeError, `${name}: RangeError`);
  const types: Array<[string, () => unknown]> = [
    ['buffer is a string', () => native.pread(fd, 'abc' as unknown as Buffer, 0, 1, 0)],
    ['position is a bigint', () => native.pread(fd, buf, 0, 1, 1n as unknown as number)],
    ['fd is a string', () => native.fdatasync('3' as unknown as number)],
    ['path is not a string', () => native.deviceOpen(3 as unknown as string, {})],
    ['options is a string', () => native.deviceOpen(img, 'r' as unknown as object)],
    ['options.direct is a string', () => native.deviceOpen(img, { direct: 'yes' as unknown as boolean })],
    ['path with a NUL byte', () => native.deviceOpen(img + '\0x', {})],
  ];
  for (const [name, fn] of types) t.ok(caught(fn) instanceof TypeError, `${name}: TypeError`);
  t.equal(native.pwrite(fd, buf, 64, 0, 0), 0, 'zero bytes at the very end of the buffer is fine');
});

t.test('loop block device: BLKGETSIZE64, BLKSSZGET, exclusive claim', async (t) => {
  const img = makeImage('loop.img', 8 * MiB);
  let dev: string;
  try {
    dev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    t.pass('loop device tests', { skip: `cannot set up a loop device (${(e as Error).message.split('\n')[0]})` });
    return;
  }
  const fds: number[] = [];
  t.teardown(() => {
    for (const fd of fds) {
      try {
        native.close(fd);
      } catch {
        // already closed
      }
    }
    execFileSync('losetup', ['-d', dev], { stdio: 'ignore' });
  });

  const fd = native.deviceOpen(dev, { exclusive: true });
  fds.push(fd);
  const info = native.fdInfo(fd);
  t.equal(info.isBlockDevice, true, `${dev} is a block device`);
  t.equal(info.isRegularFile, false);
  t.equal(info.size, 8 * MiB, 'size from BLKGETSIZE64');
  t.equal(info.sectorSize, 512, 'sector size from BLKSSZGET');

  const e = caught(() => native.deviceOpen(dev, { exclusive: true }));
  t.ok(isNativeError(e), 'second exclusive open fails');
  t.equal((e as NativeError).code, 'EBUSY');
  t.equal((e as NativeError).path, dev);

  const shared = native.deviceOpen(dev, { readOnly: true });
  fds.push(shared);
  t.pass('a non-exclusive open still works');

  const data = randomBytes(4096);
  t.equal(native.pwrite(fd, data, 0, 4096, MiB), 4096);
  native.fdatasync(fd);
  const back = Buffer.alloc(4096);
  t.equal(native.pread(fd, back, 0, 4096, MiB), 4096);
  t.same(back, data, 'block device round trip');
  t.equal(native.pread(fd, back, 0, 4096, 8 * MiB - 512), 512, 'short read at the end of the device');

  native.close(fd);
  fds.splice(fds.indexOf(fd), 1);
  const again = native.deviceOpen(dev, { exclusive: true });
  fds.push(again);
  t.pass('exclusive open works again once the first claim is closed');
});
