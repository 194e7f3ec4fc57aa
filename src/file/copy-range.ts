/**
 * copy_file_range(2) inside one filesystem: the argument rules and the walk
 * of the source's data and holes. The copy itself (a transaction per chunk)
 * is Rmapfs.copyFileRange's: rmapfs shares no blocks between files (no
 * reflink), so data is read and written again, in bounded chunks, and a
 * hole of the source stays a hole (punched where the destination held data,
 * left alone past its end).
 */
import { RmapfsError } from '../errors';
import { MAX_FILE_SIZE } from './file';
import { seekHoleData } from './seek';
import type { BlockMap } from './bmap';

/** Bytes read and written per transaction. */
export const COPY_CHUNK = 1 << 20;
/**
 * Data bytes copied per call at most (holes are free): the daemon serves on
 * one thread, so a huge copy answers short -- copy_file_range(2) may, and
 * its callers (cp, xfs_io) call again for the rest.
 */
export const COPY_DATA_PER_CALL = 64 << 20;

/**
 * The length to copy after vfs_copy_file_range's checks, the kernel's order
 * (generic_copy_file_checks): EINVAL for flags or a negative offset, the
 * length cut at the source's end (0 from there on), EINVAL for overlapping
 * ranges of one file, EFBIG past the largest file.
 */
export function copyRangeLength(sameFile: boolean, sizeIn: number, offIn: number, offOut: number, length: number, flags: number): number {
  if (flags !== 0) throw new RmapfsError('EINVAL', `copy_file_range flags ${flags}`);
  if (!(offIn >= 0) || !(offOut >= 0) || !(length >= 0)) throw new RmapfsError('EINVAL', `copy_file_range of ${length} bytes from ${offIn} to ${offOut}`);
  const count = offIn >= sizeIn ? 0 : Math.min(length, sizeIn - offIn);
  if (sameFile && offOut + count > offIn && offOut < offIn + count) {
    throw new RmapfsError('EINVAL', `copy_file_range within one file: ${offIn}+${count} overlaps ${offOut}`);
  }
  if (offOut + count > MAX_FILE_SIZE) throw new RmapfsError('EFBIG', `a copy to ${offOut + count} bytes is past the largest file`);
  return count;
}

/** A run of the source from `pos`: data to copy, or a hole (holes and unwritten space), ending at `end`. */
export interface SourceRun {
  kind: 'data' | 'hole';
  end: number;
}

/** The run of the source at `pos` (< limit <= size), cut at `limit`: SEEK_DATA/SEEK_HOLE over its map. */
export function sourceRunAt(map: BlockMap, size: number, pos: number, limit: number): SourceRun {
  let dataAt: number;
  try {
    dataAt = seekHoleData(map, size, pos, 'data');
  } catch (e) {
    if (e instanceof RmapfsError && e.code === 'ENXIO') return { kind: 'hole', end: limit };
    throw e;
  }
  if (dataAt > pos) return { kind: 'hole', end: Math.min(dataAt, limit) };
  return { kind: 'data', end: Math.min(seekHoleData(map, size, pos, 'hole'), limit) };
}
