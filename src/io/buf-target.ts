/**
 * A buffer target is "blocks of a fixed size on something": the data device
 * (an image file or block device), or an xfile (anonymous memory-backed
 * scratch file). The buffer cache and everything above it address a target
 * only in whole blocks, so the same btree code runs on either.
 */
export interface BufTarget {
  /** For messages: the device path, or "xfile:<name>". */
  readonly name: string;
  readonly blockSize: number;
  /** Blocks addressable now; an xfile grows on write, so it reports what it holds. */
  readonly blockCount: number;
  /**
   * Whether blocks on this target carry a crc32c. Device metadata does (a torn
   * or bit-flipped block must be caught on read); xfile blocks live only in
   * this process's memory and skip it.
   */
  readonly checksummed: boolean;
  /** Reads whole blocks [bno, bno+count) into dst (count*blockSize bytes from dstOffset). */
  readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void;
  /** Writes whole blocks [bno, bno+count) from src. */
  writeBlocks(bno: number, count: number, src: Buffer, srcOffset: number): void;
  /** Makes written blocks durable (fdatasync on a device; nothing for an xfile). */
  flush(): void;
  close(): void;
}

export const DEFAULT_BLOCK_SIZE = 4096;
