/**
 * What the daemon does for `rmapfs scrub` and `rmapfs repair`: both walk the
 * structure table (table.ts) over the structures and AGs asked for.
 *
 * - scrub runs the checkers in slices on a frozen view (scrub/live-scrub.ts)
 *   and records what it found in the health record;
 * - repair finds what is damaged with the same scrub (or, --force-rebuild,
 *   takes every structure asked for that has a repairer), then goes through
 *   it in dependency order: a structure with a repairer is rebuilt once what
 *   its rebuild reads is healthy; one without is refused plainly (named, with
 *   nothing of it changed). Then it scrubs the AGs it rebuilt.
 */
import createDebug from 'debug';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../inode/inode-format';
import { RmapfsError, isCorruption } from '../errors';
import type { Rmapfs } from '../fs/rmapfs';
import type { AgStructure, FsStructure, InodeStructure, StructureName } from '../format/structures';
import { ALL_STRUCTURES, isInodeStructure, structureFacts, structureLabel } from '../format/structures';
import { refusal, refusalFrom } from '../ctl/ctl';
import type { CtlEvent, CtlReply, CtlRequest } from '../ctl/ctl';
import { sickStructures, unrepairableLine } from '../ctl/health-report';
import type { SickStructureReport } from '../ctl/health-report';
import { scrubAgForRmapRepair } from '../scrub/ag-scrub';
import { unreadableInodes } from '../scrub/inode-scrub';
import { formatProblem, ProblemList } from '../scrub/common';
import type { Problem } from '../scrub/common';
import { markHealthFromProblems, structureOfProblem, withoutFileDoubts } from '../scrub/health-marks';
import { scrubLiveSliced } from '../scrub/live-scrub';
import type { LiveScrubResult, SlicedScrubOptions } from '../scrub/live-scrub';
import type { PacerOptions } from '../io/pacer';
import type { RmapRepairResult } from '../repair/rmap-repair';
import type { RebuiltRmaps } from '../rmap/rmap-digest';
import type { FreeSpaceRepairResult } from '../repair/free-space-repair';
import type { HeaderRepairResult } from '../repair/ag-header-repair';
import type { InodeBtreeRepairResult } from '../repair/inobt-repair';
import type { FileRepairResult } from '../repair/file-repair';
import { findPaths } from '../repair/file-paths';
import {
  dependencyOrder, fsckEntry, isRepairable, selectStructures, sourcesFoundThrough, structuresOfScope, tableChecker, trustedByRepairOf,
} from './table';

const log = createDebug('rmapfs:fsck');

/** What the daemon lends a scrub or repair. */
export interface OnlineFsckHooks {
  /**
   * A FUSE request waits: end the slice at once. null: nothing can ever wait (an unmounted
   * filesystem, the offline repair): the work runs in slices of no time limit, reading no clock.
   */
  foregroundWaiting: (() => boolean) | null;
  /** A reason to stop (unmount, the client went away), or null. */
  abortReason: () => string | null;
  /** Progress events to the client. */
  send: (e: CtlEvent) => void;
}

/** How the scans and repairs under these hooks pace themselves (see foregroundWaiting). */
function pacingOf(hooks: OnlineFsckHooks): PacerOptions {
  return hooks.foregroundWaiting === null ? { sliceMs: Infinity } : { foregroundWaiting: hooks.foregroundWaiting };
}

/** A sliced scrub under these hooks: paced by them, stopped by their abort reason. */
function scrubOptionsOf(hooks: OnlineFsckHooks): SlicedScrubOptions {
  return { ...pacingOf(hooks), abortReason: hooks.abortReason };
}

/** The structures and AG or inode a request asks for (its `types`, `ag`, `ino`); EINVAL for what does not exist. */
export function requestedStructures(fsx: Rmapfs, req: CtlRequest): { selected: StructureName[]; agno: number | null; ino: number | null } {
  const agno = typeof req.ag === 'number' ? req.ag : null;
  const agCount = fsx.fs.geo.agCount;
  if (agno !== null && (!Number.isInteger(agno) || agno < 0 || agno >= agCount)) {
    throw new RmapfsError('EINVAL', `no AG ${agno} (the filesystem has ${agCount})`);
  }
  const ino = typeof req.ino === 'number' ? req.ino : null;
  if (ino !== null && (!Number.isInteger(ino) || !fsx.fs.geo.isValidIno(ino))) throw new RmapfsError('EINVAL', `no inode ${ino}`);
  const types = Array.isArray(req.types) ? req.types.map(String) : null;
  return { selected: selectStructures(types, agno, ino), agno, ino };
}

/**
 * A scrub's result cut down to one inode's problems (--inode): the file
 * pass checks every inode (link counts need the whole namespace), the
 * command asked about one.
 */
function onlyInode(r: LiveScrubResult, ino: number | null): LiveScrubResult {
  if (ino === null) return r;
  const problems = r.problems.filter((p) => p.ino === ino);
  return { ...r, problems, problemCount: problems.length };
}

function agnosOf(fsx: Rmapfs, agno: number | null): number[] {
  return agno === null ? fsx.fs.alloc.ags.map((a) => a.agno) : [agno];
}

/** Scrubs the structures asked for; what it finds (and finds clean) is what is known of them now. */
export async function onlineScrub(fsx: Rmapfs, selected: readonly StructureName[], agno: number | null,
  hooks: OnlineFsckHooks, ino: number | null = null): Promise<LiveScrubResult> {
  const r = await scrubLiveSliced(fsx.fs, tableChecker(selected, agno), scrubOptionsOf(hooks));
  markHealthFromProblems(fsx.fs.alloc, agnosOf(fsx, agno), r.problems, 'scrub', 'scrubbing', selected, r.inodesChecked && ino === null);
  const mine = onlyInode(r, ino);
  if (ino !== null && r.inodesChecked) markInodeChecked(fsx, ino, selected, mine.problems, 'scrub', 'scrubbing');
  return mine;
}

/**
 * One inode checked (--inode): each of its structures asked for that it has
 * and the check found nothing wrong with is healthy (the problems' were
 * marked sick with the rest).
 */
function markInodeChecked(fsx: Rmapfs, ino: number, selected: readonly StructureName[], problems: readonly Problem[],
  how: 'scrub' | 'repair', during: string): void {
  for (const s of selected) {
    if (!isInodeStructure(s) || !inodeHasStructure(fsx, ino, s)) continue;
    if (problems.some((p) => p.ino === ino && structureOfProblem(p) === s)) continue;
    fsx.fs.alloc.inodeHealth.markHealthy(ino, s, how, during, 'checked clean');
  }
}

/**
 * Whether inode `ino` has structure `s` to rebuild (a forced rebuild of one
 * inode rebuilds only what its type has: a directory's entries, a symlink's
 * target, a file's block map). When its type cannot be read, every one.
 */
function inodeHasStructure(fsx: Rmapfs, ino: number, s: StructureName): boolean {
  let type: number;
  try {
    type = fsx.stat(ino).mode & S_IFMT;
  } catch {
    return true;
  }
  switch (s) {
    case 'directory': return type === S_IFDIR;
    case 'symlink': return type === S_IFLNK;
    case 'bmap': return type === S_IFREG || type === S_IFLNK;
    default: return true;
  }
}

/** A damaged structure and where: AG numbers (-1 for one outside the AGs), the inodes (for an inode structure), and its first problem. */
interface Damage {
  agnos: Set<number>;
  inos: Set<number>;
  first: Problem | null;
}

/**
 * What a scrub's problems say is damaged, into `damaged`: each structure
 * asked for, where (AGs; inodes for an inode structure). The rmap's
 * disagreements with damaged files wait for the files' repairs
 * (withoutFileDoubts).
 */
function noteDamage(damaged: Map<StructureName, Damage>, problems: readonly Problem[], selected: readonly StructureName[]): void {
  for (const p of withoutFileDoubts(problems)) {
    const s = structureOfProblem(p);
    if (s === null || !selected.includes(s)) continue;
    let d = damaged.get(s);
    if (d === undefined) damaged.set(s, (d = { agnos: new Set(), inos: new Set(), first: p }));
    d.agnos.add(structureFacts(s).scope === 'ag' ? p.agno : -1);
    if (structureFacts(s).scope === 'inode' && p.ino !== undefined) d.inos.add(p.ino);
  }
}

/** A refusal of a structure no repairer rebuilds: the health record's report, or one made from its problem. */
function refusalReports(fsx: Rmapfs, name: StructureName, damage: Damage): SickStructureReport[] {
  const known = sickStructures(fsx.fs.alloc, isRepairable).filter((r) => r.structure === name && damage.agnos.has(r.agno));
  if (known.length > 0) return known;
  const p = damage.first;
  return [{
    agno: structureFacts(name).scope === 'ag' ? (p?.agno ?? -1) : -1, structure: name, name: structureLabel(name), how: 'repair',
    found: new Date().toISOString(), during: 'checking before a repair', message: p === null ? 'damaged' : formatProblem(p),
    effects: 'reads work', repairable: false,
  }];
}

/**
 * Before a rebuild: what it reads and trusts beyond its dependencies
 * (trustedByRepairOf) must be healthy in those AGs; checked now, on the live
 * filesystem, in one go (the free-space and inode btrees are small next to
 * the rmap). The reports of what is damaged there (nothing: go on).
 */
function checkTrusted(fsx: Rmapfs, name: StructureName, agnos: readonly number[], noWriter: boolean): SickStructureReport[] {
  const trusted = trustedByRepairOf(name);
  // What it finds its sources through is read in every AG, not only in those it rebuilds.
  const everywhere = sourcesFoundThrough(name);
  const others = everywhere.length === 0 ? [] : fsx.fs.alloc.ags.map((a) => a.agno).filter((a) => !agnos.includes(a));
  // With no writer, a structure this run already found healthy (or rebuilt) is still so: not checked again.
  const unknownIn = (a: number, structures: readonly StructureName[]): boolean => !noWriter
    || structures.some((s) => structureFacts(s).scope === 'ag' && fsx.fs.alloc.ag(a).health.state(s as AgStructure) !== 'healthy');
  const problems = new ProblemList();
  for (const a of [...agnos.filter((x) => unknownIn(x, trusted)), ...others.filter((x) => unknownIn(x, everywhere))]) {
    const ag = fsx.fs.alloc.ag(a);
    const before = ag.activity;
    ag.activity = 'checking before a repair';
    try {
      scrubAgForRmapRepair(ag, fsx.fs.geo, problems);
    } finally {
      ag.activity = before;
    }
  }
  markHealthFromProblems(fsx.fs.alloc, agnos, problems.problems, 'repair', 'checking before a repair', trusted);
  if (others.length > 0) markHealthFromProblems(fsx.fs.alloc, others, problems.problems, 'repair', 'checking before a repair', everywhere);
  for (const p of problems.problems) log('before repairing %s: %s', name, formatProblem(p));
  return sickStructures(fsx.fs.alloc, isRepairable)
    .filter((r) => (agnos.includes(r.agno) && trusted.includes(r.structure)) || everywhere.includes(r.structure));
}

/**
 * What the closing scrub checks: every AG structure, the summary counters
 * when they were recomputed, and the files (against the rmap) when some
 * were repaired or an rmap rebuild left a fork's mapping out (`sickForks`:
 * two attribute records naming one value block, say: the scrub is what finds
 * the fork, and marks it in the inode's health record).
 */
function closingScrubOf(headers: readonly HeaderRepairResult[], files: readonly FileRepairResult[],
  rmaps: readonly RmapRepairResult[]): StructureName[] {
  const filesToo = files.length > 0 || rmaps.some((r) => r.sickForks.length > 0);
  return [...structuresOfScope('ag'), ...(headers.some((h) => h.type === 'counters') ? ['counters' as const] : []),
    ...(filesToo ? structuresOfScope('inode') : [])];
}

/** The repaired inodes' paths into their results (one walk of the directories, only when there are some). */
async function namePaths(fsx: Rmapfs, files: FileRepairResult[], hooks: OnlineFsckHooks): Promise<void> {
  if (files.length === 0) return;
  const paths = await findPaths(fsx, new Set(files.map((f) => f.ino)), pacingOf(hooks));
  for (const f of files) f.path = f.namelessBefore === true ? null : paths.get(f.ino) ?? null;
}

/**
 * Repairs the inode structure `name` of the damaged inodes: each object on
 * its own (one failing does not stop the others). What a repair left for
 * another structure of its inode (the core's repair emptying an impossible
 * data fork) joins that structure's damage, repaired later in the order.
 */
async function repairFileStructure(fsx: Rmapfs, name: StructureName, damage: Damage, damaged: Map<StructureName, Damage>,
  options: { cancelled: () => boolean }, hooks: OnlineFsckHooks): Promise<FileRepairResult[]> {
  const repairFiles = fsckEntry(name).repairFiles!;
  // Only the inodes whose type has this structure (as it is now: the core's repair may have just fixed the type).
  const inos = [...damage.inos].filter((ino) => inodeHasStructure(fsx, ino, name)).sort((a, b) => a - b);
  if (inos.length === 0) return [];
  hooks.send({ event: 'files', type: name, inodes: inos.length });
  const done = await repairFiles(fsx, inos, { cancelled: options.cancelled, ...pacingOf(hooks) });
  const health = fsx.fs.alloc.inodeHealth;
  for (const r of done) {
    if (r.error !== undefined) health.noteRepairFailed(r.ino, name as InodeStructure, r.error);
    else health.markHealthy(r.ino, name as InodeStructure, 'repair', 'rebuilding it', r.changes.length > 0 ? r.changes.join('; ') : 'nothing to change');
    for (const s of r.leftFor ?? []) {
      let d = damaged.get(s);
      if (d === undefined) damaged.set(s, (d = { agnos: new Set([-1]), inos: new Set(), first: null }));
      d.inos.add(r.ino);
    }
  }
  return done;
}

export interface OnlineRepairOptions {
  forceRebuild: boolean;
  measureHeap: boolean;
  cancelled: () => boolean;
  ino?: number | null;
  /**
   * The repair of an unmounted filesystem (offline.ts): nothing else changes it, so what a check
   * found stays true until a repair changes it, and the caller checks the whole filesystem after.
   * `found`: what the caller's check before found (null: none ran), used instead of a scrub of
   * the same filesystem; the closing scrub is left out (the whole check after is a superset); the
   * structures a rebuild trusts are checked only where the health record does not know them
   * healthy already (a check of this run, or a rebuild, said so).
   */
  offline?: { found: readonly Problem[] | null; inodesChecked?: boolean; rebuiltRmaps?: RebuiltRmaps };
}

/** A scrub's result made of problems found another way (the offline check's): nothing was scrubbed here. */
function foundResult(problems: readonly Problem[], problemCount = problems.length): LiveScrubResult {
  return {
    problems: [...problems], problemCount, agsChecked: 0, rmapRecords: 0, inodesChecked: false, seconds: 0,
    slices: 0, longestSliceMs: 0, yieldsToForeground: 0, restarts: 0, blocksKept: 0,
  };
}

/**
 * Repairs what is damaged among the structures asked for (everything asked
 * for that has a repairer, with forceRebuild), in dependency order. The
 * reply: the rebuilds done (`ags`), the closing scrub, and the structures
 * refused (`unrepairable`, with `error` the one line saying so); not ok when
 * it refused everything it found.
 */
export async function onlineRepair(fsx: Rmapfs, selected: readonly StructureName[], agno: number | null,
  options: OnlineRepairOptions, hooks: OnlineFsckHooks): Promise<CtlReply> {
  const agnos = agnosOf(fsx, agno);
  const ino = options.ino ?? null;
  const damaged = new Map<StructureName, Damage>();
  let before: LiveScrubResult | null = null;
  if (options.offline?.found != null && !options.forceRebuild) {
    before = onlyInode({ ...foundResult(options.offline.found), inodesChecked: options.offline.inodesChecked === true }, ino);
    markHealthFromProblems(fsx.fs.alloc, agnos, before.problems, 'repair', 'checking before a repair', selected);
    noteDamage(damaged, before.problems, selected);
  } else if (options.forceRebuild) {
    // Every structure asked for: the AG ones in the AGs asked for, the inode ones of the inode asked for (--inode).
    for (const s of selected) {
      const perInode = structureFacts(s).scope === 'inode';
      if (!isRepairable(s) || (perInode && (ino === null || !inodeHasStructure(fsx, ino, s)))) continue;
      damaged.set(s, { agnos: new Set(perInode ? [-1] : agnos), inos: new Set(ino === null ? [] : [ino]), first: null });
    }
  } else {
    const found = await scrubLiveSliced(fsx.fs, tableChecker(selected, agno), scrubOptionsOf(hooks));
    markHealthFromProblems(fsx.fs.alloc, agnos, found.problems, 'repair', 'checking before a repair', selected, found.inodesChecked && ino === null);
    before = onlyInode(found, ino);
    noteDamage(damaged, before.problems, selected);
  }
  const results: RmapRepairResult[] = [];
  const freeSpace: FreeSpaceRepairResult[] = [];
  const headers: HeaderRepairResult[] = [];
  const inodeBtree: InodeBtreeRepairResult[] = [];
  const files: FileRepairResult[] = [];
  const refused: SickStructureReport[] = [];
  const refuse = (reports: readonly SickStructureReport[]): void => {
    for (const r of reports) if (!refused.some((x) => x.agno === r.agno && x.structure === r.structure)) refused.push(r);
  };
  let lastProgress = 0;
  let filesRescrubbed = false;
  // The inode structures are all in the order: a repair may leave work for another structure of its inode.
  const order = dependencyOrder([...new Set([...damaged.keys(), ...structuresOfScope('inode')])],
    options.forceRebuild ? [] : [...damaged.keys()]);
  const agRepaired = (): boolean => results.length > 0 || freeSpace.length > 0 || headers.length > 0 || inodeBtree.length > 0;
  // An AG btree that cannot be walked stops the scrub's file pass: the files' damage is not known yet,
  // but the rmap's rebuild reads every inode. The cores that cannot be read are repaired first (found
  // when the inode cores' turn comes: after a damaged inode btree's rebuild, which names the chunks).
  const sweepCores = (): void => {
    if (options.forceRebuild || ino !== null || results.length > 0 || !damaged.has('rmapbt')) return;
    const unreadable = unreadableInodes(fsx.fs);
    if (unreadable.length === 0) return;
    const d = damaged.get('inode') ?? { agnos: new Set([-1]), inos: new Set<number>(), first: null };
    for (const i of unreadable) d.inos.add(i);
    damaged.set('inode', d);
  };
  const filesSeenAfterRescrub = new Set<StructureName>();
  const filesDeferred = (): boolean => !options.forceRebuild && agRepaired()
    && structuresOfScope('inode').some((n) => selected.includes(n) && !filesSeenAfterRescrub.has(n));
  const repairFilesOf = async (name: StructureName): Promise<void> => {
    // The files' damage was found beside damaged AG structures, and those are rebuilt now: what the files
    // seemed to have may have been theirs (an inode btree naming blocks that hold no inodes makes "inodes"
    // of them). Scrubbed again, once, before any file is touched.
    // (Only when the files' damage is not known: some was found, or the file pass could not run before.)
    if (!options.forceRebuild && !filesRescrubbed && agRepaired()
      && (before === null || !before.inodesChecked || [...damaged.keys()].some((s) => isInodeStructure(s) || s === 'nlinks'))) {
      filesRescrubbed = true;
      // The link counts are the file pass's findings too.
      const fileStructures = selected.filter((s) => isInodeStructure(s) || s === 'nlinks');
      const rescrub = await scrubLiveSliced(fsx.fs, tableChecker(fileStructures, agno), scrubOptionsOf(hooks));
      // What the first scrub blamed on files that the rebuilt AG structures explain is healthy now.
      markHealthFromProblems(fsx.fs.alloc, agnos, rescrub.problems, 'repair', 'checking again after a rebuild', fileStructures,
        rescrub.inodesChecked && ino === null);
      const again = onlyInode(rescrub, ino);
      for (const f of fileStructures) damaged.delete(f);
      noteDamage(damaged, again.problems, fileStructures);
    }
    if (filesRescrubbed) filesSeenAfterRescrub.add(name);
    if (name === 'inode') sweepCores();
    const current = damaged.get(name);
    if (current === undefined) return;
    if (fsckEntry(name).repairFiles === null || current.inos.size === 0) {
      refuse(refusalReports(fsx, name, current));
      return;
    }
    files.push(...await repairFileStructure(fsx, name, current, damaged, options, hooks));
  };
  const repairStep = async (name: StructureName): Promise<CtlReply | null> => {
    // The AGs whose rebuild of this structure committed (what a failure after them says).
    const rebuilt: number[] = [];
    const entry = fsckEntry(name);
    if (entry.scope === 'inode') {
      await repairFilesOf(name);
      return null;
    }
    // The link counts read every directory: after the files' repairs, which the closing pass below may
    // still have to make (the order put some before the AG structures' rebuilds).
    if (name === 'nlinks' && filesDeferred()) return null;
    if (filesRescrubbed) filesSeenAfterRescrub.add(name);
    const damage = damaged.get(name);
    if (damage === undefined) return null;
    // The rmap: every AG asked for, not only those a problem named (the file pass's rmap problems are filed
    // under the owner's AG, not always the record's) and every AG for a filesystem-wide one (the summary
    // counters are every AG header's counts). The others: the AGs their damage was found in. One
    // repairer rebuilds both free-space btrees: an AG whose bnobt was just rebuilt has a new cntbt too.
    const asked = name === 'rmapbt' || entry.scope === 'filesystem' || options.forceRebuild ? agnos
      : agnos.filter((a) => damage.agnos.has(a));
    let where = asked.filter((a) => !((name === 'bnobt' || name === 'cntbt') && freeSpace.some((f) => f.agno === a)));
    if (where.length === 0) return null;
    if (entry.repair === null) {
      refuse(refusalReports(fsx, name, damage));
      return null;
    }
    // Rebuilt from its dependencies: one refused in this run (damaged, not rebuilt) refuses this one too.
    if (entry.dependsOn.some((d) => refused.some((r) => r.structure === d && where.includes(r.agno)))) {
      refuse(refusalReports(fsx, name, damage));
      return null;
    }
    let untrusted = checkTrusted(fsx, name, where, options.offline !== undefined);
    // Heavy damage, offline: an AG whose rmap is sick and whose free-space btrees are damaged (nothing else it
    // trusts) has its three trees rebuilt together from the rmap's scan (rmap-repair.ts, freeSpaceToo). Online
    // it stays refused: a live allocator takes and gives blocks through those very trees meanwhile.
    let freeSpaceToo: number[] = [];
    if (name === 'rmapbt' && !options.forceRebuild && options.offline !== undefined) {
      freeSpaceToo = where.filter((a) => fsx.fs.alloc.ag(a).health.isSick('rmapbt') && untrusted.some((r) => r.agno === a)
        && untrusted.every((r) => r.agno !== a || r.structure === 'bnobt' || r.structure === 'cntbt'));
      untrusted = untrusted.filter((r) => !freeSpaceToo.includes(r.agno));
    }
    if (name === 'rmapbt' && !options.forceRebuild && untrusted.length > 0 && untrusted.every((r) => isRepairable(r.structure))) {
      // What the scrub blamed on the rmap beside damaged free-space btrees is the coverage walk's doubt, not
      // the rmap's own damage (the health record says which): the free-space btrees are rebuilt from the
      // rmap instead, and the closing scrub says whether the rmap still has problems.
      const sick = where.filter((a) => fsx.fs.alloc.ag(a).health.isSick('rmapbt'));
      if (sick.length === 0) return null;
      // Heavy damage: the rmap of one AG and a free-space btree of another. The rmap is rebuilt where it is
      // sick, the AGs whose own structures rebuilt from it are damaged are left out (their rmap is sound:
      // they are rebuilt from it next), unless what it finds its sources through is what is damaged.
      // An AG where both are damaged is refused (its free-space btrees are what the rebuild would find
      // the old rmap's blocks and take its new blocks from); the others go on.
      const blocked = new Set(untrusted.map((r) => r.agno));
      if (!untrusted.some((r) => sourcesFoundThrough(name).includes(r.structure)) && sick.some((a) => !blocked.has(a))) {
        const stuck = sick.filter((a) => blocked.has(a));
        if (stuck.length > 0) {
          refuse(untrusted.filter((r) => stuck.includes(r.agno)));
          refuse(refusalReports(fsx, name, { ...damage, agnos: new Set(stuck) }));
        }
        log('rebuilding the rmap of AG %s only: AG %s hold damage rebuilt from their rmap', sick.filter((a) => !blocked.has(a)).join(', '),
          [...blocked].join(', '));
        where = where.filter((a) => !blocked.has(a));
        untrusted = [];
      }
    }
    if (untrusted.length > 0) {
      // What its rebuild would read is damaged: the refusal names that, and this one stays as it is. Where
      // it is known damaged itself (heavy damage: the rmap and a free-space btree of one AG), it is refused
      // too, so that nothing is rebuilt from it next.
      refuse(untrusted);
      const sickHere = where.filter((a) => structureFacts(name).scope === 'ag' && fsx.fs.alloc.ag(a).health.isSick(name as AgStructure));
      if (sickHere.length > 0) refuse(refusalReports(fsx, name, { ...damage, agnos: new Set(sickHere) }));
      return null;
    }
    try {
      const done = await entry.repair(fsx, where, {
        measureHeap: options.measureHeap,
        cancelled: options.cancelled,
        // Offline nothing else changes the image: the rmap collection sorts what it gathers (rmap-collect.ts).
        unmounted: options.offline !== undefined,
        // ... and says what it built, for the check after (rmap-digest.ts).
        onRmapBuilt: (a, built) => options.offline?.rebuiltRmaps?.set(a, built),
        freeSpaceToo,
        // Step aside at once for FUSE requests: the scan must not hold up the applications.
        ...pacingOf(hooks),
        onProgress: (p) => {
          const now = Date.now();
          if (now - lastProgress < 100 && p.inodesScanned < p.inodesTotal) return;
          lastProgress = now;
          hooks.send({ event: 'scan', ags: where, ...p });
        },
        onCommit: (a, finished) => {
          if (finished) {
            rebuilt.push(a);
            if (structureFacts(name).scope === 'ag') fsx.fs.alloc.ag(a).health.markHealthy(name as AgStructure);
          }
          hooks.send({ event: finished ? 'committed' : 'commit', agno: a, type: name });
        },
      });
      for (const r of done) {
        if ('ino' in r) files.push(r);
        else if ('inodesScanned' in r) {
          results.push(r);
          if (r.freeSpace !== undefined) freeSpace.push(r.freeSpace);
        }
        else if ('fixed' in r) headers.push(r);
        else if ('chunks' in r) inodeBtree.push(r);
        else freeSpace.push(r);
      }
      // Forks whose impossible mappings the rmap rebuild left out (rmap-collect.ts) still map them: each
      // is rebuilt now from the new rmap, before anything writes through it (a data extent over the
      // superblock would be written there). Their structures come before the rmap in the order.
      const sickForks = done.flatMap((r) => ('sickForks' in r ? r.sickForks : []));
      for (const [fork, structure] of [['data', 'bmap'], ['attr', 'xattr']] as const) {
        const inos = new Set(sickForks.filter((f) => f.fork === fork).map((f) => f.ino));
        if (inos.size > 0) files.push(...await repairFileStructure(fsx, structure, { agnos: new Set([-1]), inos, first: null }, damaged, options, hooks));
      }
    } catch (e) {
      // Rebuilt ahead of a structure that finds its sources through it (the inode btree before the rmap),
      // from a source that may be the damaged one (the rmap's inode chunks, verified as they are read):
      // the old one stays, and the rebuild that comes next is from it.
      const ahead = [...damaged.keys()].some((d) => d !== name && sourcesFoundThrough(d).includes(name));
      if (ahead && isCorruption(e)) {
        log('rebuilding %s before what finds its sources through it failed, left as it is: %s', name, e instanceof Error ? e.message : String(e));
        return null;
      }
      const state = rebuilt.length === 0 ? `the old ${structureLabel(name)} is still in place`
        : `AG ${rebuilt.join(', ')} rebuilt before that, the others keep their old ${structureLabel(name)}`;
      // What stays sick says why: the health record keeps the failure (no repair runs it again by itself).
      const why = `repair failed: ${e instanceof Error ? e.message : String(e)}`;
      if (entry.scope === 'filesystem') {
        if (fsx.fs.alloc.fsHealth.isSick(name as FsStructure)) fsx.fs.alloc.fsHealth.noteRepairFailed(name as FsStructure, why);
      } else {
        for (const a of where.filter((x) => !rebuilt.includes(x))) {
          const health = fsx.fs.alloc.ag(a).health;
          if (health.isSick(name as AgStructure)) health.noteRepairFailed(name as AgStructure, why);
        }
      }
      return refusalFrom(e, `repair failed, ${state}: `);
    }
    return null;
  };
  for (const name of order) {
    const stopped = await repairStep(name);
    if (stopped !== null) return stopped;
  }
  // The files come before the rmap in the order (what it is rebuilt from), so those whose damage could not be
  // known then (the file pass needs every AG's btrees walkable) are scrubbed again and repaired now.
  if (filesDeferred() || (!options.forceRebuild && agRepaired() && !filesSeenAfterRescrub.has('nlinks'))) {
    for (const name of dependencyOrder([...structuresOfScope('inode'), 'nlinks']).filter((n) => selected.includes(n))) {
      if (filesSeenAfterRescrub.has(name)) continue;
      const stopped = await repairStep(name);
      if (stopped !== null) return stopped;
    }
  }
  // AG by AG, each AG's in table order (as status lists them).
  refused.sort((a, b) => a.agno - b.agno || ALL_STRUCTURES.indexOf(a.structure) - ALL_STRUCTURES.indexOf(b.structure));
  const rebuiltAny = results.length > 0 || freeSpace.length > 0 || headers.length > 0 || inodeBtree.length > 0 || files.length > 0;
  if (!rebuiltAny && refused.length > 0) return { ...refusal('EFSCORRUPTED', unrepairableLine(refused)), unrepairable: refused };
  fsx.fsync();
  // The closing scrub of the AGs it rebuilt (or checked) runs in slices like any other (FUSE keeps being
  // served). The files against the rmap are `rmapfs scrub`'s business.
  const closing = ino === null ? closingScrubOf(headers, files, results) : selected;
  let scrub: LiveScrubResult;
  if (!rebuiltAny && before !== null) scrub = before;
  else if (options.offline !== undefined) scrub = foundResult([]); // the caller's whole check after says it
  else scrub = onlyInode(await scrubLiveSliced(fsx.fs, tableChecker(closing, agno), scrubOptionsOf(hooks)), ino);
  if (rebuiltAny && options.offline === undefined) {
    markHealthFromProblems(fsx.fs.alloc, agnos, scrub.problems, 'repair', 'scrubbing after a repair', closing, scrub.inodesChecked && ino === null);
  }
  await namePaths(fsx, files, hooks);
  const reply: CtlReply = { ok: true, ags: results, freeSpace, inodeBtree, headers, files, scrub, unrepairable: refused };
  if (refused.length > 0) reply.error = unrepairableLine(refused, true);
  return reply;
}
