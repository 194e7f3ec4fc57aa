/**
 * What a scrub's (or a repair's pre-check's) problems say about the health
 * of each AG structure (alloc/health.ts): a structure with a problem is sick,
 * found by that scrub; an AG scrubbed without any problem is healthy
 * throughout. Structures of an AG that had problems elsewhere keep what was
 * known of them: a damaged tree stops the cross-checks that would have
 * vouched for the others.
 */
import type { Allocator } from '../alloc/alloc';
import { AG_STRUCTURES } from '../alloc/health';
import type { AgStructure, HealthSource } from '../alloc/health';
import type { Problem } from './common';
import { FREE_LIST } from './ag-scrub';

const FREE_SPACE: readonly AgStructure[] = ['bnobt', 'cntbt', 'agfl'];

/** The AG structure a problem is about, or null (inodes, directories: not AG structures). */
function structureOf(p: Problem): AgStructure | null {
  switch (p.structure) {
    // The header's counts of the rmap btree are rewritten by an rmap repair: the rmap's problem.
    case 'AG header': return p.message.startsWith('rmap btree ') ? 'rmapbt' : 'agh';
    case FREE_LIST: return 'agfl';
    case 'bnobt': return 'bnobt';
    case 'cntbt': return 'cntbt';
    case 'inobt': return 'inobt';
    case 'rmap': return 'rmapbt';
    // Every block must be free or mapped once: the rmap is what repair rebuilds to make that so.
    case 'coverage': return 'rmapbt';
    default: return null;
  }
}

/**
 * Marks the health of the AGs a check covered (agnos), from its problems;
 * `checked` are the structures it checks (those found clean become healthy).
 */
export function markHealthFromProblems(alloc: Allocator, agnos: readonly number[], problems: readonly Problem[],
  how: HealthSource, during: string, checked: readonly AgStructure[] = AG_STRUCTURES): void {
  const byAg = new Map<number, Map<AgStructure, string>>();
  for (const p of problems) {
    const s = structureOf(p);
    if (s === null || p.agno < 0) continue;
    let m = byAg.get(p.agno);
    if (m === undefined) byAg.set(p.agno, (m = new Map()));
    if (!m.has(s)) m.set(s, p.message);
  }
  for (const agno of agnos) {
    const ag = alloc.ag(agno);
    const found = byAg.get(agno);
    if (found === undefined) {
      for (const s of checked) ag.health.markHealthy(s);
      continue;
    }
    // Coverage problems beside free-space ones may be the free space's alone: do not blame the rmap for them.
    const freeSpaceBad = FREE_SPACE.some((s) => found.has(s));
    for (const [s, message] of found) {
      if (s === 'rmapbt' && freeSpaceBad && !problems.some((p) => p.agno === agno && p.structure === 'rmap')) continue;
      ag.health.markSick(s, how, message, during);
    }
  }
}
