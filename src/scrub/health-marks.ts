/**
 * Which structure of the structure table (format/structures.ts) each problem
 * is about, and what a scrub's (or a repair's pre-check's) problems say about
 * the health of each structure (alloc/health.ts): a structure with a problem
 * is sick, found by that scrub; a structure checked without any problem is
 * healthy. Structures of an AG that had problems elsewhere keep what was
 * known of them: a damaged tree stops the cross-checks that would have
 * vouched for the others.
 */
import type { Allocator } from '../alloc/alloc';
import { AG_STRUCTURES, INODE_STRUCTURES } from '../alloc/health';
import type { AgStructure, FsStructure, HealthSource, InodeStructure, StructureName } from '../alloc/health';
import { structureFacts } from '../format/structures';
import type { Problem } from './common';
import { FREE_LIST } from './ag-scrub';

const FREE_SPACE: readonly AgStructure[] = ['bnobt', 'cntbt', 'agfl'];

/** The structure a problem is about (the checkers' display labels, mapped to the table's names). */
export function structureOfProblem(p: Problem): StructureName | null {
  if (p.type !== undefined) return p.type;
  switch (p.structure) {
    // The header's counts of the rmap btree are rewritten by an rmap repair: the rmap's problem.
    case 'AG header': return p.message.startsWith('rmap btree ') ? 'rmapbt' : 'agh';
    // The AG could not be checked at all: its header is what the checks start from.
    case 'AG': return 'agh';
    case FREE_LIST: return 'agfl';
    case 'bnobt': return 'bnobt';
    case 'cntbt': return 'cntbt';
    case 'inobt': return 'inobt';
    case 'rmap': return 'rmapbt';
    // Every block must be free or mapped once: the rmap is what repair rebuilds to make that so.
    case 'coverage': return 'rmapbt';
    case 'superblock': return p.agno > 0 ? 'secondary-sb' : 'superblock';
    case 'log': return 'superblock';
    case 'inode': return 'inode';
    case 'bmbt': return 'bmap';
    case 'directory': return 'directory';
    case 'attr': return 'xattr';
    default: return null;
  }
}

/**
 * The problems without the rmap's disagreements with files whose own
 * structures (inode core, block map...) were found damaged too: those are
 * doubts the file's damage explains (a zeroed block-map leaf leaves the rmap
 * giving the file more blocks than it holds), not the rmap's own damage. The
 * file's repair comes first -- from the rmap -- and a scrub afterwards says
 * whether the rmap still disagrees.
 */
export function withoutFileDoubts(problems: readonly Problem[]): Problem[] {
  const damagedFiles = new Set<number>();
  for (const p of problems) {
    const s = structureOfProblem(p);
    if (p.ino !== undefined && s !== null && structureFacts(s).scope === 'inode') damagedFiles.add(p.ino);
  }
  if (damagedFiles.size === 0) return [...problems];
  return problems.filter((p) => !(p.ino !== undefined && damagedFiles.has(p.ino) && structureOfProblem(p) === 'rmapbt'));
}

/**
 * Marks the health of the structures a check covered -- `checked`, in the AGs
 * agnos for the AG ones -- from its problems: those with a problem become
 * sick, the others healthy. An inode's structures with a problem become sick
 * (the problem names the inode); `inodesChecked` (the check's file pass ran)
 * makes the inodes already known sick or healthy whose checked structures
 * had none healthy -- the others stay as they are, unrecorded (the record of
 * inodes is bounded: health.ts).
 */
export function markHealthFromProblems(alloc: Allocator, agnos: readonly number[], problems: readonly Problem[],
  how: HealthSource, during: string, checked: readonly StructureName[] = AG_STRUCTURES, inodesChecked = false): void {
  const byAg = new Map<number, Map<AgStructure, string>>();
  const fsFound = new Map<FsStructure, string>();
  const inodeFound = new Map<number, Map<InodeStructure, string>>();
  const considered = withoutFileDoubts(problems);
  for (const p of considered) {
    const s = structureOfProblem(p);
    if (s === null || !checked.includes(s)) continue;
    const scope = structureFacts(s).scope;
    if (scope === 'filesystem') {
      if (!fsFound.has(s as FsStructure)) fsFound.set(s as FsStructure, p.message);
      continue;
    }
    if (scope === 'inode') {
      if (p.ino === undefined) continue;
      let m = inodeFound.get(p.ino);
      if (m === undefined) inodeFound.set(p.ino, (m = new Map()));
      if (!m.has(s as InodeStructure)) m.set(s as InodeStructure, p.message);
      continue;
    }
    if (scope !== 'ag' || p.agno < 0) continue;
    let m = byAg.get(p.agno);
    if (m === undefined) byAg.set(p.agno, (m = new Map()));
    if (!m.has(s as AgStructure)) m.set(s as AgStructure, p.message);
  }
  for (const s of checked) {
    if (structureFacts(s).scope !== 'filesystem') continue;
    const message = fsFound.get(s as FsStructure);
    if (message === undefined) alloc.fsHealth.markHealthy(s as FsStructure, how, during, 'checked clean');
    else alloc.fsHealth.markSick(s as FsStructure, how, message, during);
  }
  const inodeChecked = INODE_STRUCTURES.filter((s) => checked.includes(s));
  if (inodesChecked && inodeChecked.length > 0) {
    for (const ino of alloc.inodeHealth.inodes()) {
      const record = alloc.inodeHealth.get(ino)!;
      for (const s of inodeChecked) {
        if (record.known(s) !== undefined && inodeFound.get(ino)?.has(s) !== true) alloc.inodeHealth.markHealthy(ino, s, how, during, 'checked clean');
      }
    }
    alloc.inodeHealth.lastFullCheck = { at: Date.now(), how };
  }
  for (const [ino, found] of inodeFound) for (const [s, message] of found) alloc.inodeHealth.markSick(ino, s, how, message, during);
  const agChecked = AG_STRUCTURES.filter((s) => checked.includes(s));
  for (const agno of agnos) {
    const ag = alloc.ag(agno);
    const found = byAg.get(agno);
    if (found === undefined) {
      for (const s of agChecked) ag.health.markHealthy(s, how, during, 'checked clean');
      continue;
    }
    // Coverage problems beside free-space ones may be the free space's alone: do not blame the rmap for them.
    const freeSpaceBad = FREE_SPACE.some((s) => found.has(s));
    for (const [s, message] of found) {
      if (s === 'rmapbt' && freeSpaceBad && !considered.some((p) => p.agno === agno && p.structure === 'rmap')) continue;
      ag.health.markSick(s, how, message, during);
    }
  }
}
