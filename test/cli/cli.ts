/** Running `rmapfs` in-process for the CLI tests: exit status and the lines written. */
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
