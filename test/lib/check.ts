/**
 * The one check helper for tap tests: exactly the passes `rmapfs check` runs
 * (src/fsck/check.ts: the secondary superblocks, every AG with its summary
 * counters, the inodes), over a filesystem the test has open.
 */
import type { Filesystem } from '../../src/fs/filesystem';
import type { Rmapfs } from '../../src/fs/rmapfs';
import { checkFilesystem } from '../../src/fsck/check';
import { formatProblem } from '../../src/scrub/common';

/** Every problem the offline check finds, as lines; a failure of the checker itself is a line too. */
export function check(target: Rmapfs | Filesystem): string[] {
  const fs = 'fs' in target ? target.fs : target;
  const result = checkFilesystem(fs);
  const lines = result.problems.map(formatProblem);
  if (result.problemCount > result.problems.length) lines.push(`... and ${result.problemCount - result.problems.length} more`);
  for (const e of result.internalErrors) lines.push(`internal error: ${e}`);
  return lines;
}
