/**
 * The kernel's writeback cache (-o writeback_cache; issue 14) through real mounts of the daemon (`rmapfs mount -f` as a child
 * process, so a test can kill -9 it). With the cache the kernel keeps writes
 * in the page cache and owns a cached file's size, mtime and ctime; the
 * daemon sees writes late, in batches, possibly from another open of the
 * file, reads for write-only opens, and a SETATTR carrying the kernel's
 * times, and it sends lseek's SEEK_DATA/SEEK_HOLE without writing back.
 * What must hold is what ext4 gives: size and times right for every reader
 * and after a remount, fsync'd (and O_DSYNC, msync'd) data durable, O_APPEND
 * appending, SEEK_DATA finding data still in the page cache, an unlinked
 * file's space back after its close, and a writer filling the filesystem
 * stopped by ENOSPC from write(2) -- which with the cache can only come from
 * the GETATTR the kernel asks before a write once a writeback has failed.
 */
import t from 'tap';
import type { Test } from 'tap';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'child_process';
import { FUSERMOUNT } from '../../src/fuse/lowlevel';
import { scratchImage } from '../lib/fs';
import { scratchPath } from '../lib/trees';

/** The checkout's command, from dist/test/fuse (test/run) or test/fuse (tap on the source). */
const RMAPFS = [path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs'), path.resolve(__dirname, '..', '..', 'bin', 'rmapfs')]
  .find((p) => fs.existsSync(p)) ?? 'rmapfs';

const canMount = fs.existsSync('/dev/fuse') && process.getuid?.() === 0
  && spawnSync('sh', ['-c', `command -v ${FUSERMOUNT} && command -v python3`]).status === 0;

/** A daemon serving one image at one mountpoint: `rmapfs mount -f` as a child of this process. */
class Mounted {
  private constructor(readonly mnt: string, private readonly child: ChildProcess, private readonly exited: Promise<void>) {}

  static async start(t: Test, image: string, mnt: string, options = 'rw'): Promise<Mounted> {
    const child = spawn(process.execPath, [RMAPFS, 'mount', '-f', '-o', `writeback_cache,${options}`, image, mnt], { stdio: ['ignore', 'ignore', 'pipe'] });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    // Whatever happens to the test, the mount goes and the daemon with it.
    t.teardown(async () => {
      spawnSync(FUSERMOUNT, ['-uz', mnt]);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    });
    let stderr = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no mount within 20 s: ${stderr}`)), 20_000);
      child.once('exit', (code) => reject(new Error(`the daemon exited (${code}): ${stderr}`)));
      child.stderr!.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes(' mounted on ')) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    return new Mounted(mnt, child, exited);
  }

  /** `rmapfs umount` (waits until everything is on disk), then the daemon's exit. */
  async unmount(): Promise<void> {
    execFileSync(process.execPath, [RMAPFS, 'umount', this.mnt]);
    await this.exited;
  }

  /** The daemon dies (kill -9): what it has not forced to the log is lost. */
  async crash(): Promise<void> {
    this.child.kill('SIGKILL');
    await this.exited;
    spawnSync(FUSERMOUNT, ['-uz', this.mnt]);
  }
}

/** A fresh image and an empty mountpoint, both removed at teardown. */
function scratch(t: Test): { image: string; mnt: string } {
  const image = scratchImage(t, { size: 64 << 20 });
  const mnt = scratchPath('mnt');
  fs.mkdirSync(mnt);
  t.teardown(() => fs.rmSync(mnt, { recursive: true, force: true }));
  return { image, mnt };
}

/** os.stat of a path from another process (python3), as another reader sees it. */
function statElsewhere(p: string): { size: number; mtimeNs: bigint; ctimeNs: bigint } {
  const out = execFileSync('python3', ['-c', 'import os,sys; s = os.stat(sys.argv[1]); print(s.st_size, s.st_mtime_ns, s.st_ctime_ns)', p],
    { encoding: 'utf8' }).trim().split(' ');
  return { size: Number(out[0]), mtimeNs: BigInt(out[1]!), ctimeNs: BigInt(out[2]!) };
}

/** Free blocks as the daemon counts them (statfs is never cached by the kernel). */
function freeBlocks(mnt: string): number {
  return fs.statfsSync(mnt).bfree;
}

/** Bytes whose content depends on a seed. */
function pattern(seed: number, len: number): Buffer {
  const out = Buffer.alloc(len);
  let at = 0;
  for (let i = 0; at < len; i++) {
    const h = crypto.createHash('sha256').update(`${seed}:${i}`).digest();
    at += h.copy(out, at);
  }
  return out;
}

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

if (!canMount) {
  t.plan(0, `skipped: needs root, /dev/fuse, ${FUSERMOUNT} and python3`);
} else {
  t.test('small writes wait in the page cache; size and times are right for readers and after a remount', async (t) => {
    const { image, mnt } = scratch(t);
    let m = await Mounted.start(t, image, mnt);
    const p = path.join(mnt, 'small');
    const data = pattern(1, 1 << 20);
    const fd = fs.openSync(p, 'w');
    const freeBefore = freeBlocks(mnt);
    for (let at = 0; at < data.length; at += 512) fs.writeSync(fd, data, at, 512, at);
    // The cache is on: 2,048 writes of 512 bytes and the daemon has allocated nothing yet.
    t.equal(freeBlocks(mnt), freeBefore, 'no block allocated before writeback: the writes are in the page cache');
    const seen = statElsewhere(p);
    t.equal(seen.size, data.length, 'another process sees the size the writes made');
    t.equal(fs.fstatSync(fd).size, data.length, 'so does fstat');
    fs.fsyncSync(fd);
    t.ok(freeBlocks(mnt) < freeBefore - 200, 'fsync wrote it back: the daemon allocated its blocks');
    const afterFsync = statElsewhere(p);
    t.same(afterFsync, seen, 'fsync changes neither size nor times');
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, data.length + 10);
    fs.closeSync(fd);
    const last = statElsewhere(p);
    t.equal(last.size, data.length + 14, 'the size after a write past EOF');
    t.ok(last.mtimeNs >= seen.mtimeNs, 'mtime moved forward');
    await m.unmount();
    m = await Mounted.start(t, image, mnt);
    const again = statElsewhere(p);
    t.same(again, last, 'after a remount: the size, mtime and ctime the kernel showed (its SETATTR carried them)');
    const back = fs.readFileSync(p);
    t.equal(sha(back.subarray(0, data.length)), sha(data), 'the data is there');
    t.equal(back.subarray(data.length).toString('latin1'), '\0'.repeat(10) + 'tail', 'and the tail after a hole of zeroes');
    await m.unmount();
  });

  t.test("fsync'd, O_DSYNC and msync'd data survive kill -9 of the daemon", async (t) => {
    const { image, mnt } = scratch(t);
    // commit= far away: no timed log force helps what the test demands.
    let m = await Mounted.start(t, image, mnt, 'rw,commit=3600');
    const synced = pattern(2, 300_000);
    const fd = fs.openSync(path.join(mnt, 'fsynced'), 'w');
    for (let at = 0; at < synced.length; at += 1000) fs.writeSync(fd, synced, at, Math.min(1000, synced.length - at), at);
    fs.fsyncSync(fd);
    fs.writeSync(fd, Buffer.alloc(5000, 1), 0, 5000, synced.length); // after the fsync: may be lost
    const dsynced = pattern(3, 20_000);
    const dfd = fs.openSync(path.join(mnt, 'dsync'), fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_DSYNC);
    for (let at = 0; at < dsynced.length; at += 2000) fs.writeSync(dfd, dsynced, at, 2000, at);
    const mapped = pattern(4, 3 * 4096 + 100);
    // mmap has no Node binding: python3 writes through a shared mapping and msyncs it.
    execFileSync('python3', ['-c', [
      'import mmap, os, sys',
      'data = bytes.fromhex(sys.stdin.read())',
      "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)",
      'os.ftruncate(fd, len(data))',
      'm = mmap.mmap(fd, len(data))',
      'm[:] = data',
      'm.flush()',
      'm.close()',
      'os.close(fd)',
    ].join('\n'), path.join(mnt, 'mapped')], { input: mapped.toString('hex') });
    await m.crash();
    for (const d of [fd, dfd]) {
      try {
        fs.closeSync(d); // only lets go of the descriptor: the mount is gone (ENOTCONN)
      } catch {
        // expected
      }
    }
    m = await Mounted.start(t, image, mnt);
    const got = fs.readFileSync(path.join(mnt, 'fsynced'));
    t.ok(got.length >= synced.length, `the fsync'd size at least (${got.length})`);
    t.equal(sha(got.subarray(0, synced.length)), sha(synced), "the fsync'd data");
    t.equal(sha(fs.readFileSync(path.join(mnt, 'dsync'))), sha(dsynced), 'every O_DSYNC write');
    t.equal(sha(fs.readFileSync(path.join(mnt, 'mapped'))), sha(mapped), "the msync'd mapping");
    await m.unmount();
  });

  t.test('SEEK_DATA / SEEK_HOLE on a file whose pages are still dirty: the kernel writes them back first', async (t) => {
    const { image, mnt } = scratch(t);
    const m = await Mounted.start(t, image, mnt);
    // One descriptor throughout (a second open would write the pages back itself: FUSE drops the cache at open).
    const out = execFileSync('python3', ['-c', [
      'import os, sys',
      'fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)',
      'os.pwrite(fd, b"d" * 8192, 1 << 20)',
      'print(os.lseek(fd, 0, os.SEEK_DATA), os.lseek(fd, 1 << 20, os.SEEK_HOLE), os.lseek(fd, 0, os.SEEK_HOLE))',
      'os.close(fd)',
    ].join('\n'), path.join(mnt, 'sparse')], { encoding: 'utf8' }).trim();
    t.equal(out, `${1 << 20} ${(1 << 20) + 8192} 0`, 'data at 1 MiB, the hole at EOF after it, a hole from 0');
    await m.unmount();
  });

  t.test('O_APPEND from two descriptors: every record once, at the end', async (t) => {
    const { image, mnt } = scratch(t);
    let m = await Mounted.start(t, image, mnt);
    const p = path.join(mnt, 'log');
    fs.writeFileSync(p, 'head\n');
    const a = fs.openSync(p, 'a');
    const b = fs.openSync(p, 'a');
    const expected = ['head\n'];
    for (let i = 0; i < 300; i++) {
      const rec = `${i % 2 === 0 ? 'a' : 'b'}${i} ${'x'.repeat(i % 37)}\n`;
      fs.writeSync(i % 2 === 0 ? a : b, rec);
      expected.push(rec);
    }
    t.equal(statElsewhere(p).size, Buffer.byteLength(expected.join('')), 'the size while the appends are cached');
    fs.closeSync(a);
    fs.closeSync(b);
    await m.unmount();
    m = await Mounted.start(t, image, mnt);
    t.equal(fs.readFileSync(p, 'utf8'), expected.join(''), 'after a remount: the records in order, none lost or doubled');
    await m.unmount();
  });

  t.test('a partial-page write through a write-only open: the kernel reads the rest of the page', async (t) => {
    const { image, mnt } = scratch(t);
    let m = await Mounted.start(t, image, mnt);
    const p = path.join(mnt, 'wronly');
    const before = pattern(5, 3 * 4096);
    fs.writeFileSync(p, before);
    await m.unmount(); // nothing of it left in the page cache
    m = await Mounted.start(t, image, mnt);
    const fd = fs.openSync(p, fs.constants.O_WRONLY);
    fs.writeSync(fd, Buffer.from('0123456789'), 0, 10, 4096 + 100);
    fs.closeSync(fd);
    await m.unmount();
    m = await Mounted.start(t, image, mnt);
    const expected = Buffer.from(before);
    Buffer.from('0123456789').copy(expected, 4096 + 100);
    t.equal(sha(fs.readFileSync(p)), sha(expected), 'the page around the write kept its bytes');
    await m.unmount();
  });

  t.test('unlinked while its pages are dirty, then closed: the space comes back, check is clean', async (t) => {
    const { image, mnt } = scratch(t);
    const m = await Mounted.start(t, image, mnt);
    const free = freeBlocks(mnt);
    const p = path.join(mnt, 'doomed');
    const fd = fs.openSync(p, 'w');
    fs.writeSync(fd, pattern(6, 400_000));
    fs.unlinkSync(p);
    fs.writeSync(fd, pattern(7, 100_000)); // more dirty pages for a file without a name
    t.equal(fs.fstatSync(fd).size, 400_000 + 100_000, 'the open file still grows');
    fs.closeSync(fd); // flush writes the pages back to the orphan; the release that follows frees it
    // The kernel sends RELEASE (and FORGET) after close(2) has returned: wait for them, a while.
    for (let waited = 0; freeBlocks(mnt) !== free && waited < 5000; waited += 50) await new Promise((r) => setTimeout(r, 50));
    t.equal(freeBlocks(mnt), free, 'every block back after the close');
    await m.unmount();
    const check = spawnSync(process.execPath, [RMAPFS, 'check', image], { encoding: 'utf8' });
    t.equal(check.status, 0, `rmapfs check clean: ${check.stdout.trim()} ${check.stderr.trim()}`);
  });

  t.test('a writer filling the filesystem gets ENOSPC from write(2), fsync and close; what fit is there after a remount', async (t) => {
    const { image, mnt } = scratch(t);
    const m = await Mounted.start(t, image, mnt);
    // python3: 1 MiB writes of a pattern until one fails; prints the failing call, its errno, the
    // bytes written before it, then fsync's and close's errnos (0: no error).
    const script = `
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
chunk = bytes(range(256)) * 4096
done, failed = 0, 0
while done < 1 << 30:
    try:
        done += os.write(fd, chunk)
    except OSError as e:
        failed = e.errno
        break
def code(f):
    try:
        f()
        return 0
    except OSError as e:
        return e.errno
print(failed, done, code(lambda: os.fsync(fd)), code(lambda: os.close(fd)))
`;
    const out = execFileSync('python3', ['-c', script, path.join(mnt, 'fill')], { encoding: 'utf8', timeout: 120_000 }).trim().split(' ').map(Number);
    const [failed, accepted, fsyncErr, closeErr] = out as [number, number, number, number];
    t.equal(failed, 28, `write(2) failed with ENOSPC after ${accepted} bytes`);
    t.ok(accepted < 1 << 30, 'the writer stopped');
    t.ok(fsyncErr === 28 || closeErr === 28 || fsyncErr === 0, `fsync ${fsyncErr}, close ${closeErr}: no other error`);
    await m.unmount();
    const m2 = await Mounted.start(t, image, mnt);
    const kept = fs.readFileSync(path.join(mnt, 'fill'));
    t.ok(kept.length > 0 && kept.length <= accepted, `${kept.length} bytes kept of ${accepted} accepted`);
    // Page by page: the data written, or zeroes where a writeback was refused (those pages are lost;
    // a later page may still have found a block freed meanwhile) -- never anything else.
    const expect = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256));
    const zero = Buffer.alloc(4096);
    let wrong = 0;
    let lost = 0;
    for (let at = 0; at < kept.length; at += 4096) {
      const page = kept.subarray(at, Math.min(kept.length, at + 4096));
      if (page.equals(zero.subarray(0, page.length))) lost++;
      else if (!page.equals(expect.subarray(0, page.length))) wrong++;
    }
    t.equal(wrong, 0, `every page kept is what was written or zeroes (${lost} of ${Math.ceil(kept.length / 4096)} lost)`);
    await m2.unmount();
    const check = spawnSync(process.execPath, [RMAPFS, 'check', image], { encoding: 'utf8' });
    t.equal(check.status, 0, `rmapfs check clean: ${check.stdout.trim()} ${check.stderr.trim()}`);
  });
}
