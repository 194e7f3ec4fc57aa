/**
 * `rmapfs scrub [--json] [--ag N] MOUNTPOINT` and `rmapfs status MOUNTPOINT`:
 * ask the daemon serving a live mount, over its control socket.
 */
import { ctlRequest } from '../ctl/ctl';
import type { CtlEvent, CtlReply, CtlRequest } from '../ctl/ctl';
import type { RmapRepairResult } from '../repair/rmap-repair';
import type { FreeSpaceRepairResult } from '../repair/free-space-repair';
import { describeSick } from '../ctl/health-report';
import type { SickStructureReport } from '../ctl/health-report';
import { formatProblem } from '../scrub/common';
import type { Problem } from '../scrub/common';
import { CliError, parseArgs } from './args';
import type { Command, CommandIo } from './args';

/**
 * One request to the daemon of a mount; a daemon that cannot be reached, or
 * that says no, is a one-line operational error (exit 1).
 */
export async function askDaemon(mountpoint: string, req: CtlRequest, onEvent?: (e: CtlEvent) => void,
  acceptRefusal = false): Promise<CtlReply> {
  let reply: CtlReply;
  try {
    reply = await ctlRequest(mountpoint, req, undefined, onEvent);
  } catch (e) {
    throw new CliError(1, 'EIO', e instanceof Error ? e.message : String(e));
  }
  if (!reply.ok && !acceptRefusal) throw new CliError(1, 'EIO', String(reply.error ?? `${req.cmd} failed`));
  return reply;
}

const SCRUB_USAGE = `usage: rmapfs scrub [--json] [--ag N] MOUNTPOINT

Checks a mounted filesystem without stopping it: each AG's free-space, rmap
and inode btrees, the coverage invariant (every block free or mapped exactly
once), and the files against the rmap. One line per problem.

exit status (a bitmask, like xfs_scrub): 0 clean, 1 operational error,
2 corruption found.`;

const STATUS_USAGE = `usage: rmapfs status [--json] MOUNTPOINT

Prints what the daemon serving a mount knows: device, pid, space, orphans,
and every structure known to be damaged (found failing during normal
operation, or by a scrub or a repair): how and when it was found, what fails
because of it, and whether rmapfs can repair it.

exit status (as scrub's): 0 nothing known damaged, 1 operational error,
2 damage known.`;

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
    const reply = await askDaemon(mountpoint, { cmd: 'scrub', ag }) as ScrubReply;
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

const REPAIR_USAGE = `usage: rmapfs repair [--json] [--progress] [--ag N] MOUNTPOINT

Rebuilds the rmap btree of every AG (or one) of a mounted filesystem, online:
the records are collected into an in-memory btree while the filesystem stays
in use, then the new btree is loaded and swapped in with one transaction.
Scrubs afterwards and reports the result. --progress draws a progress bar
(inodes scanned / total) on a terminal, or prints a line a second elsewhere.

exit status (a bitmask, like xfs_scrub): 0 done and clean, 1 operational
error (the old rmap stays), 4 corruption left after the repair, or damage
it cannot repair yet (then nothing is changed).`;


/** --progress: a bar redrawn in place on a terminal, else a line a second. */
function repairProgress(io: CommandIo): { event: (e: CtlEvent) => void; end: () => void } {
  const width = 30;
  let lastLine = 0;
  let drawn = false;
  const show = (text: string, force: boolean): void => {
    if (io.status !== undefined) {
      io.status(text);
      drawn = true;
      return;
    }
    const now = Date.now();
    if (!force && now - lastLine < 1000) return;
    lastLine = now;
    io.err(text);
  };
  return {
    event: (e) => {
      if (e.event === 'scan') {
        const done = Number(e.inodesScanned);
        const total = Math.max(1, Number(e.inodesTotal), done);
        const filled = Math.round((done / total) * width);
        const ags = Array.isArray(e.ags) ? e.ags.join(',') : '?';
        show(`scanning for AG ${ags} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] `
          + `${Math.floor((done / total) * 100)}% ${done}/${total} inodes`, false);
      } else if (e.event === 'commit') {
        const what = e.structure === 'free space' ? 'free-space btrees' : 'rmap btree';
        show(`AG ${String(e.agno)}: ${e.structure === 'free space' ? 'rebuilding' : 'loading and committing'} the new ${what}`, true);
      } else if (e.event === 'committed') {
        show(`AG ${String(e.agno)}: new ${e.structure === 'free space' ? 'free-space btrees' : 'rmap btree'} committed`, true);
      }
    },
    end: () => {
      if (drawn) io.status?.('');
    },
  };
}

export const repairCommand: Command = {
  name: 'repair',
  summary: 'rebuild the rmap of a mounted filesystem, online',
  usage: REPAIR_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, [{ name: 'json', kind: 'flag' }, { name: 'progress', kind: 'flag' },
      { name: 'ag', kind: 'value' }]);
    if (args.flag('help')) {
      io.out(REPAIR_USAGE);
      return 0;
    }
    const [mountpoint] = args.expectPositionals(['MOUNTPOINT']) as [string];
    const agText = args.string('ag');
    const ag = agText === undefined ? null : Number(agText);
    if (ag !== null && (!Number.isInteger(ag) || ag < 0)) throw new CliError(2, 'EINVAL', `--ag needs an AG number, not '${agText}'`);
    const progress = args.flag('progress') ? repairProgress(io) : null;
    let reply: CtlReply;
    // Ctrl-C closes the connection: the daemon stops the repair before its commit, the old rmap stays.
    const stop = (): void => {
      io.err('rmapfs: repair cancelled; the old rmap stays in place');
      process.exit(1);
    };
    process.once('SIGINT', stop);
    try {
      // Only --json shows the heap growth, and measuring it well costs the daemon two full GCs (tens of ms
      // each, on the thread that serves FUSE): ask for it only then.
      reply = await askDaemon(mountpoint, { cmd: 'repair', ag, measureHeap: args.flag('json') }, progress?.event, true);
      const unrepairable = reply.unrepairable as SickStructureReport[] | undefined;
      if (!reply.ok && unrepairable !== undefined) {
        // Damage it cannot rebuild yet: said plainly, nothing changed, corruption left (4).
        if (args.flag('json')) io.out(JSON.stringify({ clean: false, repaired: false, unrepairable }));
        else io.err(`rmapfs repair: ${String(reply.error)}`);
        return 4;
      }
      if (!reply.ok) throw new CliError(1, 'EIO', String(reply.error ?? 'repair failed'));
    } finally {
      process.removeListener('SIGINT', stop);
      progress?.end();
    }
    const ags = (reply.ags ?? []) as RmapRepairResult[];
    const freeSpace = (reply.freeSpace ?? []) as FreeSpaceRepairResult[];
    const scrub = (reply.scrub ?? {}) as ScrubReply;
    const left = scrub.problemCount ?? 0;
    if (args.flag('json')) {
      io.out(JSON.stringify({ clean: left === 0, ags: ags.map((a) => ({
        agno: a.agno, records: a.records, blocks: a.blocks, old_blocks: a.oldBlocks, inodes_scanned: a.inodesScanned,
        scan_ms: +a.scanMs.toFixed(1), load_ms: +a.loadMs.toFixed(2), commit_pause_ms: +a.commitPauseMs.toFixed(2),
        xfile_bytes: a.xfileBytes, heap_growth_mib: +a.heapGrowthMib.toFixed(2),
      })), free_space: freeSpace.map((f) => ({
        agno: f.agno, records: f.records, free_blocks: f.freeBlocks, longest: f.longest, bno_blocks: f.bnoBlocks,
        cnt_blocks: f.cntBlocks, old_blocks: f.oldBlocks, scan_ms: +f.scanMs.toFixed(1), commit_pause_ms: +f.commitPauseMs.toFixed(2),
      })), problems_left: left }));
    } else {
      for (const f of freeSpace) {
        io.out(`AG ${f.agno}: free-space btrees rebuilt from the rmap, ${f.records} free extents (${f.freeBlocks} blocks) `
          + `in ${f.bnoBlocks}+${f.cntBlocks} blocks (was ${f.oldBlocks}); commit pause ${f.commitPauseMs.toFixed(1)} ms`);
      }
      for (const a of ags) {
        io.out(`AG ${a.agno}: rmap rebuilt, ${a.records} records in ${a.blocks} blocks (was ${a.oldBlocks}); `
          + `scanned ${a.inodesScanned} inodes in ${a.scanMs.toFixed(0)} ms, commit pause ${a.commitPauseMs.toFixed(1)} ms`);
      }
      for (const p of scrub.problems ?? []) io.out(formatProblem(p));
      io.out(left === 0 ? 'rmapfs repair: done; scrub is clean' : `rmapfs repair: ${left} problems left after the repair`);
    }
    return left === 0 ? 0 : 4;
  },
};

export const statusCommand: Command = {
  name: 'status',
  summary: 'what the daemon of a mount knows',
  usage: STATUS_USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, [{ name: 'json', kind: 'flag' }]);
    if (args.flag('help')) {
      io.out(STATUS_USAGE);
      return 0;
    }
    const [mountpoint] = args.expectPositionals(['MOUNTPOINT']) as [string];
    const reply = await askDaemon(mountpoint, { cmd: 'status' });
    const damaged = (reply.damaged ?? []) as SickStructureReport[];
    const status = damaged.length === 0 ? 0 : 2;
    if (args.flag('json')) {
      const { ok: _ok, ...fields } = reply;
      io.out(JSON.stringify(fields));
      return status;
    }
    for (const [k, v] of Object.entries(reply)) if (k !== 'ok' && k !== 'damaged') io.out(`${k.padEnd(15)} ${String(v)}`);
    if (damaged.length === 0) io.out(`${'damaged'.padEnd(15)} none known`);
    else damaged.flatMap(describeSick).forEach((line, i) => io.out(`${(i === 0 ? 'damaged' : '').padEnd(15)} ${line}`));
    return status;
  },
};
