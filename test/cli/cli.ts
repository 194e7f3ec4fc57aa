/** Running `rmapfs` in-process for the CLI tests: exit status and the lines written. */
import type { Test } from 'tap';
import { run } from '../../src/cli/main';

export interface Ran {
  code: number;
  out: string[];
  err: string[];
}

export async function cli(...argv: string[]): Promise<Ran> {
  const out: string[] = [];
  const err: string[] = [];
  const code = await run(argv, { out: (l) => out.push(...l.split('\n')), err: (l) => err.push(l) });
  return { code, out, err };
}

/** "name = value" lines (as db prints fields) as a map. */
export function fields(lines: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of lines) {
    const x = /^(\S+)\s+= (.*)$/.exec(l);
    if (x !== null) m.set(x[1]!, x[2]!);
  }
  return m;
}

/** Runs `rmapfs db IMAGE CMDS...`, asserting it succeeded. */
export async function db(t: Test, image: string, ...cmds: string[]): Promise<Ran> {
  const r = await cli('db', image, ...cmds);
  t.equal(r.code, 0, `db ${cmds.join(' | ')}: ${r.err.join(' ')}`);
  return r;
}
