/**
 * The lseek handler (LowLevelOps, as the daemon runs it): SEEK_DATA and
 * SEEK_HOLE answered from Rmapfs.seek with the position, ENXIO past EOF,
 * EINVAL for any other whence (the kernel keeps SEEK_SET/CUR/END to itself).
 * Registered, so the binding's mask names the op (libfuse then fills in
 * its lseek and the kernel asks instead of calling the whole file data).
 */
import * as os from 'os';
import t from 'tap';
import { DEFAULT_ATIME_POLICY, Rmapfs } from '../../src/fs/rmapfs';
import { LowLevelOps } from '../../src/fuse/ll-ops';
import { SEEK_DATA, SEEK_HOLE } from '../../src/fuse/lowlevel';
import type { Caller, LseekReply } from '../../src/fuse/lowlevel';
import { S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { scratchImage } from '../lib/fs';

const ENXIO = os.constants.errno.ENXIO;
const EINVAL = os.constants.errno.EINVAL;
const SEEK_SET = 0;
const SEEK_END = 2;
const caller: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

/** An lseek reply that keeps its answer: the position, or the errno as a negative number. */
function lseekReply(): LseekReply & { got: number | null } {
  const r = {
    got: null as number | null,
    get answered(): boolean { return r.got !== null; },
    position(offset: number): void { r.got = offset; },
    error(errno: number): void { r.got = -errno; },
  };
  return r;
}

t.test('lseek through the handler', (t) => {
  const image = scratchImage(t, { size: 16 << 20 });
  const fsx = Rmapfs.open(image);
  t.teardown(() => fsx.close());
  const h = new LowLevelOps(fsx, { readOnly: false, uid: null, gid: null, sync: false, dirsync: false, atime: DEFAULT_ATIME_POLICY }).handlers();
  t.type(h.lseek, 'function', 'the handler is there');
  const ino = fsx.create(fsx.rootIno, 'f', S_IFREG | 0o644, 0, 0).ino;
  fsx.write(ino, 3 * BLOCK_SIZE, Buffer.from('data'));
  const lseek = (offset: number, whence: number): number | null => {
    const reply = lseekReply();
    void h.lseek?.({ caller, ino, fh: ino, offset, whence }, reply);
    return reply.got;
  };
  t.equal(lseek(0, SEEK_DATA), 3 * BLOCK_SIZE, 'SEEK_DATA: the first data block');
  t.equal(lseek(0, SEEK_HOLE), 0, 'SEEK_HOLE: the hole at 0');
  t.equal(lseek(3 * BLOCK_SIZE, SEEK_HOLE), 3 * BLOCK_SIZE + 4, 'SEEK_HOLE in the last block: EOF');
  t.equal(lseek(3 * BLOCK_SIZE + 4, SEEK_DATA), -ENXIO, 'at EOF: ENXIO');
  t.equal(lseek(0, SEEK_SET), -EINVAL, 'SEEK_SET: EINVAL (never sent)');
  t.equal(lseek(0, SEEK_END), -EINVAL, 'SEEK_END: EINVAL');
  t.end();
});
