/**
 * Checks of what the AG scrub does not look at: each AG's copy of the
 * superblock, and the AG header's counts that the filesystem's summary
 * counters (statfs) are made of -- free extents, inodes and free inodes
 * (free blocks and the longest extent are the AG scrub's).
 */
import { RmapfsError } from '../errors';
import type { AllocGroup } from '../alloc/ag';
import { readField } from '../format/fields';
import { AGH_AGBNO, OFF_FREE_EXTENTS, OFF_FREE_INODES, OFF_INODE_COUNT } from '../format/ag-header';
import { SUPERBLOCK_FIELDS, superblockBufOps } from '../format/superblock';
import { decodeInobt, INODES_PER_CHUNK } from '../alloc/inode-btree';
import type { AgScrubResult } from './ag-scrub';
import { eachRecord } from './common';
import type { ProblemList, ScrubSource, ScrubSteps } from './common';

/** Superblock fields every AG's copy must share with the primary (state, counters and times may differ). */
export const SECONDARY_SB_FIELDS: readonly string[] = [
  'magic', 'version', 'features', 'blockSize', 'uuid', 'totalBlocks', 'agBlocks', 'agCount', 'logStart', 'logBlocks',
  'inodeSize', 'inodesPerChunk', 'createdSec', 'label',
];

/** The primary superblock reads and verifies (the open verified it too; a live view reads its frozen copy). */
export function scrubPrimarySuperblock(src: ScrubSource, problems: ProblemList): void {
  try {
    src.cache.read(0, superblockBufOps(src.geo.uuid));
  } catch (e) {
    if (!(e instanceof RmapfsError)) throw e;
    problems.add('superblock', -1, 0, e.message);
  }
}

/** AG agno's copy of the superblock (AG 0 holds the primary): intact, and the same filesystem and geometry. */
export function scrubSecondarySuperblock(src: ScrubSource, agno: number, problems: ProblemList): void {
  if (agno === 0) return;
  const ops = superblockBufOps(src.geo.uuid);
  const primary = src.cache.read(0, ops).data;
  const bno = src.geo.agStart(agno);
  let copy: Buffer;
  try {
    copy = src.cache.read(bno, ops).data;
  } catch (e) {
    if (!(e instanceof RmapfsError)) throw e;
    problems.add('superblock', agno, bno, `secondary: ${e.message.replace(/^superblock block \d+: /, '')}`);
    return;
  }
  for (const name of SECONDARY_SB_FIELDS) {
    const f = SUPERBLOCK_FIELDS.find((x) => x.name === name)!;
    const want = readField(primary, 0, f);
    const got = readField(copy, 0, f);
    if (got !== want) problems.add('superblock', agno, bno, `secondary: ${name} ${JSON.stringify(got)}, the primary has ${JSON.stringify(want)}`);
  }
}

/** The header's free-extent, inode and free-inode counts against the btrees (after the AG scrub, which found them readable). */
export function* scrubAgCounters(ag: AllocGroup, scrub: AgScrubResult, problems: ProblemList): ScrubSteps<void> {
  const h = ag.header().data;
  const where = ag.start + AGH_AGBNO;
  const freeExtents = h.readUInt32BE(OFF_FREE_EXTENTS);
  if (freeExtents !== scrub.freeExtents) {
    problems.add('AG header', ag.agno, where, `free extents ${freeExtents}, the bnobt holds ${scrub.freeExtents}`, 'counters');
  }
  let inodes = 0;
  let free = 0;
  yield* eachRecord(ag.ino, (b, off) => {
    inodes += INODES_PER_CHUNK;
    free += decodeInobt(b, off).freecount;
  }, 32);
  if (h.readUInt32BE(OFF_INODE_COUNT) !== inodes) {
    problems.add('AG header', ag.agno, where, `inode count ${h.readUInt32BE(OFF_INODE_COUNT)}, the inobt holds ${inodes}`, 'counters');
  }
  if (h.readUInt32BE(OFF_FREE_INODES) !== free) {
    problems.add('AG header', ag.agno, where, `free inodes ${h.readUInt32BE(OFF_FREE_INODES)}, the inobt holds ${free}`, 'counters');
  }
}
