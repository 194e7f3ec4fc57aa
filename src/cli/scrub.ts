/**
 * `rmapfs scrub [--json] [--ag N] MOUNTPOINT` and `rmapfs status MOUNTPOINT`:
 * ask the daemon serving a live mount, over its control socket.
 */
import { ctlRequest } from '../ctl/ctl';
import { formatProblem } from '../scrub/common';
import type { Problem } from '../scrub/common';
import { CliError, parseArgs } from './args';
import type { Command } from './args';

const SCRUB_USAGE = `usage: rmapfs scrub [--json] [--ag N] MOUNTPOINT

Checks a mounted filesystem without stopping it: each AG's free-space, rmap
and inode btrees, the coverage invariant (every block free or mapped exactly
once), and the files against the rmap. One line per problem.

exit status (a bitmask, like xfs_scrub): 0 clean, 1 operational error,
2 corruption found.`;

const STATUS_USAGE = `usage: rmapfs status MOUNTPOINT

Prints what the daemon serving a mount knows: device, pid, space, orphans.`;

interface ScrubReply {
  ok: boolean;
  error?: string;
  problems?: Problem[];
  problemCount?: number;
  agsChecked?: number;
  rmapRecords?: number;
  inodesChecked?: boolean;
  seconds?: number;
}

export const scrubCommand: Command = {
  name: 'scrub',
  summary: 'check a mounted filesystem, online',
  usage: SCRUB_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, [{ name: 'json', kind: 'flag' }, { name: 'ag', kind: 'value' }]);
    if (args.flag('help')) {
      io.out(SCRUB_USAGE);
      return 0;
    }
    const [mountpoint] = args.expectPositionals(['MOUNTPOINT']) as [string];
    const agText = args.string('ag');
    const ag = agText === undefined ? null : Number(agText);
    if (ag !== null && (!Number.isInteger(ag) || ag < 0)) throw new CliError(2, 'EINVAL', `--ag needs an AG number, not '${agText}'`);
    let reply: ScrubReply;
    try {
      reply = await ctlRequest(mountpoint, { cmd: 'scrub', ag }) as ScrubReply;
    } catch (e) {
      throw new CliError(1, 'EIO', e instanceof Error ? e.message : String(e));
    }
    if (!reply.ok) throw new CliError(1, 'EIO', reply.error ?? 'scrub failed');
    const problems = reply.problems ?? [];
    const count = reply.problemCount ?? problems.length;
    if (args.flag('json')) {
      io.out(JSON.stringify({ clean: count === 0, ...reply }));
    } else {
      for (const p of problems) io.out(formatProblem(p));
      io.out(count === 0
        ? `rmapfs scrub: clean (${reply.agsChecked} AGs, ${reply.rmapRecords} rmap records${reply.inodesChecked ? ', files' : ''}, ${(reply.seconds ?? 0).toFixed(2)} s)`
        : `rmapfs scrub: ${count} problem${count === 1 ? '' : 's'} in ${reply.agsChecked} AGs`);
    }
    return count === 0 ? 0 : 2;
  },
};

export const statusCommand: Command = {
  name: 'status',
  summary: 'what the daemon of a mount knows',
  usage: STATUS_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, []);
    if (args.flag('help')) {
      io.out(STATUS_USAGE);
      return 0;
    }
    const [mountpoint] = args.expectPositionals(['MOUNTPOINT']) as [string];
    let reply;
    try {
      reply = await ctlRequest(mountpoint, { cmd: 'status' });
    } catch (e) {
      throw new CliError(1, 'EIO', e instanceof Error ? e.message : String(e));
    }
    if (!reply.ok) throw new CliError(1, 'EIO', reply.error ?? 'status failed');
    for (const [k, v] of Object.entries(reply)) if (k !== 'ok') io.out(`${k.padEnd(15)} ${String(v)}`);
    return 0;
  },
};
