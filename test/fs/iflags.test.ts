/**
 * Inode flags (chattr/lsattr) and their rules in the filesystem itself
 * (Rmapfs: what the daemon enforces, since the kernel's FUSE side does not
 * know the flags), and copy_file_range's copy: offsets, holes kept, the
 * argument errors, chunking, the flags' refusals. test/fuse/iflags runs the
 * same through a real mount.
 */
import { constants as fsConstants } from 'fs';
import t, { Test } from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { IFLAG_APPEND, IFLAG_IMMUTABLE, IFLAG_NOATIME, IFLAG_NODUMP, S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { COPY_CHUNK, COPY_DATA_PER_CALL } from '../../src/file/copy-range';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import { scratchImage } from '../lib/fs';

const ROOT = { uid: 0 };
const USER = { uid: 1000 };
const { O_RDONLY, O_WRONLY, O_RDWR, O_APPEND, O_TRUNC } = fsConstants;

/** The errno code fn throws, or 'ok'. */
function code(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

function open(t: Test, size = 64 << 20): Rmapfs {
  const fsx = Rmapfs.open(scratchImage(t, { size }));
  t.teardown(() => fsx.close());
  return fsx;
}

t.test('setting flags: who may, which bits', (t) => {
  const fsx = open(t);
  const f = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 1000, 1000).ino;
  t.equal(fsx.getFlags(f), 0, 'a new file has none');
  t.equal(code(() => fsx.setFlags(f, 1 << 20, ROOT)), 'EOPNOTSUPP', 'an undefined bit: EOPNOTSUPP');
  t.equal(code(() => fsx.setFlags(f, IFLAG_NODUMP, { uid: 1001 })), 'EPERM', 'not the owner: EPERM');
  const before = fsx.stat(f).ctime;
  t.equal(code(() => fsx.setFlags(f, IFLAG_NODUMP | IFLAG_NOATIME, USER)), 'ok', 'the owner sets nodump and noatime');
  t.equal(fsx.getFlags(f), IFLAG_NODUMP | IFLAG_NOATIME);
  t.ok(fsx.stat(f).ctime.sec > before.sec || fsx.stat(f).ctime.nsec !== before.nsec, 'ctime changed');
  t.equal(code(() => fsx.setFlags(f, IFLAG_IMMUTABLE, USER)), 'EPERM', 'the owner may not set immutable');
  t.equal(code(() => fsx.setFlags(f, IFLAG_APPEND, USER)), 'EPERM', 'nor append-only');
  t.equal(code(() => fsx.setFlags(f, IFLAG_IMMUTABLE, ROOT)), 'ok', 'root sets immutable (and clears the rest)');
  t.equal(code(() => fsx.setFlags(f, IFLAG_IMMUTABLE | IFLAG_NODUMP, ROOT)), 'EPERM', 'immutable staying: no other flag changes, even for root');
  t.equal(code(() => fsx.setFlags(f, 0, USER)), 'EPERM', 'the owner may not clear immutable');
  t.equal(code(() => fsx.setFlags(f, IFLAG_NODUMP, ROOT)), 'ok', 'root clears immutable and sets nodump at once');
  t.end();
});

t.test('an immutable file: nothing changes it, its name included', (t) => {
  const fsx = open(t);
  const root = fsx.rootIno;
  const f = fsx.create(root, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(f, 0, Buffer.from('data'));
  fsx.setxattr(f, 'user.a', Buffer.from('1'));
  const d = fsx.mkdir(root, 'd', 0o755, 0, 0).ino;
  fsx.setFlags(f, IFLAG_IMMUTABLE, ROOT);
  const refused: Array<[string, () => unknown]> = [
    ['write', () => fsx.write(f, 0, Buffer.from('x'))],
    ['truncate', () => fsx.truncate(f, 0)],
    ['chmod', () => fsx.setattr(f, { mode: 0o600 })],
    ['chown', () => fsx.setattr(f, { uid: 5 })],
    ['touch', () => fsx.setattr(f, { mtime: { sec: 1, nsec: 0 }, timesAreNow: true })],
    ['utimes', () => fsx.setattr(f, { mtime: { sec: 1, nsec: 0 } })],
    ['setxattr', () => fsx.setxattr(f, 'user.b', Buffer.from('2'))],
    ['removexattr', () => fsx.removexattr(f, 'user.a')],
    ['link', () => fsx.link(f, root, 'g')],
    ['rename', () => fsx.rename(root, 'f', d, 'f')],
    ['exchange', () => fsx.exchange(root, 'f', root, 'd')],
    ['unlink', () => fsx.unlink(root, 'f')],
    ['fallocate', () => fsx.fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 4096)],
    ['open for writing', () => fsx.checkOpen(f, O_WRONLY)],
    ['open O_RDWR', () => fsx.checkOpen(f, O_RDWR)],
    ['open O_APPEND', () => fsx.checkOpen(f, O_WRONLY | O_APPEND)],
    ['open O_TRUNC', () => fsx.checkOpen(f, O_RDONLY | O_TRUNC)],
    ['copy into it', () => fsx.copyFileRange(f, 0, f, 8, 4)],
  ];
  for (const [what, fn] of refused) t.equal(code(fn), 'EPERM', `${what}: EPERM`);
  t.equal(code(() => fsx.checkOpen(f, O_RDONLY)), 'ok', 'opened for reading');
  t.equal(fsx.read(f, 0, 10).toString(), 'data', 'read');
  t.equal(fsx.getxattr(f, 'user.a').toString(), '1', 'attributes still there');
  t.equal(fsx.lookup(root, 'f'), f, 'still named f');
  fsx.setFlags(f, 0, ROOT);
  t.equal(code(() => fsx.unlink(root, 'f')), 'ok', 'unlinked once the flag is gone');
  t.end();
});

t.test('an append-only file: written at the end only, never shortened or removed', (t) => {
  const fsx = open(t);
  const root = fsx.rootIno;
  const f = fsx.create(root, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(f, 0, Buffer.from('data'));
  fsx.setFlags(f, IFLAG_APPEND, ROOT);
  const refused: Array<[string, () => unknown]> = [
    ['open for writing', () => fsx.checkOpen(f, O_WRONLY)],
    ['open O_RDWR', () => fsx.checkOpen(f, O_RDWR)],
    ['open O_APPEND|O_TRUNC', () => fsx.checkOpen(f, O_WRONLY | O_APPEND | O_TRUNC)],
    ['truncate', () => fsx.truncate(f, 0)],
    ['chmod', () => fsx.setattr(f, { mode: 0o600 })],
    ['utimes with chosen times', () => fsx.setattr(f, { mtime: { sec: 1, nsec: 0 } })],
    ['punch', () => fsx.fallocate(f, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)],
    ['zero range', () => fsx.fallocate(f, FALLOC_FL_ZERO_RANGE, 0, 4096)],
    ['setxattr', () => fsx.setxattr(f, 'user.b', Buffer.from('2'))],
    ['link', () => fsx.link(f, root, 'g')],
    ['rename', () => fsx.rename(root, 'f', root, 'g')],
    ['unlink', () => fsx.unlink(root, 'f')],
  ];
  for (const [what, fn] of refused) t.equal(code(fn), 'EPERM', `${what}: EPERM`);
  t.equal(code(() => fsx.copyFileRange(f, 0, f, 4, 4)), 'EBADF', 'copy into it: EBADF (its descriptors are O_APPEND)');
  t.equal(code(() => fsx.checkOpen(f, O_WRONLY | O_APPEND)), 'ok', 'opened O_APPEND');
  t.equal(code(() => fsx.write(f, 4, Buffer.from('more'))), 'ok', 'written at its end');
  t.equal(code(() => fsx.setattr(f, { atime: { sec: 5, nsec: 0 }, mtime: { sec: 5, nsec: 0 }, timesAreNow: true })), 'ok', 'touch (times to now)');
  t.equal(code(() => fsx.fallocate(f, FALLOC_FL_KEEP_SIZE, 0, 65536)), 'ok', 'preallocation (KEEP_SIZE)');
  t.equal(code(() => fsx.fallocate(f, 0, 0, 65536)), 'ok', 'preallocation (mode 0)');
  t.equal(fsx.read(f, 0, 100).toString('latin1').replace(/\0+$/, ''), 'datamore');
  t.end();
});

t.test('directories: immutable takes no entry in or out, append-only takes them in only', (t) => {
  const fsx = open(t);
  const root = fsx.rootIno;
  const d = fsx.mkdir(root, 'd', 0o755, 0, 0).ino;
  const inside = fsx.create(d, 'in', S_IFREG | 0o644, 0, 0).ino;
  fsx.mkdir(d, 'sub', 0o755, 0, 0);
  const outside = fsx.create(root, 'out', S_IFREG | 0o644, 0, 0).ino;
  fsx.setFlags(d, IFLAG_IMMUTABLE, ROOT);
  const addOrRemove: Array<[string, () => unknown]> = [
    ['create', () => fsx.create(d, 'new', S_IFREG | 0o644, 0, 0)],
    ['mkdir', () => fsx.mkdir(d, 'newdir', 0o755, 0, 0)],
    ['symlink', () => fsx.symlink(d, 'sl', 'x', 0, 0)],
    ['link into', () => fsx.link(outside, d, 'l')],
    ['rename into', () => fsx.rename(root, 'out', d, 'out')],
    ['unlink', () => fsx.unlink(d, 'in')],
    ['rmdir', () => fsx.rmdir(d, 'sub')],
    ['rename out', () => fsx.rename(d, 'in', root, 'in')],
    ['rename within', () => fsx.rename(d, 'in', d, 'in2')],
    ['chmod of the directory', () => fsx.setattr(d, { mode: 0o700 })],
  ];
  for (const [what, fn] of addOrRemove) t.equal(code(fn), 'EPERM', `immutable: ${what}: EPERM`);
  t.equal(code(() => fsx.write(inside, 0, Buffer.from('x'))), 'ok', 'a file in it can still be written');
  fsx.setFlags(d, IFLAG_APPEND, ROOT);
  t.equal(code(() => fsx.create(d, 'new', S_IFREG | 0o644, 0, 0)), 'ok', 'append-only: create');
  t.equal(code(() => fsx.rename(root, 'out', d, 'out')), 'ok', 'append-only: rename into');
  t.equal(code(() => fsx.unlink(d, 'in')), 'EPERM', 'append-only: unlink: EPERM');
  t.equal(code(() => fsx.rename(d, 'new', d, 'new2')), 'EPERM', 'append-only: rename within: EPERM');
  t.equal(code(() => fsx.rmdir(d, 'sub')), 'EPERM', 'append-only: rmdir: EPERM');
  fsx.setFlags(d, 0, ROOT);
  t.equal(code(() => fsx.unlink(d, 'in')), 'ok', 'no flag: unlink');
  t.end();
});

t.test('noatime and nodump: new entries inherit them; noatime stops atime updates', (t) => {
  const fsx = open(t);
  const d = fsx.mkdir(fsx.rootIno, 'd', 0o755, 0, 0).ino;
  fsx.setFlags(d, IFLAG_NOATIME | IFLAG_NODUMP, ROOT);
  const f = fsx.create(d, 'f', S_IFREG | 0o644, 0, 0).ino;
  const sub = fsx.mkdir(d, 'sub', 0o755, 0, 0).ino;
  t.equal(fsx.getFlags(f), IFLAG_NOATIME | IFLAG_NODUMP, 'a file inherits them');
  t.equal(fsx.getFlags(sub), IFLAG_NOATIME | IFLAG_NODUMP, 'a directory too');
  fsx.setFlags(d, IFLAG_IMMUTABLE | IFLAG_NOATIME, ROOT);
  t.equal(fsx.getFlags(fsx.create(fsx.rootIno, 'g', S_IFREG | 0o644, 0, 0).ino), 0, 'nothing from a plain directory');
  const strict = { ...DEFAULT_ATIME_POLICY, mode: 'strictatime' as const };
  fsx.setattr(f, { atime: { sec: 100, nsec: 0 } });
  fsx.noteAccess(f, strict);
  t.equal(fsx.stat(f).atime.sec, 100, 'noatime: a read leaves atime');
  fsx.setFlags(f, 0, ROOT);
  fsx.noteAccess(f, strict);
  t.not(fsx.stat(f).atime.sec, 100, 'without it: atime updated');
  t.end();
});

t.test('copy_file_range: data copied, holes kept, offsets honoured', (t) => {
  const fsx = open(t);
  const root = fsx.rootIno;
  const src = fsx.create(root, 'src', S_IFREG | 0o644, 0, 0).ino;
  const a = Buffer.alloc(3 * BLOCK_SIZE + 100, 'a');
  const b = Buffer.alloc(COPY_CHUNK + 5000, 'b'); // more than one chunk
  fsx.write(src, 0, a);
  fsx.write(src, 64 * BLOCK_SIZE, b);
  fsx.truncate(src, 64 * BLOCK_SIZE + b.length + 10 * BLOCK_SIZE); // a hole at the end
  const size = fsx.stat(src).size;
  const whole = fsx.read(src, 0, size);

  const dst = fsx.create(root, 'dst', S_IFREG | 0o644, 0, 0).ino;
  t.equal(fsx.copyFileRange(src, 0, dst, 0, size), size, 'the whole file: every byte counted');
  t.equal(fsx.stat(dst).size, size, 'size');
  t.ok(fsx.read(dst, 0, size).equals(whole), 'same bytes');
  t.equal(fsx.stat(dst).blocks, fsx.stat(src).blocks, 'the holes stayed holes (same blocks)');

  // Into data: the source's hole must zero (punch) what the destination held there.
  const over = fsx.create(root, 'over', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(over, 0, Buffer.alloc(80 * BLOCK_SIZE, 'z'));
  t.equal(fsx.copyFileRange(src, 0, over, 0, 64 * BLOCK_SIZE), 64 * BLOCK_SIZE);
  const got = fsx.read(over, 0, 80 * BLOCK_SIZE);
  t.ok(got.subarray(0, 64 * BLOCK_SIZE).equals(whole.subarray(0, 64 * BLOCK_SIZE)), 'the hole copied as zeroes over old data');
  t.equal(got.subarray(64 * BLOCK_SIZE).toString('latin1'), 'z'.repeat(16 * BLOCK_SIZE), 'past the range: untouched');
  t.equal(fsx.stat(over).size, 80 * BLOCK_SIZE, 'size kept');

  // Unaligned offsets on both sides, past the destination's end.
  const odd = fsx.create(root, 'odd', S_IFREG | 0o644, 0, 0).ino;
  t.equal(fsx.copyFileRange(src, 1000, odd, 777, 3 * BLOCK_SIZE), 3 * BLOCK_SIZE);
  t.equal(fsx.stat(odd).size, 777 + 3 * BLOCK_SIZE);
  t.ok(fsx.read(odd, 777, 3 * BLOCK_SIZE).equals(whole.subarray(1000, 1000 + 3 * BLOCK_SIZE)), 'unaligned: same bytes');
  t.ok(fsx.read(odd, 0, 777).equals(Buffer.alloc(777)), 'before the offset: zeroes');

  // Cut at the source's end; nothing at or past it.
  t.equal(fsx.copyFileRange(src, size - 10, odd, 0, 1000), 10, 'cut at the end of the source');
  t.equal(fsx.copyFileRange(src, size, odd, 0, 1000), 0, 'at the end: 0');
  t.equal(fsx.copyFileRange(src, 0, odd, 0, 0), 0, 'length 0: 0');
  // A hole at the end of the range only: the destination grows over it.
  const tail = fsx.create(root, 'tail', S_IFREG | 0o644, 0, 0).ino;
  t.equal(fsx.copyFileRange(src, size - BLOCK_SIZE, tail, 0, BLOCK_SIZE), BLOCK_SIZE);
  t.same([fsx.stat(tail).size, fsx.stat(tail).blocks], [BLOCK_SIZE, 0], 'a hole copied past the end: size, no blocks');

  // The same file, ranges apart.
  t.equal(fsx.copyFileRange(src, 0, src, size, 100), 100, 'within one file, past its end');
  t.ok(fsx.read(src, size, 100).equals(whole.subarray(0, 100)));
  t.end();
});

t.test('copy_file_range: the argument errors', (t) => {
  const fsx = open(t);
  const root = fsx.rootIno;
  const f = fsx.create(root, 'f', S_IFREG | 0o644, 0, 0).ino;
  const g = fsx.create(root, 'g', S_IFREG | 0o644, 0, 0).ino;
  const d = fsx.mkdir(root, 'd', 0o755, 0, 0).ino;
  fsx.write(f, 0, Buffer.alloc(10000, 'x'));
  t.equal(code(() => fsx.copyFileRange(f, 0, f, 5000, 6000)), 'EINVAL', 'overlapping ranges of one file');
  t.equal(code(() => fsx.copyFileRange(f, 4000, f, 0, 5000)), 'EINVAL', 'overlapping the other way');
  t.equal(code(() => fsx.copyFileRange(f, 5000, f, 0, 6000)), 'ok', 'cut at the end of the source first: no overlap left');
  t.equal(code(() => fsx.copyFileRange(f, 0, f, 5000, 5000)), 'ok', 'touching, not overlapping');
  t.equal(code(() => fsx.copyFileRange(f, 0, g, 0, 10, 1)), 'EINVAL', 'flags');
  t.equal(code(() => fsx.copyFileRange(f, -1, g, 0, 10)), 'EINVAL', 'a negative offset');
  t.equal(code(() => fsx.copyFileRange(d, 0, g, 0, 10)), 'EISDIR', 'from a directory');
  t.equal(code(() => fsx.copyFileRange(f, 0, d, 0, 10)), 'EISDIR', 'into a directory');
  t.equal(code(() => fsx.copyFileRange(f, 0, g, 2 ** 44, 10)), 'EFBIG', 'past the largest file');
  t.end();
});

t.test('copy_file_range: a short answer past COPY_DATA_PER_CALL bytes of data', (t) => {
  const fsx = open(t, 256 << 20);
  const root = fsx.rootIno;
  const f = fsx.create(root, 'f', S_IFREG | 0o644, 0, 0).ino;
  const g = fsx.create(root, 'g', S_IFREG | 0o644, 0, 0).ino;
  const chunk = Buffer.alloc(4 << 20, 'q');
  const total = COPY_DATA_PER_CALL + (1 << 20);
  for (let at = 0; at < total; at += chunk.length) fsx.write(f, at, chunk.subarray(0, Math.min(chunk.length, total - at)));
  const first = fsx.copyFileRange(f, 0, g, 0, total);
  t.equal(first, COPY_DATA_PER_CALL, 'the first call stops at the bound');
  t.equal(fsx.copyFileRange(f, first, g, first, total - first), total - first, 'the next copies the rest');
  t.equal(fsx.stat(g).size, total);
  t.end();
});
