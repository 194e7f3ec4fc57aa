/**
 * The structure table (like XFS's scrub dispatch table, fs/xfs/scrub/scrub.c):
 * one entry per metadata structure -- its name, scope and dependencies (the
 * declarative half, format/structures.ts, shared with the health record),
 * the checker that finds its damage and the repairer that rebuilds it (or
 * none yet). The offline `check`, the online `scrub` and `repair`, and the
 * fuzz loop all walk this table: what one checks, all check.
 *
 * It sits above scrub and repair (it names the checkers of one and the
 * repairers of the other), below the daemon and the commands that use it.
 *
 * Checkers are generators that pause at safe points (scrub/common.ts). Most
 * of them read one shared walk: the AG scrub checks an AG's header, btrees,
 * free space and coverage together (each cross-checks the others), and the
 * file pass checks every inode against the rmap; they run once per check
 * (remembered in the CheckRun). A check reports the problems of the
 * structures asked for, whichever walk found them (the file pass finds rmap
 * records no file holds), in the order the walks found them (superblocks,
 * then AG by AG, then the files).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { ALL_STRUCTURES, STRUCTURES, isInodeStructure, isStructureName, structureFacts } from '../format/structures';
import type { InodeStructure, StructureFacts, StructureName, StructureScope } from '../format/structures';
import { scrubAgSteps } from '../scrub/ag-scrub';
import type { AgScrubResult } from '../scrub/ag-scrub';
import { scrubInodesSteps } from '../scrub/inode-scrub';
import type { InodeScrubOptions } from '../scrub/inode-scrub';
import { MappingDigest } from '../rmap/rmap-digest';
import type { RebuiltRmaps } from '../rmap/rmap-digest';
import { scrubAgCounters, scrubPrimarySuperblock, scrubSecondarySuperblock } from '../scrub/sb-scrub';
import { ProblemList } from '../scrub/common';
import type { Problem, ScrubSource, ScrubSteps } from '../scrub/common';
import { structureOfProblem } from '../scrub/health-marks';
import { repairRmaps } from '../repair/rmap-repair';
import type { RepairOptions, RmapRepairResult } from '../repair/rmap-repair';
import { repairFreeSpace } from '../repair/free-space-repair';
import type { FreeSpaceRepairResult } from '../repair/free-space-repair';
import { repairAgHeader, repairFreeList, repairSecondarySuperblock, repairSummaryCounters } from '../repair/ag-header-repair';
import type { HeaderRepairResult } from '../repair/ag-header-repair';
import { repairInodeBtree } from '../repair/inobt-repair';
import type { InodeBtreeRepairResult } from '../repair/inobt-repair';
import type { FileRepairOptions, FileRepairResult } from '../repair/file-repair';
import { repairBlockMap } from '../repair/bmap-repair';
import { repairInodeCore } from '../repair/inode-repair';
import { repairDirectory } from '../repair/dir-repair';
import { repairXattrs } from '../repair/attr-repair';
import { repairSymlink } from '../repair/symlink-repair';
import { repairLinkCounts } from '../repair/nlinks-repair';
import type { Rmapfs } from '../fs/rmapfs';
import type { LiveChecker } from '../scrub/live-scrub';

const log = createDebug('rmapfs:check');

/** Finds the damage of one structure (agno: the AG, for AG-scope entries; else null), reporting into the run. */
export type Checker = (run: CheckRun, agno: number | null) => ScrubSteps<void>;

/** What one rebuild of one AG reports (the rmap's, the free-space btrees', the inode btree's, or a header's: the small repairers'). */
export type RepairResult = RmapRepairResult | FreeSpaceRepairResult | InodeBtreeRepairResult | HeaderRepairResult | FileRepairResult;

/** Rebuilds one structure in these AGs of a live filesystem. */
export type Repairer = (fsx: Rmapfs, agnos: readonly number[], options: RepairOptions) => Promise<RepairResult[]>;

/** A repairer of one AG at a time, as the table's (the commit of each AG told to the caller). */
function perAg(repairOne: (fsx: Rmapfs, agno: number, options: RepairOptions) => Promise<RepairResult> | RepairResult): Repairer {
  return async (fsx, agnos, options) => {
    const results: RepairResult[] = [];
    for (const agno of agnos) {
      options.onCommit?.(agno, false);
      results.push(await repairOne(fsx, agno, options));
      options.onCommit?.(agno, true);
    }
    return results;
  };
}

/** Rebuilds one structure of each of these inodes of a live filesystem (each in its own transaction). */
export type FileRepairer = (fsx: Rmapfs, inos: readonly number[], options: FileRepairOptions) => Promise<FileRepairResult[]>;

/**
 * A repairer of one inode at a time, as the table's. The failure of one
 * (an RmapfsError: damage it cannot rebuild from, the file went away) is
 * that object's result, and the others go on; a bug stops the repair.
 */
function perInode(type: InodeStructure, repairOne: (fsx: Rmapfs, ino: number, options: FileRepairOptions) => Promise<FileRepairResult>): FileRepairer {
  return async (fsx, inos, options) => {
    const results: FileRepairResult[] = [];
    for (const ino of inos) {
      if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `repair cancelled before inode ${ino}`);
      try {
        results.push(await repairOne(fsx, ino, options));
      } catch (e) {
        if (!(e instanceof RmapfsError) || e.code === 'ECANCELED') throw e;
        results.push({ type, ino, path: null, changes: [], commitPauseMs: 0, error: e.message });
      }
    }
    return results;
  };
}

/** Both free-space btrees of each AG, rebuilt together from its rmap (one repairer serves bnobt and cntbt). */
const repairFreeSpaceBtrees = perAg(repairFreeSpace);

/** Each AG's inode btree, from its rmap's inode chunks and the inode cores. */
const repairInodeBtrees = perAg(repairInodeBtree);

export interface FsckEntry extends StructureFacts {
  readonly name: StructureName;
  readonly check: Checker;
  /** The repairer of a structure of the filesystem or of an AG. */
  readonly repair: Repairer | null;
  /** The repairer of a structure of an inode (scope 'inode'). */
  readonly repairFiles: FileRepairer | null;
}

/** Where a problem sorts: the superblocks first, then AG by AG, then the files (the walks' own order). */
const enum Phase { Superblocks = 0, Ags = 1, Files = 2 }

interface FoundProblem {
  problem: Problem;
  type: StructureName;
  phase: Phase;
  agno: number;
  seq: number;
}

/** What the AG scrub of one AG found: every problem, each with its structure. */
interface AgPass {
  result: AgScrubResult | null;
  found: FoundProblem[];
  /** The file owners' records of its rmap, digested, when the check was told what a rebuild built there. */
  fileRecords: MappingDigest | null;
}

export interface CheckRunOptions {
  /**
   * The AGs whose rmap an offline repair just rebuilt from the files, and
   * what it built (rmap-digest.ts): where the rmap and the files are still
   * exactly that, the file pass does not compare them (the comparison of a
   * rebuild's input with its own output); everything else is checked.
   */
  rebuiltRmaps?: RebuiltRmaps;
}

/** Problems each walk keeps in full (the rest are counted). */
const KEPT_PER_WALK = 1000;

/** One check: the walks run so far and what the entries asked have reported. */
export class CheckRun {
  private seq = 0;
  private readonly found: FoundProblem[] = [];
  private readonly agPasses = new Map<number, AgPass>();
  private filePass: FoundProblem[] | null = null;
  /** Problems the walks found but did not keep, in walks whose every entry was asked. */
  dropped = 0;
  /** Failures of a checker itself (a bug, not the filesystem's). */
  readonly internalErrors: string[] = [];
  inodesChecked = false;
  /** The AGs whose files the file pass did not compare with the rmap: it is the one rebuilt from them (CheckRunOptions). */
  rmapRebuiltFromFiles: number[] = [];

  constructor(readonly src: ScrubSource, readonly selected: ReadonlySet<StructureName>, readonly options: CheckRunOptions = {}) {}

  /** Keeps what a walk found, each problem with its structure (`fallback` for one the label does not say). */
  private keep(list: ProblemList, phase: Phase, agno: number, fallback: StructureName): FoundProblem[] {
    if (list.dropped > 0 && [...STRUCTURES].filter((s) => phaseOf(s.name) === phase).every((s) => this.selected.has(s.name))) {
      this.dropped += list.dropped;
    }
    const found = list.problems.map((problem) => ({ problem, type: structureOfProblem(problem) ?? fallback, phase, agno, seq: this.seq++ }));
    this.found.push(...found);
    return found;
  }

  /** A problem of `type` a checker threw rather than reported. */
  failed(type: StructureName, agno: number | null, label: string, message: string): void {
    const list = new ProblemList();
    list.add(label, agno ?? -1, -1, message, type);
    this.keep(list, phaseOf(type), agno ?? -1, type);
  }

  /** Runs a walk writing into a ProblemList (its problems are `type`'s unless their labels say otherwise). */
  *walk(type: StructureName, phase: Phase, agno: number, steps: (list: ProblemList) => ScrubSteps<void>): ScrubSteps<void> {
    const list = new ProblemList(KEPT_PER_WALK);
    yield* steps(list);
    this.keep(list, phase, agno, type);
  }

  /** The AG scrub of one AG, run once per check. */
  *agPass(agno: number): ScrubSteps<AgPass> {
    const known = this.agPasses.get(agno);
    if (known !== undefined) return known;
    const list = new ProblemList(KEPT_PER_WALK);
    let result: AgScrubResult | null = null;
    const fileRecords = this.options.rebuiltRmaps?.has(agno) === true ? new MappingDigest() : null;
    try {
      result = yield* scrubAgSteps(this.src.alloc.ag(agno), this.src.geo, list, fileRecords === null ? {} : { fileRecords });
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      list.add('AG', agno, -1, e.message);
    }
    const pass: AgPass = { result, found: this.keep(list, Phase.Ags, agno, 'agh'), fileRecords };
    this.agPasses.set(agno, pass);
    return pass;
  }

  /** The files against the AG metadata, run once per check, when every AG's btrees could be walked. */
  *files(): ScrubSteps<FoundProblem[]> {
    if (this.filePass !== null) return this.filePass;
    let readable = true;
    for (const ag of this.src.alloc.ags) readable = ((yield* this.agPass(ag.agno)).result?.treesReadable ?? false) && readable;
    let list = new ProblemList(KEPT_PER_WALK);
    if (readable) {
      // An AG whose scrub found nothing wrong with its rmap vouches for it against a file's map.
      const rmapSound = (agno: number): boolean => this.agPasses.get(agno)?.found.every((f) => f.type !== 'rmapbt') ?? false;
      const digested = this.rebuiltAsBuilt(rmapSound);
      let complete = yield* this.runFilePass(list, { rmapSound, filesDigested: digested });
      const rebuilt = this.options.rebuiltRmaps;
      const differ = [...digested].filter(([agno, d]) => !d.equals(rebuilt!.get(agno)!.files)).map(([agno]) => agno);
      if (complete && digested.size > 0 && differ.length === 0) {
        this.rmapRebuiltFromFiles = [...digested.keys()].sort((a, b) => a - b);
        log('files of AG %s not compared with their rmap: the one rebuilt from them', this.rmapRebuiltFromFiles.join(', '));
      } else if (digested.size > 0) {
        // The forks are not (all) what the rebuild read, or the pass stopped: every mapping compared after all.
        log('files of AG %s not what their rmap was rebuilt from: compared with it', (differ.length > 0 ? differ : [...digested.keys()]).join(', '));
        list = new ProblemList(KEPT_PER_WALK);
        complete = yield* this.runFilePass(list, { rmapSound });
      }
      this.inodesChecked = true;
    } else if (!ALL_STRUCTURES.some((s) => structureFacts(s).scope === 'ag' && this.selected.has(s))) {
      // The AG problems that stopped it are not being reported: say why the files were not checked.
      list.add('inode', -1, -1, 'files not checked: the btrees of an AG cannot be walked (check its AG structures)');
    }
    this.filePass = this.keep(list, Phase.Files, -1, 'inode');
    return this.filePass;
  }

  /** The file pass into list; false when it stopped on damage it could not get past. */
  private *runFilePass(list: ProblemList, options: InodeScrubOptions): ScrubSteps<boolean> {
    try {
      yield* scrubInodesSteps(this.src, list, options);
      return true;
    } catch (e) {
      if (!(e instanceof RmapfsError)) throw e;
      list.add('inode', -1, -1, e.message);
      return false;
    }
  }

  /**
   * The AGs whose rmap is, record for record, what the offline rebuild wrote
   * (the AG pass's digest of its file records is the rebuild's) and sound by
   * the AG pass: each with an empty digest for the file pass to fill.
   */
  private rebuiltAsBuilt(rmapSound: (agno: number) => boolean): Map<number, MappingDigest> {
    const out = new Map<number, MappingDigest>();
    for (const [agno, built] of this.options.rebuiltRmaps ?? []) {
      const records = this.agPasses.get(agno)?.fileRecords ?? null;
      if (records !== null && records.equals(built.records) && rmapSound(agno)) out.set(agno, new MappingDigest());
    }
    return out;
  }

  /** Every AG whose scrub ran. */
  agResults(): AgScrubResult[] {
    return [...this.agPasses.values()].flatMap((p) => (p.result === null ? [] : [p.result]));
  }

  get agsChecked(): number {
    return this.agPasses.size;
  }

  /** What the walks found of the structures asked for, in the walks' order. */
  problems(): Problem[] {
    return this.found.filter((f) => this.selected.has(f.type)).sort((a, b) => a.phase - b.phase || (a.phase === Phase.Ags ? a.agno - b.agno : 0) || a.seq - b.seq)
      .map((f) => f.problem);
  }
}

function phaseOf(name: StructureName): Phase {
  if (name === 'superblock' || name === 'secondary-sb') return Phase.Superblocks;
  return structureFacts(name).scope === 'inode' ? Phase.Files : Phase.Ags;
}

/** An AG structure: checked by its AG's scrub. */
function* agScrubChecker(run: CheckRun, agno: number | null): ScrubSteps<void> {
  yield* run.agPass(agno!);
}

/** A file structure: checked by the file pass. */
function* fileChecker(run: CheckRun): ScrubSteps<void> {
  yield* run.files();
}

const CHECKERS: Record<StructureName, Checker> = {
  *superblock(run) {
    yield* run.walk('superblock', Phase.Superblocks, -1, function* (list) { scrubPrimarySuperblock(run.src, list); });
  },
  *'secondary-sb'(run, agno) {
    yield* run.walk('secondary-sb', Phase.Superblocks, agno!, function* (list) { scrubSecondarySuperblock(run.src, agno!, list); });
  },
  agh: agScrubChecker,
  agfl: agScrubChecker,
  bnobt: agScrubChecker,
  cntbt: agScrubChecker,
  rmapbt: agScrubChecker,
  inobt: agScrubChecker,
  // The AG headers' counts are what statfs sums: checked for every AG whose btrees could be walked.
  *counters(run, agno) {
    for (const ag of agno === null ? run.src.alloc.ags : [run.src.alloc.ag(agno)]) {
      const scrub = (yield* run.agPass(ag.agno)).result;
      if (scrub === null || !scrub.treesReadable) continue;
      yield* run.walk('counters', Phase.Ags, ag.agno, (list) => scrubAgCounters(ag, scrub, list));
    }
  },
  inode: fileChecker,
  bmap: fileChecker,
  directory: fileChecker,
  xattr: fileChecker,
  symlink: fileChecker,
  nlinks: fileChecker,
};

/** A structure's repairer: per inode for the inode ones, else per AG (or filesystem). */
type RepairerOf<N extends StructureName> = N extends InodeStructure ? FileRepairer : Repairer;

const REPAIRERS: { [N in StructureName]?: RepairerOf<N> } = {
  'secondary-sb': perAg((fsx, agno) => repairSecondarySuperblock(fsx, agno)),
  agh: perAg((fsx, agno) => repairAgHeader(fsx, agno)),
  agfl: perAg(repairFreeList),
  // One per filesystem: every AG's counts, in one transaction.
  counters: async (fsx) => [repairSummaryCounters(fsx)],
  rmapbt: repairRmaps,
  bnobt: repairFreeSpaceBtrees,
  cntbt: repairFreeSpaceBtrees,
  inobt: repairInodeBtrees,
  inode: perInode('inode', repairInodeCore),
  bmap: perInode('bmap', repairBlockMap),
  directory: perInode('directory', repairDirectory),
  xattr: perInode('xattr', repairXattrs),
  symlink: perInode('symlink', repairSymlink),
  // One scan of every directory; a result per inode whose count it fixed (or that it moved to /lost+found).
  nlinks: async (fsx, _agnos, options) => repairLinkCounts(fsx, options),
};

function repairersOf(name: StructureName): Pick<FsckEntry, 'repair' | 'repairFiles'> {
  if (isInodeStructure(name)) return { repair: null, repairFiles: REPAIRERS[name] ?? null };
  return { repair: REPAIRERS[name] ?? null, repairFiles: null };
}

/** The table: every structure, in the order checks walk them. */
export const FSCK_TABLE: readonly FsckEntry[] = STRUCTURES.map((s) => ({
  ...s, check: CHECKERS[s.name], ...repairersOf(s.name),
}));

export function fsckEntry(name: StructureName): FsckEntry {
  return FSCK_TABLE.find((e) => e.name === name)!;
}

export function isRepairable(name: StructureName): boolean {
  const entry = fsckEntry(name);
  return entry.repair !== null || entry.repairFiles !== null;
}

/**
 * The structures a command asked for: `types` (null: every one), limited to
 * the AG ones when an AG is named, to the inode ones when an inode is. A
 * type that does not exist, or one of another scope than the AG or inode
 * named, is EINVAL.
 */
export function selectStructures(types: readonly string[] | null, agno: number | null, ino: number | null = null): StructureName[] {
  if (agno !== null && ino !== null) throw new RmapfsError('EINVAL', '--ag and --inode select different structures: give one');
  const scope: StructureScope | null = agno !== null ? 'ag' : ino !== null ? 'inode' : null;
  if (types === null) return ALL_STRUCTURES.filter((s) => scope === null || structureFacts(s).scope === scope);
  const out: StructureName[] = [];
  for (const t of types) {
    if (!isStructureName(t)) throw new RmapfsError('EINVAL', `no structure type '${t}' (--type list names them)`);
    const its = structureFacts(t).scope;
    if (scope !== null && its !== scope) {
      throw new RmapfsError('EINVAL', `--${scope === 'ag' ? 'ag' : 'inode'} selects ${scope === 'ag' ? 'AG' : 'inode'} structures; ${t} is one per ${its === 'ag' ? 'AG' : its}`);
    }
    if (!out.includes(t)) out.push(t);
  }
  return out;
}

/** The structures of a scope, in table order. */
export function structuresOfScope(scope: StructureScope): StructureName[] {
  return ALL_STRUCTURES.filter((s) => structureFacts(s).scope === scope);
}

/** What the rebuild of `name` reads in every AG to find its sources (see StructureFacts.findsSourcesThrough). */
export function sourcesFoundThrough(name: StructureName): StructureName[] {
  return (structureFacts(name).findsSourcesThrough ?? []).filter(isStructureName);
}

/**
 * `names` in an order where each comes after everything it depends on
 * (directly or not), and after what its rebuild finds its sources through
 * when that was found damaged (`foundDamaged`, default all of them): it goes
 * first, though it depends on this one -- its own rebuild reads only its AG's
 * part. A sound one is not rebuilt first (--force-rebuild): the rmap, which
 * may be what is damaged, would be its source.
 */
export function dependencyOrder(names: readonly StructureName[], foundDamaged: readonly StructureName[] = names): StructureName[] {
  const out: StructureName[] = [];
  const visiting = new Set<StructureName>();
  const visit = (n: StructureName): void => {
    if (out.includes(n) || visiting.has(n)) return;
    visiting.add(n);
    for (const f of sourcesFoundThrough(n)) if (foundDamaged.includes(f)) visit(f);
    for (const d of structureFacts(n).dependsOn) {
      // The one cycle: what finds its sources through n comes after n, though n is rebuilt from it.
      if (isStructureName(d) && !(foundDamaged.includes(n) && sourcesFoundThrough(d).includes(n))) visit(d);
    }
    visiting.delete(n);
    out.push(n);
  };
  for (const n of names) visit(n);
  return out.filter((n) => names.includes(n));
}

export interface CheckTotals {
  agsChecked: number;
  rmapRecords: number;
  freeExtents: number;
  inodesChecked: boolean;
  /** The AGs whose files were not compared with the rmap, as it is the one rebuilt from them (CheckRunOptions). */
  rmapRebuiltFromFiles: number[];
  internalErrors: string[];
}

/**
 * Runs the checkers of `selected` (table order; the AG ones over agno, or
 * every AG) against src, adding what they find to problems. A checker that
 * fails with anything but an RmapfsError is an internal error (kept, the
 * others go on); an RmapfsError is a problem of its structure.
 */
export function* checkStructures(src: ScrubSource, selected: readonly StructureName[], agno: number | null,
  problems: ProblemList, options: CheckRunOptions = {}): ScrubSteps<CheckTotals> {
  const run = new CheckRun(src, new Set(selected), options);
  const agnos = agno === null ? src.alloc.ags.map((a) => a.agno) : [agno];
  for (const entry of FSCK_TABLE) {
    if (!run.selected.has(entry.name)) continue;
    for (const where of entry.scope === 'ag' ? agnos : [agno]) {
      try {
        yield* entry.check(run, where);
      } catch (e) {
        if (e instanceof RmapfsError) {
          run.failed(entry.name, where, entry.label, e.message);
        } else {
          run.internalErrors.push(`${entry.name}: ${e instanceof Error ? e.message : String(e)}`);
        }
      }
    }
  }
  for (const p of run.problems()) problems.add(p.structure, p.agno, p.fsbno, p.message, p.type, p.ino);
  problems.dropped += run.dropped;
  const ags = run.agResults();
  return {
    agsChecked: run.agsChecked, rmapRecords: ags.reduce((n, a) => n + a.rmapRecords, 0),
    freeExtents: ags.reduce((n, a) => n + a.freeExtents, 0), inodesChecked: run.inodesChecked, rmapRebuiltFromFiles: run.rmapRebuiltFromFiles,
    internalErrors: run.internalErrors,
  };
}

/** `--type list`: one line per structure -- name, scope, whether it can be repaired, what it depends on. */
export function structureListLines(): string[] {
  const rows = FSCK_TABLE.map((e) => [e.name, e.scope, isRepairable(e.name) ? 'yes' : 'no', e.dependsOn.join(',') || '-']);
  const header = ['TYPE', 'SCOPE', 'REPAIR', 'DEPENDS ON'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [header, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

/** The table's walk as the live scrub runs it (a checker bug fails the scrub: its result would be incomplete). */
export function tableChecker(selected: readonly StructureName[], agno: number | null): LiveChecker {
  return function* (src, problems) {
    const totals = yield* checkStructures(src, selected, agno, problems);
    if (totals.internalErrors.length > 0) throw new RmapfsError('EIO', `internal error in the scrub: ${totals.internalErrors[0]}`);
    return totals;
  };
}

/**
 * The structures a rebuild of `name` reads and trusts beyond its dependencies:
 * those rebuilt from it (while one of them is damaged, what it reads of them
 * cannot be believed -- the rmap repair finds the old rmap's blocks as
 * neither free nor owned by the others), per AG; and what it finds its
 * sources through (sourcesFoundThrough), in every AG.
 */
export function trustedByRepairOf(name: StructureName): StructureName[] {
  const rebuiltFrom = FSCK_TABLE.filter((e) => e.scope === structureFacts(name).scope && e.dependsOn.includes(name)).map((e) => e.name);
  return [...new Set([...rebuiltFrom, ...sourcesFoundThrough(name)])];
}

/** The live scrub's checker for a command's --type and --ag (every structure of them by default). */
export function checkerFor(agno: number | null, types: readonly string[] | null = null): LiveChecker {
  return tableChecker(selectStructures(types, agno), agno);
}
