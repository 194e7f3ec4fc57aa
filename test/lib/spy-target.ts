/**
 * A BufTarget wrapper that records every block read, block write and flush
 * it passes on, so buffer-cache tests can see exactly what reached the target.
 */
import type { BufTarget } from '../../src/io/buf-target';

export class SpyTarget implements BufTarget {
  readonly name: string;
  readonly blockSize: number;
  readonly checksummed: boolean;
  /** First block number of each readBlocks / writeBlocks call, in call order. */
  reads: number[] = [];
  writes: number[] = [];
  flushes = 0;

  constructor(readonly inner: BufTarget) {
    this.name = inner.name;
    this.blockSize = inner.blockSize;
    this.checksummed = inner.checksummed;
  }

  get blockCount(): number {
    return this.inner.blockCount;
  }

  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    this.reads.push(bno);
    this.inner.readBlocks(bno, count, dst, dstOffset);
  }

  writeBlocks(bno: number, count: number, src: Buffer, srcOffset: number): void {
    this.writes.push(bno);
    this.inner.writeBlocks(bno, count, src, srcOffset);
  }

  flush(): void {
    this.flushes++;
    this.inner.flush();
  }

  close(): void {
    this.inner.close();
  }

  reset(): void {
    this.reads = [];
    this.writes = [];
    this.flushes = 0;
  }
}
