/**
 * The data device: a block device or an image file, opened once, addressed
 * by byte position. Block devices are opened exclusively (a mounted device,
 * or one another rmapfs holds, is refused with EBUSY).
 */
import * as fs from 'fs';
import createDebug from 'debug';
import { native } from '../native';
import { RmapfsError } from '../errors';
import type { BufTarget } from './buf-target';
import { DEFAULT_BLOCK_SIZE } from './buf-target';
import { wrapIoError } from './io-error';

const log = createDebug('rmapfs:device');

export interface DeviceOpenOptions {
  readOnly?: boolean;
  /** O_DIRECT: bypass the page cache; I/O then uses aligned bounce buffers. */
  direct?: boolean;
}

/**
 * Something standing between the filesystem and its device, for tests: a
 * write log (records every write and flush), a fault injector (fails chosen
 * I/O with EIO). Each hook may throw; a throw from a before-hook fails the I/O.
 */
export interface DeviceInterposer {
  beforeRead?(pos: number, length: number): void;
  beforeWrite?(pos: number, length: number): void;
  /** After a write that reached the device. */
  afterWrite?(pos: number, src: Buffer, srcOffset: number, length: number): void;
  beforeSync?(): void;
  /** After a flush that succeeded: everything written before it is durable. */
  afterSync?(): void;
}

export class Device {
  readonly path: string;
  readonly readOnly: boolean;
  readonly direct: boolean;
  readonly isBlockDevice: boolean;
  readonly size: number;
  readonly sectorSize: number;
  private fd: number;
  /** Aligned scratch for O_DIRECT transfers whose caller buffers are not aligned. */
  private bounce: Buffer | null = null;
  private interposers: DeviceInterposer[] = [];
  /** A loop device's backing file, held open for its lock (see lock()). */
  private backingFd = -1;

  constructor(path: string, options: DeviceOpenOptions = {}) {
    this.path = path;
    this.readOnly = options.readOnly ?? false;
    this.direct = options.direct ?? false;
    try {
      this.fd = native.deviceOpen(path, { readOnly: this.readOnly, direct: this.direct, exclusive: true });
    } catch (e) {
      throw wrapIoError(e, `cannot open ${path}`);
    }
    try {
      const info = native.fdInfo(this.fd);
      if (!info.isBlockDevice && !info.isRegularFile) {
        throw new RmapfsError('EINVAL', `${path} is neither a block device nor a regular file`, { path });
      }
      this.isBlockDevice = info.isBlockDevice;
      this.size = info.size;
      this.sectorSize = info.sectorSize;
    } catch (e) {
      native.close(this.fd);
      throw wrapIoError(e, `cannot open ${path}`);
    }
    log('opened %s (%s, %d bytes%s)', path, this.isBlockDevice ? 'block device' : 'file', this.size,
      this.direct ? ', O_DIRECT' : '');
  }

  /** Puts a test interposer in the I/O path (see DeviceInterposer). */
  interpose(i: DeviceInterposer): void {
    this.interposers.push(i);
  }

  removeInterposer(i: DeviceInterposer): void {
    this.interposers = this.interposers.filter((x) => x !== i);
  }

  /** Reads exactly length bytes at pos; a short read (past the end) is EIO. */
  read(pos: number, dst: Buffer, dstOffset: number, length: number): void {
    const fd = this.checkOpen();
    for (const i of this.interposers) i.beforeRead?.(pos, length);
    let got: number;
    try {
      if (this.direct) {
        const bounce = this.bounceBuffer(length);
        got = native.pread(fd, bounce, 0, length, pos);
        bounce.copy(dst, dstOffset, 0, got);
      } else {
        got = native.pread(fd, dst, dstOffset, length, pos);
      }
    } catch (e) {
      throw wrapIoError(e, `${this.path}: read of ${length} bytes at ${pos}`);
    }
    if (got !== length) {
      throw new RmapfsError('EIO',
        `${this.path}: short read of ${got} of ${length} bytes at ${pos} (device is ${this.size} bytes)`,
        { path: this.path });
    }
  }

  write(pos: number, src: Buffer, srcOffset: number, length: number): void {
    const fd = this.checkOpen();
    if (this.readOnly) throw new RmapfsError('EROFS', `${this.path} is open read-only`, { path: this.path });
    if (pos + length > this.size) {
      throw new RmapfsError('EIO', `${this.path}: write of ${length} bytes at ${pos} is past the end (${this.size} bytes)`,
        { path: this.path });
    }
    for (const i of this.interposers) i.beforeWrite?.(pos, length);
    try {
      if (this.direct) {
        const bounce = this.bounceBuffer(length);
        src.copy(bounce, 0, srcOffset, srcOffset + length);
        native.pwrite(fd, bounce, 0, length, pos);
      } else {
        native.pwrite(fd, src, srcOffset, length, pos);
      }
    } catch (e) {
      throw wrapIoError(e, `${this.path}: write of ${length} bytes at ${pos}`);
    }
    for (const i of this.interposers) i.afterWrite?.(pos, src, srcOffset, length);
  }

  /**
   * Takes an exclusive advisory lock on the device (flock), so a second
   * daemon -- or mkfs, check or repair that also lock -- is refused while one
   * holds it. Released when the device is closed.
   */
  lock(): void {
    const fd = this.checkOpen();
    let taken: boolean;
    try {
      taken = native.lockExclusive(fd);
    } catch (e) {
      throw wrapIoError(e, `${this.path}: lock`);
    }
    if (!taken) throw new RmapfsError('EBUSY', `${this.path} is in use by another rmapfs (mounted?)`, { path: this.path });
    // A loop device and its backing file are one filesystem under two names: lock the file too, so
    // neither can be mounted (or formatted) while the other is in use.
    const backing = this.isBlockDevice ? loopBackingFile(this.path) : null;
    if (backing !== null) {
      try {
        this.backingFd = fs.openSync(backing, 'r');
        taken = native.lockExclusive(this.backingFd);
      } catch (e) {
        throw wrapIoError(e, `${this.path}: lock its backing file ${backing}`);
      }
      if (!taken) {
        throw new RmapfsError('EBUSY', `${this.path} is a loop device over ${backing}, which is in use by another rmapfs (mounted?)`,
          { path: this.path });
      }
    }
  }

  sync(): void {
    const fd = this.checkOpen();
    for (const i of this.interposers) i.beforeSync?.();
    try {
      native.fdatasync(fd);
    } catch (e) {
      throw wrapIoError(e, `${this.path}: fdatasync`);
    }
    for (const i of this.interposers) i.afterSync?.();
  }

  close(): void {
    if (this.backingFd >= 0) {
      fs.closeSync(this.backingFd);
      this.backingFd = -1;
    }
    if (this.fd >= 0) {
      native.close(this.fd);
      this.fd = -1;
      log('closed %s', this.path);
    }
  }

  private bounceBuffer(length: number): Buffer {
    if (this.bounce === null || this.bounce.length < length) {
      this.bounce = native.alignedBuffer(Math.max(length, 1 << 20), 4096);
    }
    return this.bounce;
  }

  private checkOpen(): number {
    if (this.fd < 0) throw new RmapfsError('EBADF', `${this.path} is closed`, { path: this.path });
    return this.fd;
  }
}

/** The file behind a loop device (from sysfs), or null for any other block device. */
export function loopBackingFile(devicePath: string): string | null {
  try {
    const rdev = fs.statSync(devicePath).rdev;
    const major = Math.floor(rdev / 256) & 0xfff;
    const minor = (rdev & 0xff) | ((Math.floor(rdev / 4096) & ~0xff) >>> 0);
    const backing = fs.readFileSync(`/sys/dev/block/${major}:${minor}/loop/backing_file`, 'utf8').trim();
    return backing === '' ? null : backing;
  } catch {
    return null; // not a loop device (or no sysfs)
  }
}

/** The data device addressed in blocks. */
export class DeviceTarget implements BufTarget {
  readonly name: string;
  readonly checksummed = true;
  readonly blockCount: number;

  constructor(readonly device: Device, readonly blockSize: number = DEFAULT_BLOCK_SIZE) {
    this.name = device.path;
    this.blockCount = Math.floor(device.size / blockSize);
  }

  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    this.checkRange(bno, count);
    this.device.read(bno * this.blockSize, dst, dstOffset, count * this.blockSize);
  }

  writeBlocks(bno: number, count: number, src: Buffer, srcOffset: number): void {
    this.checkRange(bno, count);
    this.device.write(bno * this.blockSize, src, srcOffset, count * this.blockSize);
  }

  flush(): void {
    this.device.sync();
  }

  close(): void {
    this.device.close();
  }

  private checkRange(bno: number, count: number): void {
    if (!Number.isInteger(bno) || bno < 0 || count < 1 || bno + count > this.blockCount) {
      throw new RmapfsError('EIO', `${this.name}: block ${bno}+${count} is outside the device (${this.blockCount} blocks)`,
        { path: this.device.path });
    }
  }
}
