/**
 * lseek(2)'s SEEK_DATA and SEEK_HOLE over a file's block map, in whole
 * blocks: a block with any written byte is data from its first byte.
 *
 * Unwritten extents (preallocated, zeroed ranges) are holes, as XFS reports
 * them (iomap's seek over an unwritten mapping looks for cached pages, and
 * the daemon has no page cache: its writes convert the blocks they touch at
 * once). ENXIO for an offset at or past EOF, or negative (iomap_seek_hole /
 * iomap_seek_data), and for SEEK_DATA with no data from offset to EOF; the
 * end of the file is always a hole.
 */
import { RmapfsError } from '../errors';
import { BLOCK_SIZE } from '../format/superblock';
import type { BlockMap } from './bmap';

export type SeekKind = 'data' | 'hole';

/** Extents read from the map per step: a fragmented file is walked a piece at a time. */
const EXTENTS_PER_STEP = 64;

/** Where the next data (or hole) at or after `offset` starts, in bytes. */
export function seekHoleData(map: BlockMap, size: number, offset: number, kind: SeekKind): number {
  if (offset < 0 || offset >= size) throw new RmapfsError('ENXIO', `offset ${offset} is not inside the file (size ${size})`);
  const endBlock = Math.ceil(size / BLOCK_SIZE);
  // SEEK_HOLE: `at` is the first block not known to be data; every extent from there on starts at or after it.
  let at = Math.floor(offset / BLOCK_SIZE);
  let next = at; // where the next piece of the map is read from
  const holeAt = (block: number): number => Math.min(size, Math.max(offset, block * BLOCK_SIZE));
  while (next < endBlock) {
    const list = map.extentsFrom(next, EXTENTS_PER_STEP);
    for (const e of list) {
      if (kind === 'data') {
        if (e.unwritten) continue;
        const start = Math.max(offset, e.fileoff * BLOCK_SIZE);
        if (start < size) return start;
        throw new RmapfsError('ENXIO', `no data from offset ${offset} to the end of the file`);
      }
      if (e.unwritten || e.fileoff > at) return holeAt(at);
      at = e.fileoff + e.blockcount;
      if (at >= endBlock) return size;
    }
    if (list.length < EXTENTS_PER_STEP) break;
    const last = list[list.length - 1];
    next = last.fileoff + last.blockcount;
  }
  if (kind === 'data') throw new RmapfsError('ENXIO', `no data from offset ${offset} to the end of the file`);
  return holeAt(at);
}
