/**
 * What the filesystem knows about the health of its metadata, per structure
 * instance: each AG's header, free list, free-space btrees, rmap and inode
 * btree (and, per filesystem, the structures outside the AGs). Like XFS's
 * sick/checked masks (xfs_health.c), kept in memory only, for the life of
 * the mount:
 *
 * - a structure is *sick* once a verifier or a cross-check fails while the
 *   filesystem uses it (how 'verifier'), or a scrub or repair finds it
 *   damaged; the first finding is kept (how, when, during what, the message);
 * - it is *healthy* once a scrub found it clean or a repair rebuilt it;
 * - else *unchecked*.
 *
 * It lives in the alloc layer because the allocator reads it: an AG whose
 * free-space metadata is known sick is stepped around for new allocations,
 * as a full one is, and frees there are refused (EUCLEAN) before anything
 * is touched, so a damaged btree is never changed further. The layers above
 * (inodes, scrub, repair, ctl) mark and read it through the same object.
 */
/** The structures of one AG. */
export type AgStructure = 'agh' | 'agfl' | 'bnobt' | 'cntbt' | 'rmapbt' | 'inobt';
/** The structures outside the AGs. */
export type FsStructure = 'superblock' | 'counters';

export const AG_STRUCTURES: readonly AgStructure[] = ['agh', 'agfl', 'bnobt', 'cntbt', 'rmapbt', 'inobt'];

/** What the user is told each structure is. */
export const STRUCTURE_NAMES: Record<AgStructure | FsStructure, string> = {
  agh: 'AG header',
  agfl: 'free list (AGFL)',
  bnobt: 'free-space btree (by block)',
  cntbt: 'free-space btree (by size)',
  rmapbt: 'rmap btree',
  inobt: 'inode btree',
  superblock: 'superblock',
  counters: 'summary counters',
};

/** Every allocation or free in an AG reads or changes these: one of them sick, and the AG is avoided. */
export const SPACE_STRUCTURES: readonly AgStructure[] = ['agh', 'agfl', 'bnobt', 'cntbt', 'rmapbt'];

/** Which structures rmapfs can rebuild online today (issue 12 adds the others). */
export const REPAIRABLE_STRUCTURES: readonly AgStructure[] = ['rmapbt', 'bnobt', 'cntbt'];

/** How a structure was found sick: failing during normal operation, or by a scrub or a repair. */
export type HealthSource = 'verifier' | 'scrub' | 'repair';

export interface SickNote {
  structure: AgStructure | FsStructure;
  how: HealthSource;
  /** When it was found (ms since the epoch). */
  at: number;
  /** What the filesystem was doing: "allocating", "freeing", "scrubbing"... */
  during: string;
  /** The verifier's or check's message. */
  what: string;
}

export type HealthState = 'unchecked' | 'healthy' | 'sick';

/** The health of one set of structures (one AG's, or the filesystem's own). */
export class HealthRecord<S extends AgStructure | FsStructure> {
  private readonly sick = new Map<S, SickNote>();
  private readonly healthy = new Set<S>();

  /** onNewSick hears of each structure that becomes sick (not of a second finding). */
  constructor(private readonly onNewSick: (structure: S) => void = () => undefined) {}

  markSick(structure: S, how: HealthSource, what: string, during: string): void {
    this.healthy.delete(structure);
    if (this.sick.has(structure)) return; // the first finding says when it went bad
    this.sick.set(structure, { structure, how, at: Date.now(), during, what });
    this.onNewSick(structure);
  }

  /** A scrub found it clean, or a repair rebuilt it. */
  markHealthy(structure: S): void {
    this.sick.delete(structure);
    this.healthy.add(structure);
  }

  isSick(structure: S): boolean {
    return this.sick.has(structure);
  }

  /** Whether any of these structures is known sick. */
  anySick(structures: readonly S[]): boolean {
    for (const s of structures) if (this.sick.has(s)) return true;
    return false;
  }

  state(structure: S): HealthState {
    return this.sick.has(structure) ? 'sick' : this.healthy.has(structure) ? 'healthy' : 'unchecked';
  }

  note(structure: S): SickNote | undefined {
    return this.sick.get(structure);
  }

  /** The sick structures' notes, in the order they were found. */
  sickNotes(): SickNote[] {
    return [...this.sick.values()];
  }
}
