/**
 * What every checker shares: where it reports. A problem is one line naming
 * the structure, the AG, the block and what is wrong -- the same for the
 * offline `check` and the online `scrub`.
 */
export interface Problem {
  /** "superblock", "AG header", "bnobt", "cntbt", "rmap", "inobt", "inode", "directory", "coverage"... */
  structure: string;
  /** -1 when the problem is not in one AG. */
  agno: number;
  /** Filesystem block number, -1 when there is none. */
  fsbno: number;
  message: string;
}

export class ProblemList {
  readonly problems: Problem[] = [];
  /** Problems not kept once the list is full (they still count). */
  dropped = 0;

  constructor(readonly limit = 1000) {}

  add(structure: string, agno: number, fsbno: number, message: string): void {
    if (this.problems.length < this.limit) this.problems.push({ structure, agno, fsbno, message });
    else this.dropped++;
  }

  get count(): number {
    return this.problems.length + this.dropped;
  }
}

export function formatProblem(p: Problem): string {
  const where = [p.agno >= 0 ? `AG ${p.agno}` : '', p.fsbno >= 0 ? `block ${p.fsbno}` : ''].filter(Boolean).join(' ');
  return `${p.structure}${where ? ` (${where})` : ''}: ${p.message}`;
}
