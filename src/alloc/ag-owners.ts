/**
 * The static owners of an AG, in one place: what the AG's own metadata says
 * it owns, as rmap records should show it -- the first two blocks (fs), the
 * log (AG 0), the inode btree's blocks (inobt) and inode chunks (inodes), and
 * the "ag" owner's blocks (the free-space and rmap btrees' blocks and the
 * free list). The rmap collector starts from them, the AG scrub checks the
 * rmap against them, and the free-space repairer sets them aside.
 */
import { OWN_AG, OWN_FS, OWN_INOBT, OWN_INODES, OWN_LOG } from '../format/owners';
import { CHUNK_BLOCKS, INODES_PER_BLOCK } from '../format/geometry';
import type { Geometry } from '../format/geometry';
import { OFF_NUMRECS } from '../btree/btree-block';
import { decodeInobt, INODES_PER_CHUNK } from './inode-btree';
import type { AllocGroup } from './ag';

export interface OwnedExtent {
  start: number;
  len: number;
  owner: number;
}

/** The fixed ones: the superblock and AG header blocks, and the log in AG 0. */
export function fixedOwners(agno: number, geo: Geometry): OwnedExtent[] {
  const out: OwnedExtent[] = [{ start: 0, len: 2, owner: OWN_FS }];
  if (agno === 0) out.push({ start: geo.logStart, len: geo.logBlocks, owner: OWN_LOG });
  return out;
}

/**
 * The inode btree's blocks and the inode chunks its records name, pausing
 * after each btree block (online scrub runs it in slices). A record whose
 * chunk is misplaced (not aligned, or past the AG's end) goes to `misplaced`
 * instead.
 */
export function* inodeOwnerSteps(ag: AllocGroup, visit: (e: OwnedExtent) => void,
  misplaced: (startino: number) => void = () => undefined): Generator<void, void, void> {
  yield* ag.ino.walkBlocks((ptr, level, block) => {
    visit({ start: ptr, len: 1, owner: OWN_INOBT });
    if (level !== 0) return;
    const n = block.readUInt16BE(OFF_NUMRECS);
    for (let i = 0; i < n; i++) {
      const r = decodeInobt(block, ag.ino.geo.recOffset(i));
      const chunkBno = r.startino / INODES_PER_BLOCK;
      if (r.startino % INODES_PER_CHUNK !== 0 || chunkBno + CHUNK_BLOCKS > ag.length) misplaced(r.startino);
      else visit({ start: chunkBno, len: CHUNK_BLOCKS, owner: OWN_INODES });
    }
  });
}

/** Every static owner but "ag", sorted by block: what an rmap collection starts from. */
export function staticOwners(ag: AllocGroup, geo: Geometry): OwnedExtent[] {
  const out = fixedOwners(ag.agno, geo);
  const steps = inodeOwnerSteps(ag, (e) => out.push(e));
  while (steps.next().done !== true) { /* to the end */ }
  return out.sort((a, b) => a.start - b.start);
}

/** Which btrees' blocks the "ag" owner's extents are asked of. */
export type AgOwnedTree = 'bno' | 'cnt' | 'rmap';

/**
 * The "ag" owner's blocks, one per entry (unmerged): those of the given
 * btrees, then the free list's.
 */
export function agOwnedBlocks(ag: AllocGroup, trees: readonly AgOwnedTree[]): OwnedExtent[] {
  const out: OwnedExtent[] = [];
  for (const name of trees) ag[name].visitBlocks((ptr) => { out.push({ start: ptr, len: 1, owner: OWN_AG }); });
  for (const b of ag.agflBlocks()) out.push({ start: b, len: 1, owner: OWN_AG });
  return out;
}

/**
 * Why a file's extent (or fork block) cannot be right by itself, or null: it
 * lies outside the filesystem, runs across the end of its AG, or over the
 * AG's fixed metadata (superblock, AG headers, the log) -- space no file can
 * ever be given, whatever the rmap says. (A zero-length extent is the
 * btree verifier's to report.)
 */
export function impossibleFileExtent(geo: Geometry, fsbno: number, blockcount: number): string | null {
  if (fsbno < 0 || fsbno + blockcount > geo.totalBlocks) return 'is outside the filesystem';
  const agno = geo.agnoOf(fsbno);
  const agbno = geo.agbnoOf(fsbno);
  if (agbno + blockcount > geo.agLength(agno)) return `runs past the end of AG ${agno}`;
  for (const o of fixedOwners(agno, geo)) {
    if (agbno < o.start + o.len && o.start < agbno + blockcount) return `lies over AG ${agno}'s ${o.owner === OWN_LOG ? 'log' : 'superblock and headers'}`;
  }
  return null;
}
