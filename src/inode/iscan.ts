/**
 * The inode scan cursor (XFS's iscan): visits the inodes in use in number
 * order, across the AGs, on a live filesystem. Each step is a lookup in the
 * inode btrees -- the next inode in use above the last one visited -- so
 * inodes created or freed between two steps are seen as they are then, and
 * a scan that pauses between slices needs no snapshot. Used by the rmap
 * collector; the checkers and the other repairers' scans are to use it too.
 */
import type { Allocator } from '../alloc/alloc';
import type { Geometry } from '../format/geometry';
import { decodeInobt, INODES_PER_CHUNK, isInodeFree } from '../alloc/inode-btree';
import type { InobtRecord } from '../alloc/inode-btree';

export class InodeScanCursor {
  /**
   * The inode btree record next() found last: the next inode in use is
   * usually in the same chunk. Good only while nothing changes the inode
   * btrees: a scan forgets it at every pause.
   */
  private chunk: { agno: number; rec: InobtRecord } | null = null;
  private readonly key = Buffer.alloc(4);

  constructor(private readonly alloc: Allocator, private readonly geo: Geometry) {}

  /** Inodes may have come and gone since the last step (the scan paused). */
  forget(): void {
    this.chunk = null;
  }

  /** The first inode in use with a number above `after` (-1: from the start), or null. */
  next(after: number): number | null {
    const geo = this.geo;
    let agno = after < 0 ? 0 : geo.inoAgno(after);
    let from = after < 0 ? 0 : geo.inoAgino(after) + 1;
    // Most calls stay within the chunk the last one found: no lookup then (see `chunk`).
    const c = this.chunk;
    if (c !== null && c.agno === agno && from > c.rec.startino && from < c.rec.startino + INODES_PER_CHUNK) {
      for (let i = from - c.rec.startino; i < INODES_PER_CHUNK; i++) {
        if (!isInodeFree(c.rec, i)) return geo.ino(agno, c.rec.startino + i);
      }
    }
    const key = this.key;
    for (; agno < geo.agCount; agno++, from = 0) {
      const cur = this.alloc.ag(agno).ino.opCursor();
      key.writeUInt32BE(from - (from % INODES_PER_CHUNK));
      let ok = cur.lookup(key, 0, 'ge');
      while (ok) {
        const { block, offset } = cur.recordAt();
        const r = decodeInobt(block, offset);
        for (let i = Math.max(0, from - r.startino); i < INODES_PER_CHUNK; i++) {
          if (!isInodeFree(r, i)) {
            this.chunk = { agno, rec: r };
            return geo.ino(agno, r.startino + i);
          }
        }
        ok = cur.increment();
      }
    }
    return null;
  }
}
