/**
 * The TypeScript device classes (Device, DeviceTarget) on image files, with
 * O_DIRECT, and on a loop block device when losetup works.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import { RmapfsError } from '../../src/errors';
import { Device, DeviceTarget } from '../../src/io/device';

const MiB = 1024 * 1024;
const BS = 4096;

function caught(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rmapfs-tsdevice-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

function makeImage(name: string, size: number): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, Buffer.alloc(0));
  fs.truncateSync(p, size);
  return p;
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** Checks e is an RmapfsError with this code and a one-line message; returns it. */
function rmapfsError(t: Test, e: unknown, code: string, what: string): RmapfsError {
  t.ok(e instanceof RmapfsError, `${what}: an RmapfsError`);
  const re = e as RmapfsError;
  t.equal(re?.code, code, `${what}: ${code}`);
  t.equal(re?.errno, os.constants.errno[code as keyof typeof os.constants.errno], `${what}: errno of ${code}`);
  t.notMatch(re?.message ?? '', /\n|\.[jt]s:\d+:\d+/, `${what}: one line, no stack in the message`);
  return re;
}

t.test('missing path: ENOENT naming the path', async (t) => {
  const missing = path.join(dir, 'no-such-image');
  for (const options of [{}, { readOnly: true }, { direct: true }]) {
    const e = rmapfsError(t, caught(() => new Device(missing, options)), 'ENOENT', JSON.stringify(options));
    t.ok(e.message.includes(missing), `message names the path: ${e.message}`);
    t.match(e.message, /^cannot open .*: no such file or directory$/);
    t.equal(e.path, missing);
    t.equal(e.toLine(), `rmapfs: ${e.message}`);
  }
});

t.test('a directory is refused', async (t) => {
  const fds = openFds();
  const rw = rmapfsError(t, caught(() => new Device(dir)), 'EISDIR', 'read-write');
  t.ok(rw.message.includes(dir), 'names the directory');
  const ro = rmapfsError(t, caught(() => new Device(dir, { readOnly: true })), 'EINVAL', 'read-only');
  t.equal(ro.message, `${dir} is neither a block device nor a regular file`);
  t.equal(ro.path, dir);
  t.equal(openFds(), fds, 'no descriptor leaked by the failed opens');
});

t.test('image file: size, round trip, short read, past the end, read-only', async (t) => {
  const size = 3 * MiB + 100;
  const img = makeImage('a.img', size);
  const dev = new Device(img);
  t.teardown(() => dev.close());
  t.equal(dev.size, size, 'size is the file size');
  t.equal(dev.isBlockDevice, false);
  t.equal(dev.sectorSize, 512);
  t.equal(dev.readOnly, false);
  t.equal(dev.direct, false);
  t.equal(dev.path, img);

  const src = randomBytes(10000);
  dev.write(12345, src, 1000, 8000);
  const back = Buffer.alloc(9000, 0x55);
  dev.read(12345, back, 500, 8000);
  t.ok(back.subarray(500, 8500).equals(src.subarray(1000, 9000)), 'unaligned round trip');
  t.equal(back[499], 0x55, 'byte before the range untouched');
  t.equal(back[8500], 0x55, 'byte after the range untouched');
  t.ok(fs.readFileSync(img).subarray(12345, 20345).equals(src.subarray(1000, 9000)), 'visible in the file');
  dev.write(size - 10, src, 0, 10);
  dev.read(size - 10, back, 0, 10);
  t.ok(back.subarray(0, 10).equals(src.subarray(0, 10)), 'the last bytes of the device round-trip');
  dev.sync();
  t.pass('sync works');

  const short = rmapfsError(t, caught(() => dev.read(size - 100, back, 0, BS)), 'EIO', 'read across the end');
  t.match(short.message, /short read of 100 of 4096 bytes/);
  t.ok(short.message.includes(img), 'names the image');
  t.equal(short.path, img);
  const beyond = rmapfsError(t, caught(() => dev.read(size + MiB, back, 0, BS)), 'EIO', 'read beyond the end');
  t.match(beyond.message, /short read of 0 of 4096 bytes/);

  const past = rmapfsError(t, caught(() => dev.write(size - 100, src, 0, 101)), 'EIO', 'write across the end');
  t.match(past.message, /past the end/);
  t.equal(fs.statSync(img).size, size, 'a refused write does not grow the image');

  const ro = new Device(img, { readOnly: true });
  t.teardown(() => ro.close());
  t.equal(ro.readOnly, true);
  ro.read(12345, back, 0, 8000);
  t.ok(back.subarray(0, 8000).equals(src.subarray(1000, 9000)), 'a read-only device reads');
  const rofs = rmapfsError(t, caught(() => ro.write(0, src, 0, 10)), 'EROFS', 'write to a read-only device');
  t.ok(rofs.message.includes(img));
  t.ok(fs.readFileSync(img).subarray(0, 10).equals(Buffer.alloc(10)), 'nothing was written');

  dev.close();
  dev.close();
  t.pass('closing twice is fine');
  for (const [name, fn] of [
    ['read', () => dev.read(0, back, 0, 10)],
    ['write', () => dev.write(0, src, 0, 10)],
    ['sync', () => dev.sync()],
  ] as Array<[string, () => unknown]>) {
    rmapfsError(t, caught(fn), 'EBADF', `${name} after close`);
  }
});

t.test('DeviceTarget', async (t) => {
  const img = makeImage('target.img', 10 * BS + 100);
  const target = new DeviceTarget(new Device(img));
  t.teardown(() => target.close());
  t.equal(target.name, img);
  t.equal(target.blockSize, BS);
  t.equal(target.blockCount, 10, 'a partial last block does not count');
  t.equal(target.checksummed, true, 'device blocks carry a checksum');

  const blocks = randomBytes(3 * BS);
  target.writeBlocks(8, 2, blocks, BS);
  const back = Buffer.alloc(3 * BS);
  target.readBlocks(8, 2, back, BS);
  t.ok(back.subarray(BS).equals(blocks.subarray(BS)), 'the last two blocks round-trip');
  t.ok(fs.readFileSync(img).subarray(8 * BS, 10 * BS).equals(blocks.subarray(BS)), 'at the right place in the image');
  target.flush();
  t.pass('flush (fdatasync) works');

  const outside: Array<[string, () => unknown]> = [
    ['read at blockCount', () => target.readBlocks(10, 1, back, 0)],
    ['read across the end', () => target.readBlocks(9, 2, back, 0)],
    ['read of block -1', () => target.readBlocks(-1, 1, back, 0)],
    ['read of zero blocks', () => target.readBlocks(0, 0, back, 0)],
    ['read of a fractional block', () => target.readBlocks(1.5, 1, back, 0)],
    ['write at blockCount', () => target.writeBlocks(10, 1, blocks, 0)],
    ['write far away', () => target.writeBlocks(1e9, 1, blocks, 0)],
  ];
  for (const [what, fn] of outside) {
    const e = rmapfsError(t, caught(fn), 'EIO', what);
    t.match(e.message, /is outside the device \(10 blocks\)/, `${what}: says why`);
    t.equal(e.path, img);
  }
  t.equal(fs.statSync(img).size, 10 * BS + 100, 'the image did not grow');
});

t.test('O_DIRECT through the bounce buffer', async (t) => {
  const img = makeImage('direct.img', 4 * MiB);
  let dev: Device;
  try {
    dev = new Device(img, { direct: true });
  } catch (e) {
    if (e instanceof RmapfsError && e.code === 'EINVAL') {
      t.pass('O_DIRECT round trip', { skip: `the filesystem under ${dir} refuses O_DIRECT` });
      return;
    }
    throw e;
  }
  t.teardown(() => dev.close());
  t.equal(dev.direct, true);

  // Caller buffers at odd offsets: O_DIRECT itself would refuse them.
  const src = randomBytes(2 * BS + 7);
  dev.write(BS, src, 7, 2 * BS);
  const dst = Buffer.alloc(2 * BS + 5, 0xee);
  dev.read(BS, dst, 5, 2 * BS);
  t.ok(dst.subarray(5).equals(src.subarray(7)), 'unaligned caller buffers round-trip');
  t.same([...dst.subarray(0, 5)], [0xee, 0xee, 0xee, 0xee, 0xee], 'bytes before the range untouched');
  t.ok(fs.readFileSync(img).subarray(BS, 3 * BS).equals(src.subarray(7)), 'on disk');

  // More than the initial 1 MiB bounce buffer.
  const big = randomBytes(2 * MiB + 3);
  dev.write(MiB, big, 3, 2 * MiB);
  const bigBack = Buffer.alloc(2 * MiB + 1);
  dev.read(MiB, bigBack, 1, 2 * MiB);
  t.ok(bigBack.subarray(1).equals(big.subarray(3)), 'a 2 MiB transfer grows the bounce buffer');
  // And a small one afterwards still copies only its own bytes.
  const small = Buffer.alloc(512 + 1, 0xcc);
  dev.read(BS, small, 1, 512);
  t.ok(small.subarray(1).equals(src.subarray(7, 7 + 512)), 'a small read after a big one');
  t.equal(small[0], 0xcc);

  const short = rmapfsError(t, caught(() => dev.read(4 * MiB - BS, Buffer.alloc(2 * BS), 0, 2 * BS)), 'EIO', 'direct read across the end');
  t.match(short.message, /short read of 4096 of 8192 bytes/);
  dev.sync();
  t.pass('sync works with O_DIRECT');
});

t.test('loop block device: size, exclusive open', async (t) => {
  const img = makeImage('loop.img', 8 * MiB);
  let loop: string;
  try {
    loop = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  } catch (e) {
    t.pass('loop device tests', { skip: `cannot set up a loop device (${(e as Error).message.split('\n')[0]})` });
    return;
  }
  const opened: Device[] = [];
  t.teardown(() => {
    for (const d of opened) d.close();
    execFileSync('losetup', ['-d', loop], { stdio: 'ignore' });
  });

  const dev = new Device(loop);
  opened.push(dev);
  t.equal(dev.isBlockDevice, true, `${loop} is a block device`);
  t.equal(dev.size, 8 * MiB, 'size of the block device');
  t.equal(dev.sectorSize, 512);
  const target = new DeviceTarget(dev);
  t.equal(target.blockCount, 2048);

  const busy = rmapfsError(t, caught(() => opened.push(new Device(loop))), 'EBUSY', 'second open while the first is open');
  t.ok(busy.message.includes(loop), `names the device: ${busy.message}`);
  t.equal(opened.length, 1, 'the second Device was not created');

  const data = randomBytes(BS);
  target.writeBlocks(100, 1, data, 0);
  target.flush();
  const back = Buffer.alloc(BS);
  target.readBlocks(100, 1, back, 0);
  t.ok(back.equals(data), 'block device round trip');
  rmapfsError(t, caught(() => target.readBlocks(2048, 1, back, 0)), 'EIO', 'block past the end of the loop device');

  dev.close();
  const again = new Device(loop);
  opened.push(again);
  t.pass('a second Device opens once the first is closed');
  const readBack = Buffer.alloc(BS);
  again.read(100 * BS, readBack, 0, BS);
  t.ok(readBack.equals(data), 'the data is there');
});
