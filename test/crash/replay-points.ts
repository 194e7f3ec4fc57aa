/** The tap side of replay-check.ts: replays a write log at every flush point and torn point, and asserts. */
import type { Test } from 'tap';
import * as path from 'path';
import { execFileSync } from 'child_process';

/** Replays `logPath` over `base` (two torn points an epoch): no point may fail, and there must be at least `minPoints`. */
export function expectEveryCrashPointClean(t: Test, base: string, logPath: string, seed: number, minPoints: number): void {
  const replay = path.join(__dirname, 'replay-check.js');
  let out: string;
  let status = 0;
  try {
    out = execFileSync(process.execPath, [replay, base, logPath, '--torn', '2', '--seed', String(seed)], { encoding: 'utf8' });
  } catch (e) {
    out = String((e as { stdout?: string }).stdout ?? e);
    status = (e as { status?: number }).status ?? 1;
  }
  const summary = /replay-check: (\d+) points .* (\d+) failures;/.exec(out);
  t.ok(summary !== null, out.split('\n').filter(Boolean).pop() ?? 'no summary');
  t.equal(Number(summary?.[2]), 0, 'no crash point fails');
  // It fails without failing points too: damage it was told of ("damaged AG:...") never marked repaired.
  t.equal(status, 0, 'replay-check passes');
  t.ok(Number(summary?.[1]) >= minPoints, `${summary?.[1]} crash points`);
  for (const line of out.split('\n').filter((l) => l.startsWith('FAIL')).slice(0, 5)) t.comment(line);
}
