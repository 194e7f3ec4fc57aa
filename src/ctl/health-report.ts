/**
 * The known-damaged structures of a mounted filesystem as `rmapfs status`
 * and `rmapfs repair` tell them: which, how and when each was found, what
 * fails because of it, and whether rmapfs can repair it yet.
 */
import type { Allocator } from '../alloc/alloc';
import { AG_STRUCTURES, FS_STRUCTURES, INODE_STRUCTURES, SPACE_STRUCTURES, structureLabel } from '../alloc/health';
import type { AgStructure, HealthEvent, HealthSource, HealthState, SickNote, StructureName } from '../alloc/health';

export interface SickStructureReport {
  /** -1: a structure outside the AGs; an inode's structure: the inode's AG. */
  agno: number;
  /** An inode's structure: the inode (else absent). */
  ino?: number;
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
  /** The last repair of it that failed: when (ISO 8601) and why. */
  repairFailed?: { at: string; why: string };
}

const HOW_TEXT: Record<HealthSource, string> = { verifier: 'a verifier', scrub: 'a scrub', repair: 'a repair\'s check' };

/** What fails because an inode's structure is damaged. */
const INODE_EFFECTS = 'using it fails with EUCLEAN (Structure needs cleaning) or EBADMSG where the damage is; other files work';

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
  const report = (agno: number, n: SickNote, effects: string, ino?: number): SickStructureReport => ({
    agno, ...(ino !== undefined ? { ino } : {}), structure: n.structure, name: structureLabel(n.structure), how: n.how,
    found: new Date(n.at).toISOString(), during: n.during, message: n.what, effects, repairable: repairable(n.structure),
    ...(n.repairFailed !== undefined ? { repairFailed: { at: new Date(n.repairFailed.at).toISOString(), why: n.repairFailed.why } } : {}),
  });
  for (const n of alloc.fsHealth.sickNotes()) out.push(report(-1, n, 'reads work'));
  for (const ag of alloc.ags) {
    const order = (n: SickNote): number => AG_STRUCTURES.indexOf(n.structure as AgStructure);
    for (const n of ag.health.sickNotes().sort((a, b) => order(a) - order(b))) out.push(report(ag.agno, n, effectsOf(ag.agno, n.structure as AgStructure)));
  }
  for (const ino of alloc.inodeHealth.inodes()) {
    const record = alloc.inodeHealth.get(ino)!;
    if (record.place.kind !== 'inode') continue;
    const order = (n: SickNote): number => INODE_STRUCTURES.indexOf(n.structure as (typeof INODE_STRUCTURES)[number]);
    for (const n of record.sickNotes().sort((a, b) => order(a) - order(b))) out.push(report(record.place.agno, n, INODE_EFFECTS, ino));
  }
  return out;
}

/** How many structure instances are in each state. */
export type StateCounts = Record<HealthState, number>;

/** `rmapfs status`'s health counts: the AGs' and the filesystem's structures, and the inodes' kept (health.ts). */
export interface HealthSummary {
  ags: StateCounts;
  filesystem: StateCounts;
  /**
   * The inodes' structures whose health is kept (sick ones, and the most recently checked healthy
   * ones: the rest are unchecked or forgotten, up to `limit` inodes kept), how many sick inodes were
   * forgotten to keep that bound, and when the last check of every inode was (null: none since the mount).
   */
  inodes: { healthy: number; sick: number; inodesKept: number; limit: number; sickForgotten: number; lastFullCheck: string | null };
}

export function healthSummary(alloc: Allocator): HealthSummary {
  const counts = (): StateCounts => ({ unchecked: 0, healthy: 0, sick: 0 });
  const ags = counts();
  for (const ag of alloc.ags) for (const s of AG_STRUCTURES) ags[ag.health.state(s)]++;
  const filesystem = counts();
  for (const s of FS_STRUCTURES) filesystem[alloc.fsHealth.state(s)]++;
  const table = alloc.inodeHealth;
  let healthy = 0;
  let sick = 0;
  for (const ino of table.inodes()) {
    for (const s of INODE_STRUCTURES) {
      const state = table.state(ino, s);
      if (state === 'healthy') healthy++;
      else if (state === 'sick') sick++;
    }
  }
  const last = table.lastFullCheck;
  return {
    ags, filesystem,
    inodes: { healthy, sick, inodesKept: table.size, limit: table.limit, sickForgotten: table.sickForgotten,
      lastFullCheck: last === null ? null : new Date(last.at).toISOString() },
  };
}

/** The text of `rmapfs status`'s health line. */
export function describeHealth(h: HealthSummary): string {
  const c = (x: StateCounts): string => `${x.unchecked} unchecked, ${x.healthy} healthy, ${x.sick} sick`;
  const i = h.inodes;
  return `AG structures ${c(h.ags)}; filesystem ${c(h.filesystem)}; inode structures ${i.healthy} healthy, ${i.sick} sick`
    + ` (of ${i.inodesKept} inodes kept, at most ${i.limit}${i.sickForgotten > 0 ? `; ${i.sickForgotten} sick ones forgotten: scrub finds them again` : ''});`
    + ` ${i.lastFullCheck === null ? 'no check of every inode since the mount' : `every inode checked at ${i.lastFullCheck}`}`;
}

/** Where a structure is, as the user is told: "AG 2: ", "inode 131 (AG 0): ", or nothing for the filesystem's. */
function placeText(agno: number, ino: number | undefined): string {
  if (ino !== undefined) return `inode ${ino} (AG ${agno}): `;
  return agno >= 0 ? `AG ${agno}: ` : '';
}

/** One health change as `rmapfs events` prints it (and syslog gets it). */
export function describeHealthEvent(e: HealthEvent): string {
  const where = e.place.kind === 'inode' ? placeText(e.place.agno, e.place.ino) : e.place.kind === 'ag' ? placeText(e.place.agno, undefined) : '';
  const label = structureLabel(e.structure);
  const when = new Date(e.at).toISOString();
  if (e.repairFailed !== undefined) return `${where}${label} still damaged: ${e.repairFailed}`;
  if (e.state === 'sick') return `${where}${label} is damaged (found by ${e.how === 'repair' ? 'a repair' : HOW_TEXT[e.how]} at ${when} while ${e.during}: ${e.what})`;
  return `${where}${label} is healthy (${e.was === 'sick' ? 'was damaged; ' : ''}${e.how === 'repair' ? 'a repair' : HOW_TEXT[e.how]} at ${when} while ${e.during}: ${e.what})`;
}

/** The lines `rmapfs status` prints for one sick structure. */
export function describeSick(r: SickStructureReport): string[] {
  return [
    `${placeText(r.agno, r.ino)}${r.name} is damaged (found by ${HOW_TEXT[r.how]} at ${r.found} while ${r.during}: ${r.message})`,
    `  ${r.effects}`,
    ...(r.repairFailed !== undefined ? [`  a repair at ${r.repairFailed.at} failed: ${r.repairFailed.why}`] : []),
    r.repairable
      ? `  rmapfs repair ${r.ino !== undefined ? `--inode ${r.ino} ` : ''}MOUNTPOINT rebuilds it online`
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
