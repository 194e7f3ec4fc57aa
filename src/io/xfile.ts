/**
 * xfile: an anonymous, memory-backed scratch file (memfd_create, or an
 * O_TMPFILE file when memfd is not available). Online repair keeps its whole
 * working set here rather than in the JavaScript heap: pages live in the
 * kernel's page cache (or swap), they cost the heap nothing, and punching a
 * hole gives them back.
 *
 * Reads past the end of the file, and over holes, return zeroes, so an xfile
 * behaves like an endless zero-filled array of bytes.
 */
import createDebug from 'debug';
import { native } from '../native';
import { wrapIoError } from './io-error';
import { RmapfsError } from '../errors';
import type { BufTarget } from './buf-target';
import { DEFAULT_BLOCK_SIZE } from './buf-target';

const log = createDebug('rmapfs:xfile');

export interface XfileOptions {
  /** Directory for the O_TMPFILE fallback (default: $TMPDIR or /tmp). */
  tmpDir?: string;
  /** Skip memfd_create and use O_TMPFILE (tests use this to cover the fallback). */
  forceTmpfile?: boolean;
}

export class Xfile {
  readonly name: string;
  readonly kind: 'memfd' | 'tmpfile';
  private fd: number;
  /** Highest byte written + 1 (the file's logical size as far as we care). */
  private sizeBytes = 0;

  constructor(name: string, options: XfileOptions = {}) {
    this.name = name;
    try {
      const h = native.xfileCreate(name, options.tmpDir ?? null, options.forceTmpfile ?? false);
      this.fd = h.fd;
      this.kind = h.kind;
    } catch (e) {
      throw wrapIoError(e, `cannot create xfile ${name}`);
    }
    log('created %s (%s, fd %d)', name, this.kind, this.fd);
  }

  get size(): number {
    return this.sizeBytes;
  }

  /** Reads length bytes at pos into dst; bytes past the end read as zeroes. */
  read(pos: number, dst: Buffer, dstOffset: number, length: number): void {
    this.checkOpen();
    let got = 0;
    if (pos < this.sizeBytes) {
      try {
        got = native.pread(this.fd, dst, dstOffset, Math.min(length, this.sizeBytes - pos), pos);
      } catch (e) {
        throw wrapIoError(e, `xfile ${this.name}: read at ${pos}`);
      }
    }
    if (got < length) dst.fill(0, dstOffset + got, dstOffset + length);
  }

  write(pos: number, src: Buffer, srcOffset: number, length: number): void {
    this.checkOpen();
    try {
      native.pwrite(this.fd, src, srcOffset, length, pos);
    } catch (e) {
      // ENOSPC/ENOMEM from a full tmpfs or memory cgroup: the repair fails, cleanly.
      throw wrapIoError(e, `xfile ${this.name}: write at ${pos}`);
    }
    if (pos + length > this.sizeBytes) this.sizeBytes = pos + length;
  }

  truncate(size: number): void {
    this.checkOpen();
    try {
      native.ftruncate(this.fd, size);
    } catch (e) {
      throw wrapIoError(e, `xfile ${this.name}: truncate to ${size}`);
    }
    this.sizeBytes = size;
  }

  /** Gives the pages of [pos, pos+length) back to the system; they read as zeroes. */
  discard(pos: number, length: number): void {
    this.checkOpen();
    if (length === 0) return;
    try {
      native.punchHole(this.fd, pos, length);
    } catch (e) {
      throw wrapIoError(e, `xfile ${this.name}: discard ${length} bytes at ${pos}`);
    }
  }

  /** Bytes of memory (or tmpfile storage) the xfile actually holds. */
  bytesHeld(): number {
    this.checkOpen();
    return native.fdInfo(this.fd).bytesHeld;
  }

  close(): void {
    if (this.fd >= 0) {
      native.close(this.fd);
      log('closed %s', this.name);
      this.fd = -1;
    }
  }

  private checkOpen(): void {
    if (this.fd < 0) throw new RmapfsError('EBADF', `xfile ${this.name} is closed`);
  }
}

/** An xfile addressed in blocks, as a buffer target for in-memory btrees. */
export class XfileTarget implements BufTarget {
  readonly name: string;
  readonly checksummed = false;

  constructor(readonly xfile: Xfile, readonly blockSize: number = DEFAULT_BLOCK_SIZE) {
    this.name = `xfile:${xfile.name}`;
  }

  get blockCount(): number {
    return Math.ceil(this.xfile.size / this.blockSize);
  }

  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    this.xfile.read(bno * this.blockSize, dst, dstOffset, count * this.blockSize);
  }

  writeBlocks(bno: number, count: number, src: Buffer, srcOffset: number): void {
    this.xfile.write(bno * this.blockSize, src, srcOffset, count * this.blockSize);
  }

  /** Gives a freed block's page back. */
  discardBlocks(bno: number, count: number): void {
    this.xfile.discard(bno * this.blockSize, count * this.blockSize);
  }

  flush(): void {
    // Nothing to make durable: an xfile dies with the process by design.
  }

  close(): void {
    this.xfile.close();
  }
}

