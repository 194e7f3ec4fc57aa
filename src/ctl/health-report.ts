/**
 * The known-damaged structures of a mounted filesystem as `rmapfs status`
 * and `rmapfs repair` tell them: which, how and when each was found, what
 * fails because of it, and whether rmapfs can repair it yet.
 */
import type { Allocator } from '../alloc/alloc';
import { AG_STRUCTURES, SPACE_STRUCTURES, structureLabel } from '../alloc/health';
import type { AgStructure, HealthSource, SickNote, StructureName } from '../alloc/health';

export interface SickStructureReport {
  /** -1: a structure outside the AGs. */
  agno: number;
  /** The structure table's name (format/structures.ts): agh, bnobt, rmapbt, superblock, counters... */
  structure: StructureName;
  /** What the user is told it is ("free-space btree (by block)"). */
  name: string;
  how: HealthSource;
  /** When it was found, ISO 8601 (UTC). */
  found: string;
  during: string;
  message: string;
  /** What fails (and what still works) because of it. */
  effects: string;
  repairable: boolean;
}

const HOW_TEXT: Record<HealthSource, string> = { verifier: 'a verifier', scrub: 'a scrub', repair: 'a repair\'s check' };

function effectsOf(agno: number, structure: AgStructure): string {
  const parts: string[] = [];
  if (SPACE_STRUCTURES.includes(structure)) {
    parts.push(`new allocations avoid AG ${agno}`, `freeing blocks in AG ${agno} fails with EUCLEAN (Structure needs cleaning)`);
  }
  if (structure === 'agh' || structure === 'inobt') {
    parts.push(`new inodes avoid AG ${agno}`, `freeing inodes of AG ${agno} fails with EUCLEAN`);
  }
  parts.push('reads work');
  return parts.join('; ');
}

/**
 * Every known-sick structure: the filesystem's own, then every AG's, in AG
 * order; `repairable` says which structures have a repairer (the structure
 * table's, which lives above this layer).
 */
export function sickStructures(alloc: Allocator, repairable: (s: StructureName) => boolean): SickStructureReport[] {
  const out: SickStructureReport[] = [];
  for (const n of alloc.fsHealth.sickNotes()) {
    out.push({
      agno: -1, structure: n.structure, name: structureLabel(n.structure), how: n.how, found: new Date(n.at).toISOString(),
      during: n.during, message: n.what, effects: 'reads work', repairable: repairable(n.structure),
    });
  }
  for (const ag of alloc.ags) {
    const order = (n: SickNote): number => AG_STRUCTURES.indexOf(n.structure as AgStructure);
    for (const n of ag.health.sickNotes().sort((a, b) => order(a) - order(b))) {
      const structure = n.structure as AgStructure;
      out.push({
        agno: ag.agno, structure, name: structureLabel(structure), how: n.how, found: new Date(n.at).toISOString(),
        during: n.during, message: n.what, effects: effectsOf(ag.agno, structure),
        repairable: repairable(structure),
      });
    }
  }
  return out;
}

/** The lines `rmapfs status` prints for one sick structure. */
export function describeSick(r: SickStructureReport): string[] {
  return [
    `${r.agno >= 0 ? `AG ${r.agno}: ` : ''}${r.name} is damaged (found by ${HOW_TEXT[r.how]} at ${r.found} while ${r.during}: ${r.message})`,
    `  ${r.effects}`,
    r.repairable
      ? '  rmapfs repair MOUNTPOINT rebuilds it online'
      : '  rmapfs cannot repair it yet (next release): copy the files elsewhere, then mkfs and copy them back',
  ];
}

/**
 * repair's one line when structures it cannot rebuild are damaged in the AGs
 * asked for; `othersRebuilt`: it rebuilt the rest of what it found damaged.
 */
export function unrepairableLine(reports: readonly SickStructureReport[], othersRebuilt = false): string {
  const byAg = new Map<number, string[]>();
  for (const r of reports) byAg.set(r.agno, [...(byAg.get(r.agno) ?? []), r.name]);
  const what = [...byAg].map(([agno, names]) => `${agno >= 0 ? `AG ${agno} ` : ''}${names.join(' and ')}`).join(', ');
  return `${what}: damaged; rmapfs cannot repair ${reports.length === 1 ? 'it' : 'them'} yet (next release); ${othersRebuilt ? 'the rest was rebuilt' : 'the rmap was not changed'}`;
}
