/**
 * Regular files and a model of every byte of each: writes, truncates and
 * every fallocate mode go through it, random changes too, and `unchanged`
 * compares the files with the model (for tests that change files while
 * something else runs: live repairs, remounts).
 */
import type { Test } from 'tap';
import type { Rmapfs } from '../../src/fs/rmapfs';
import { S_IFREG } from '../../src/inode/inode-format';
import { BLOCK_SIZE } from '../../src/format/superblock';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import type { Rng } from './rng';

const B = BLOCK_SIZE;
const MODES = [0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_ZERO_RANGE,
  FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE];

/** `bytes` at a new size: cut, or grown with zeroes (a truncate's effect on what a file reads as). */
export function resized(bytes: Buffer, size: number): Buffer {
  const now = Buffer.alloc(size);
  bytes.copy(now, 0, 0, Math.min(size, bytes.length));
  return now;
}

/** What a file reads as after a write of `data` at pos. */
export function written(bytes: Buffer, pos: number, data: Buffer): Buffer {
  const m = pos + data.length > bytes.length ? resized(bytes, pos + data.length) : bytes;
  data.copy(m, pos);
  return m;
}

/**
 * What a file reads as after fallocate(mode, pos, len) (fallocate(2)): the size grows unless
 * KEEP_SIZE, and a punched or zeroed range reads as zeroes up to the size.
 */
export function fallocated(bytes: Buffer, mode: number, pos: number, len: number): Buffer {
  const m = (mode & FALLOC_FL_KEEP_SIZE) === 0 && pos + len > bytes.length ? resized(bytes, pos + len) : bytes;
  if ((mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) !== 0) m.fill(0, Math.min(pos, m.length), Math.min(pos + len, m.length));
  return m;
}

/** Files and what each must read as; every change goes through here. */
export class FileModel {
  readonly bytes = new Map<number, Buffer>();
  constructor(public fsx: Rmapfs, private readonly rng: Rng) {}

  create(name: string): number {
    const ino = this.fsx.create(this.fsx.rootIno, name, S_IFREG | 0o644, 0, 0).ino;
    this.bytes.set(ino, Buffer.alloc(0));
    return ino;
  }

  write(ino: number, pos: number, len: number): void {
    const data = Buffer.alloc(len, 1 + this.rng.int(250));
    this.fsx.write(ino, pos, data);
    this.bytes.set(ino, written(this.bytes.get(ino)!, pos, data));
  }

  fallocate(ino: number, mode: number, pos: number, len: number): void {
    this.fsx.fallocate(ino, mode, pos, len);
    this.bytes.set(ino, fallocated(this.bytes.get(ino)!, mode, pos, len));
  }

  truncate(ino: number, size: number): void {
    this.fsx.truncate(ino, size);
    this.bytes.set(ino, resized(this.bytes.get(ino)!, size));
  }

  /** One random change to a file: mostly fallocate modes, over ranges up to 64 blocks, unaligned often. */
  randomChange(ino: number): void {
    const r = this.rng;
    const pos = r.int(64) * B + (r.next() < 0.5 ? r.int(B) : 0);
    const len = 1 + r.int(16) * B + (r.next() < 0.5 ? r.int(B) : 0);
    const what = r.int(10);
    if (what < 6) this.fallocate(ino, MODES[r.int(MODES.length)]!, pos, len);
    else if (what < 9) this.write(ino, pos, Math.min(len, 3 * B));
    else this.truncate(ino, r.int(70) * B + r.int(B));
  }

  unchanged(tap: Test): void {
    for (const [ino, m] of this.bytes) {
      tap.equal(this.fsx.stat(ino).size, m.length, `inode ${ino}: size`);
      if (!this.fsx.read(ino, 0, m.length + B).equals(m)) tap.fail(`inode ${ino} reads wrong`);
    }
  }
}


