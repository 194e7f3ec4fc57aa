/**
 * What the filesystem knows about the health of its metadata, per structure
 * instance, one model for all (as XFS's sick/checked masks per filesystem,
 * per AG and per inode, xfs_health.c): each AG's structures (header, free
 * list, free-space btrees, rmap, inode btree), each inode's (core, block
 * map, directory, attributes, symlink target) and the filesystem's own
 * (superblock, summary counters, link counts). Kept in memory only, for
 * the life of the mount: a remount starts everything unchecked.
 *
 * - a structure is *sick* once a verifier or a cross-check fails while the
 *   filesystem uses it (how 'verifier'), or a scrub or repair finds it
 *   damaged; the first finding is kept (how, when, during what, the
 *   message), and a repair that failed adds why to it;
 * - it is *healthy* once a scrub found it clean or a repair rebuilt it;
 * - else *unchecked*.
 *
 * Every change is an event (`HealthBus`): `rmapfs events` streams them and
 * the daemon logs them to syslog.
 *
 * It lives in the alloc layer because the allocator reads it: an AG whose
 * free-space metadata is known sick is stepped around for new allocations,
 * as a full one is, and frees there are refused (EUCLEAN) before anything
 * is touched, so a damaged btree is never changed further. The layers above
 * (inodes, scrub, repair, ctl) mark and read it through the same objects.
 */
import { STRUCTURES, structureLabel } from '../format/structures';
import type { AgStructure, FsStructure, InodeStructure, StructureName } from '../format/structures';

export type { AgStructure, FsStructure, InodeStructure, StructureName };
/** Labels for messages: the structure table's (format/structures.ts). */
export { structureLabel };

/** The structures every AG has, in table order. */
export const AG_STRUCTURES: readonly AgStructure[] = STRUCTURES.flatMap((s) => (s.scope === 'ag' ? [s.name] : []));
/** The filesystem's own structures, in table order. */
export const FS_STRUCTURES: readonly FsStructure[] = STRUCTURES.flatMap((s) => (s.scope === 'filesystem' ? [s.name] : []));
/** The structures an inode may have, in table order. */
export const INODE_STRUCTURES: readonly InodeStructure[] = STRUCTURES.flatMap((s) => (s.scope === 'inode' ? [s.name] : []));

/** Every allocation or free in an AG reads or changes these: one of them sick, and the AG is avoided. */
export const SPACE_STRUCTURES: readonly AgStructure[] = ['agh', 'agfl', 'bnobt', 'cntbt', 'rmapbt'];

/** How a structure's state was found: failing during normal operation, or by a scrub or a repair. */
export type HealthSource = 'verifier' | 'scrub' | 'repair';

export type HealthState = 'unchecked' | 'healthy' | 'sick';

/** Where a structure instance is: the filesystem's own, an AG's, or an inode's (with the AG it is in). */
export type HealthPlace = { kind: 'filesystem' } | { kind: 'ag'; agno: number } | { kind: 'inode'; agno: number; ino: number };

/** What is known of one structure instance that is not unchecked. */
export interface HealthNote {
  structure: StructureName;
  state: 'healthy' | 'sick';
  how: HealthSource;
  /** When it was found so (ms since the epoch). */
  at: number;
  /** What the filesystem was doing: "allocating", "reading inode 131", "scrubbing"... */
  during: string;
  /** The verifier's or check's message (sick), or what made it healthy. */
  what: string;
  /** The last repair of it that failed, and why (it stays sick). */
  repairFailed?: { at: number; why: string };
}

/** A sick structure's note (the state is 'sick'). */
export type SickNote = HealthNote & { state: 'sick' };

/** One change of health, as `rmapfs events` and syslog tell it. */
export interface HealthEvent {
  kind: 'health';
  place: HealthPlace;
  structure: StructureName;
  /** The state now ('sick' also for a failed repair of a sick structure: `repairFailed` says so). */
  state: HealthState;
  /** The state before. */
  was: HealthState;
  how: HealthSource;
  at: number;
  during: string;
  what: string;
  repairFailed?: string;
}

/** Who hears of health changes: the daemon's event stream and syslog. */
export class HealthBus {
  private readonly listeners = new Set<(e: HealthEvent) => void>();

  listen(listener: (e: HealthEvent) => void): () => void {
    this.listeners.add(listener);
    return () => { this.listeners.delete(listener); };
  }

  emit(e: HealthEvent): void {
    // A listener that fails (a closed stream) must not fail the operation that changed the health.
    for (const l of this.listeners) {
      try {
        l(e);
      } catch {
        this.listeners.delete(l);
      }
    }
  }
}

/** The health of one set of structures: one AG's, one inode's, or the filesystem's own. */
export class HealthRecord<S extends StructureName> {
  private readonly notes = new Map<S, HealthNote>();

  /** onNewSick hears of each structure that becomes sick (not of a second finding). */
  constructor(readonly place: HealthPlace = { kind: 'filesystem' }, private readonly bus: HealthBus | null = null,
    private readonly onNewSick: (structure: S) => void = () => undefined) {}

  markSick(structure: S, how: HealthSource, what: string, during: string): void {
    const before = this.notes.get(structure);
    if (before?.state === 'sick') return; // the first finding says when it went bad
    const note: HealthNote = { structure, state: 'sick', how, at: Date.now(), during, what };
    this.notes.set(structure, note);
    this.onNewSick(structure);
    this.emit(note, before?.state ?? 'unchecked');
  }

  /** A scrub found it clean, or a repair rebuilt it (or found it clean). */
  markHealthy(structure: S, how: HealthSource = 'repair', during = 'rebuilding it', what = how === 'scrub' ? 'clean' : 'rebuilt'): void {
    const before = this.notes.get(structure);
    const note: HealthNote = { structure, state: 'healthy', how, at: Date.now(), during, what };
    this.notes.set(structure, note);
    // A healthy structure found healthy again is no news.
    if (before?.state !== 'healthy') this.emit(note, before?.state ?? 'unchecked');
  }

  /** A repair of a sick structure failed: it stays sick, and says why. */
  noteRepairFailed(structure: S, why: string, during = 'repairing it'): void {
    const note = this.notes.get(structure);
    if (note === undefined || note.state !== 'sick') this.markSick(structure, 'repair', why, during);
    const sick = this.notes.get(structure)!;
    sick.repairFailed = { at: Date.now(), why };
    this.bus?.emit({ ...this.eventOf(sick, 'sick'), repairFailed: why });
  }

  isSick(structure: S): boolean {
    return this.notes.get(structure)?.state === 'sick';
  }

  /** Whether any of these structures is known sick. */
  anySick(structures: readonly S[]): boolean {
    for (const s of structures) if (this.isSick(s)) return true;
    return false;
  }

  state(structure: S): HealthState {
    return this.notes.get(structure)?.state ?? 'unchecked';
  }

  /** The sick structure's note (undefined when it is not sick). */
  note(structure: S): SickNote | undefined {
    const n = this.notes.get(structure);
    return n?.state === 'sick' ? (n as SickNote) : undefined;
  }

  /** What is known of it: undefined while unchecked. */
  known(structure: S): HealthNote | undefined {
    return this.notes.get(structure);
  }

  /** The sick structures' notes, in the order they were found. */
  sickNotes(): SickNote[] {
    return [...this.notes.values()].filter((n): n is SickNote => n.state === 'sick');
  }

  /** Whether anything is known (a record that knows nothing can be dropped). */
  get empty(): boolean {
    return this.notes.size === 0;
  }

  /** Forgets a structure: it is unchecked again (an inode freed; its number may come back as another file). */
  forget(structure: S): void {
    this.notes.delete(structure);
  }

  private eventOf(n: HealthNote, was: HealthState): HealthEvent {
    return { kind: 'health', place: this.place, structure: n.structure, state: n.state, was, how: n.how, at: n.at, during: n.during, what: n.what };
  }

  private emit(n: HealthNote, was: HealthState): void {
    this.bus?.emit(this.eventOf(n, was));
  }
}

/**
 * How many inodes' health is kept: every sick one first, then the most
 * recently checked healthy ones, up to this many in all (a few hundred
 * bytes each). Beyond it the oldest healthy record goes (it becomes
 * unchecked); when only sick ones are left the oldest of those goes too,
 * counted in `sickForgotten` (status tells a scrub to find them again), as
 * XFS marks an AG's "inodes" sick when it reclaims a sick inode.
 */
export const INODE_HEALTH_LIMIT = 4096;

/** The health of each inode's structures, kept for sick and recently checked inodes only (INODE_HEALTH_LIMIT). */
export class InodeHealthTable {
  /** In the order last touched (a Map keeps insertion order: touching is delete + set). */
  private readonly records = new Map<number, HealthRecord<InodeStructure>>();
  /** Sick inode records dropped to keep the bound since the mount. */
  sickForgotten = 0;
  /** The last check of every inode (a scrub's or a repair's file pass), or null: none since the mount. */
  lastFullCheck: { at: number; how: HealthSource } | null = null;
  /**
   * The FUSE request being served (its name: "lookup", "read"...), null between requests: said in a
   * note when a verifier fails meanwhile. A name, not a sentence, so setting it per request costs nothing.
   */
  request: string | null = null;

  /** What the filesystem is doing with inodes now, as a note says it. */
  get activity(): string {
    return this.request === null ? 'using it' : `serving ${this.request}`;
  }

  constructor(private readonly agnoOf: (ino: number) => number, private readonly bus: HealthBus | null = null,
    readonly limit = INODE_HEALTH_LIMIT) {}

  /** The inode's record, if anything is known of it. */
  get(ino: number): HealthRecord<InodeStructure> | undefined {
    return this.records.get(ino);
  }

  state(ino: number, structure: InodeStructure): HealthState {
    return this.records.get(ino)?.state(structure) ?? 'unchecked';
  }

  isSick(ino: number, structure: InodeStructure): boolean {
    return this.state(ino, structure) === 'sick';
  }

  markSick(ino: number, structure: InodeStructure, how: HealthSource, what: string, during = this.activity): void {
    this.touch(ino).markSick(structure, how, what, during);
    this.trim();
  }

  markHealthy(ino: number, structure: InodeStructure, how: HealthSource, during: string, what?: string): void {
    this.touch(ino).markHealthy(structure, how, during, what);
    this.trim();
  }

  noteRepairFailed(ino: number, structure: InodeStructure, why: string, during?: string): void {
    this.touch(ino).noteRepairFailed(structure, why, during);
    this.trim();
  }

  /** The inode number was freed or taken by a new file: nothing is known of it. */
  forget(ino: number): void {
    this.records.delete(ino);
  }

  /** Every inode with a record, lowest number first. */
  inodes(): number[] {
    return [...this.records.keys()].sort((a, b) => a - b);
  }

  get size(): number {
    return this.records.size;
  }

  private touch(ino: number): HealthRecord<InodeStructure> {
    let r = this.records.get(ino);
    if (r === undefined) r = new HealthRecord<InodeStructure>({ kind: 'inode', agno: this.agnoOf(ino), ino }, this.bus);
    else this.records.delete(ino);
    this.records.set(ino, r);
    return r;
  }

  /** Back to the bound: the oldest healthy records first, then (counted) the oldest sick ones. */
  private trim(): void {
    if (this.records.size <= this.limit) return;
    for (const [ino, r] of this.records) {
      if (this.records.size <= this.limit) return;
      if (r.sickNotes().length === 0) this.records.delete(ino);
    }
    for (const ino of this.records.keys()) {
      if (this.records.size <= this.limit) return;
      this.records.delete(ino);
      this.sickForgotten++;
    }
  }
}
