/**
 * The write log: a record of every write and every flush a filesystem sends
 * to its device, in order, for crash-consistency tests (like dm-log-writes in
 * fstests). From the device as it was when the log began and the log, any
 * moment of the device's history can be rebuilt -- in particular each flush
 * point, which is all a crash is guaranteed to leave -- and the filesystem
 * checked there.
 *
 * File format (little-endian):
 *   header   8 bytes "RMAPWLOG", u32 version (1), u32 0, u64 device size
 *   entry    u8 kind, 3 bytes 0, u32 length, u64 position, then `length` bytes
 *            kind 1 WRITE  (position: byte offset on the device; the data)
 *            kind 2 FLUSH  (length 0: everything written before is durable)
 *            kind 3 MARK   (a label the test placed, e.g. "fsync f12 <sha256>")
 *
 * The recorder appends with plain writes and never syncs: the log is read
 * after the filesystem is closed (or its process has died), never by it.
 */
import * as fs from 'fs';
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { DeviceInterposer } from './device';

const log = createDebug('rmapfs:writelog');

const MAGIC = 'RMAPWLOG';
const VERSION = 1;
const HEADER_SIZE = 24;
const ENTRY_HEADER = 16;

export const WLOG_WRITE = 1;
export const WLOG_FLUSH = 2;
export const WLOG_MARK = 3;

export type WriteLogEntry =
  | { kind: typeof WLOG_WRITE; pos: number; data: Buffer }
  | { kind: typeof WLOG_FLUSH }
  | { kind: typeof WLOG_MARK; label: string };

/** Records a device's writes and flushes into a log file (a DeviceInterposer). */
export class WriteLogRecorder implements DeviceInterposer {
  private fd: number;
  private readonly head = Buffer.alloc(ENTRY_HEADER);
  writes = 0;
  flushes = 0;

  constructor(readonly path: string, deviceSize: number) {
    try {
      this.fd = fs.openSync(path, 'w', 0o600);
    } catch (e) {
      throw new RmapfsError('EIO', `cannot create the write log ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const h = Buffer.alloc(HEADER_SIZE);
    h.write(MAGIC, 0, 'latin1');
    h.writeUInt32LE(VERSION, 8);
    h.writeBigUInt64LE(BigInt(deviceSize), 16);
    fs.writeSync(this.fd, h);
    log('recording to %s', path);
  }

  private entry(kind: number, pos: number, data: Buffer | null, offset = 0, length = 0): void {
    if (this.fd < 0) return;
    this.head.fill(0);
    this.head.writeUInt8(kind, 0);
    this.head.writeUInt32LE(length, 4);
    this.head.writeBigUInt64LE(BigInt(pos), 8);
    fs.writeSync(this.fd, this.head);
    if (data !== null && length > 0) fs.writeSync(this.fd, data, offset, length);
  }

  afterWrite(pos: number, src: Buffer, srcOffset: number, length: number): void {
    this.writes++;
    this.entry(WLOG_WRITE, pos, src, srcOffset, length);
  }

  afterSync(): void {
    this.flushes++;
    this.entry(WLOG_FLUSH, 0, null);
  }

  /** Places a label in the log, after everything recorded so far. */
  mark(label: string): void {
    const b = Buffer.from(label, 'utf8');
    this.entry(WLOG_MARK, 0, b, 0, b.length);
  }

  close(): void {
    if (this.fd >= 0) {
      fs.closeSync(this.fd);
      this.fd = -1;
      log('closed %s: %d writes, %d flushes', this.path, this.writes, this.flushes);
    }
  }
}

/** Reads a write log, entry by entry. */
export class WriteLogReader {
  readonly deviceSize: number;
  private readonly fd: number;
  private pos = HEADER_SIZE;
  private readonly size: number;

  constructor(readonly path: string) {
    try {
      this.fd = fs.openSync(path, 'r');
    } catch (e) {
      throw new RmapfsError('ENOENT', `cannot open the write log ${path}: ${e instanceof Error ? e.message : String(e)}`);
    }
    this.size = fs.fstatSync(this.fd).size;
    const h = Buffer.alloc(HEADER_SIZE);
    if (fs.readSync(this.fd, h, 0, HEADER_SIZE, 0) !== HEADER_SIZE || h.toString('latin1', 0, 8) !== MAGIC) {
      fs.closeSync(this.fd);
      throw new RmapfsError('EINVAL', `${path} is not an rmapfs write log`);
    }
    if (h.readUInt32LE(8) !== VERSION) {
      fs.closeSync(this.fd);
      throw new RmapfsError('EINVAL', `${path}: write log version ${h.readUInt32LE(8)} is not supported`);
    }
    this.deviceSize = Number(h.readBigUInt64LE(16));
  }

  /** The next entry, or null at the end (a torn last entry -- the recorder died mid-write -- ends the log too). */
  next(): WriteLogEntry | null {
    if (this.pos + ENTRY_HEADER > this.size) return null;
    const head = Buffer.alloc(ENTRY_HEADER);
    fs.readSync(this.fd, head, 0, ENTRY_HEADER, this.pos);
    const kind = head.readUInt8(0);
    const length = head.readUInt32LE(4);
    const at = Number(head.readBigUInt64LE(8));
    if (this.pos + ENTRY_HEADER + length > this.size) return null;
    const data = Buffer.alloc(length);
    if (length > 0) fs.readSync(this.fd, data, 0, length, this.pos + ENTRY_HEADER);
    this.pos += ENTRY_HEADER + length;
    switch (kind) {
      case WLOG_WRITE:
        return { kind, pos: at, data };
      case WLOG_FLUSH:
        return { kind };
      case WLOG_MARK:
        return { kind, label: data.toString('utf8') };
      default:
        throw new RmapfsError('EINVAL', `${this.path}: unknown entry kind ${kind} at byte ${this.pos - ENTRY_HEADER - length}`);
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

/** Where a replay stopped: entries applied, flushes and marks passed. */
export interface ReplayPoint {
  entries: number;
  flushes: number;
  marks: string[];
}

/**
 * Applies the log's entries to an image (a copy of the device as it was when
 * the log began) until `stop` says so: `stop(entry, point)` is asked before
 * each entry and returns true to stop before it. Returns where it stopped.
 */
export function replayWriteLog(logPath: string, imagePath: string,
  stop: (entry: WriteLogEntry, point: ReplayPoint) => boolean = () => false): ReplayPoint {
  const reader = new WriteLogReader(logPath);
  const fd = fs.openSync(imagePath, 'r+');
  const point: ReplayPoint = { entries: 0, flushes: 0, marks: [] };
  try {
    if (fs.fstatSync(fd).size < reader.deviceSize) {
      throw new RmapfsError('EINVAL', `${imagePath} is smaller than the device the log was recorded on (${reader.deviceSize} bytes)`);
    }
    for (let e = reader.next(); e !== null; e = reader.next()) {
      if (stop(e, point)) break;
      if (e.kind === WLOG_WRITE) fs.writeSync(fd, e.data, 0, e.data.length, e.pos);
      else if (e.kind === WLOG_FLUSH) point.flushes++;
      else point.marks.push(e.label);
      point.entries++;
    }
  } finally {
    fs.closeSync(fd);
    reader.close();
  }
  return point;
}
