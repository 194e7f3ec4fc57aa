/**
 * The data device as the filesystem sees it: a DeviceTarget that can also
 * lay replayed journal images over the device without writing them -- how a
 * read-only open (check, db, a ro mount) sees a filesystem whose log still
 * holds committed transactions.
 */
import { DeviceTarget } from '../io/device';

export class RecoveringTarget extends DeviceTarget {
  private readonly overlaid = new Map<number, Buffer>();

  /** Reads of bno return image from now on (the latest overlay wins). */
  overlay(bno: number, image: Buffer): void {
    this.overlaid.set(bno, Buffer.from(image));
  }

  override readBlocks(bno: number, count: number, dst: Buffer, dstOffset: number): void {
    super.readBlocks(bno, count, dst, dstOffset);
    if (this.overlaid.size === 0) return;
    for (let i = 0; i < count; i++) {
      const image = this.overlaid.get(bno + i);
      if (image !== undefined) image.copy(dst, dstOffset + i * this.blockSize);
    }
  }

  override writeBlocks(bno: number, count: number, src: Buffer, srcOffset: number): void {
    for (let i = 0; i < count; i++) this.overlaid.delete(bno + i);
    super.writeBlocks(bno, count, src, srcOffset);
  }
}
