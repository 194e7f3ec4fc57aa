/**
 * The typed face of the C++ addon (native/). Every function here is a thin
 * wrapper over one system call or one small routine; all policy lives in the
 * TypeScript layers above (src/io, src/btree).
 *
 * Errors thrown by the addon are ordinary `Error`s carrying `code` (e.g.
 * "ENOENT"), `errno` (the positive errno number), `syscall` and, where there
 * is one, `path` -- the same shape Node's own fs errors have.
 */
import * as path from 'path';

export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path?: string;
}

export interface XfileHandle {
  fd: number;
  /** "memfd" when memfd_create worked, "tmpfile" for the O_TMPFILE fallback. */
  kind: 'memfd' | 'tmpfile';
}

export interface DeviceOpenOptions {
  readOnly?: boolean;
  /** O_DIRECT: buffers, offsets and lengths must then be aligned (see alignedBuffer). */
  direct?: boolean;
  /** O_EXCL on a block device: refuse when it is mounted or otherwise claimed. */
  exclusive?: boolean;
}

export interface FdInfo {
  isBlockDevice: boolean;
  isRegularFile: boolean;
  /** BLKGETSIZE64 for block devices, st_size for files. */
  size: number;
  /** Logical sector size (BLKSSZGET) for block devices, 512 for files. */
  sectorSize: number;
  /** st_blocks * 512: bytes of storage actually held. */
  bytesHeld: number;
}

export interface NativeAddon {
  /**
   * An anonymous scratch file: memfd_create(name) unless `forceTmpfile`, else
   * (or when memfd_create fails) open(dir, O_TMPFILE|O_RDWR|O_EXCL) with dir =
   * `dir` or $TMPDIR or /tmp.
   */
  xfileCreate(name: string, dir: string | null, forceTmpfile: boolean): XfileHandle;
  /** Opens a block device or an image file read-write (or read-only). */
  deviceOpen(path: string, options: DeviceOpenOptions): number;
  fdInfo(fd: number): FdInfo;
  /** pread(2) into buf[bufOffset .. bufOffset+length); returns bytes read (short at EOF). */
  pread(fd: number, buf: Buffer, bufOffset: number, length: number, position: number): number;
  /** pwrite(2) from buf[bufOffset .. bufOffset+length); loops over partial writes. */
  pwrite(fd: number, buf: Buffer, bufOffset: number, length: number, position: number): number;
  ftruncate(fd: number, size: number): void;
  /** fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE). */
  punchHole(fd: number, offset: number, length: number): void;
  /** fallocate(2) with any mode (the data checker's). */
  fallocate(fd: number, mode: number, offset: number, length: number): void;
  /**
   * Copies buf to (toFile) or from the file at position through a shared mapping of those pages
   * (msync(MS_SYNC) after a copy in). The range must lie within the file: past EOF is SIGBUS.
   */
  mmapCopy(fd: number, buf: Buffer, position: number, toFile: boolean): void;
  fdatasync(fd: number): void;
  /** CLOCK_REALTIME_COARSE as [sec, nsec]: the clock the kernel stamps file times with. */
  clockCoarse(): [number, number];
  /** flock(LOCK_EX | LOCK_NB): true when taken, false when another open file description holds it. */
  lockExclusive(fd: number): boolean;
  close(fd: number): void;
  /** A Buffer whose memory is aligned to `alignment` bytes (for O_DIRECT). */
  alignedBuffer(size: number, alignment: number): Buffer;
  /** crc32c (Castagnoli) of buf[offset .. offset+length), continuing from `seed` (0 to start). */
  crc32c(buf: Buffer, offset: number, length: number, seed: number): number;
  /** The same, always with the portable table code (so tests can compare the two). */
  crc32cTable(buf: Buffer, offset: number, length: number, seed: number): number;
  /** Which implementation crc32c() uses on this CPU. */
  crc32cImplementation(): 'sse4.2' | 'table';
}

function findAddon(): NativeAddon {
  // dist/src/native/index.js -> <root>/build/Release/rmapfs_native.node
  const root = path.resolve(__dirname, '..', '..', '..');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(path.join(root, 'build', 'Release', 'rmapfs_native.node')) as NativeAddon;
}

export const native: NativeAddon = findAddon();

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).code === 'string'
    && typeof (e as Partial<NativeError>).errno === 'number';
}
