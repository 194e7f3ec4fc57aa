/**
 * `rmapfs check [--json] DEVICE`: the offline check. Opens the filesystem
 * read-only (a dirty journal is replayed in memory only), runs every check
 * pass and reports each problem on one line. Exit statuses follow fsck:
 * 0 clean, 4 corruption found (and left), 8 operational error, 16 usage.
 */
import { RmapfsError } from '../errors';
import { formatProblem } from '../scrub/common';
import { CHECK_CLEAN, CHECK_CORRUPT, CHECK_OPERATIONAL, checkDevice } from '../fsck/check';
import type { DeviceCheckReport } from '../fsck/check';
import { CliError, parseArgs } from './args';
import type { Command, CommandIo } from './args';

export const CHECK_USAGE = 16;

const USAGE = `usage: rmapfs check [--json] DEVICE

Checks an rmapfs offline and changes nothing: the primary superblock and
every AG's copy of it, each AG's header, its free-space, rmap and inode
btrees, the free space against the header's figures, and the rmap's
coverage of every block. A journal holding committed transactions is
replayed in memory only. Unmount the filesystem first.

options:
  --json       one JSON object: {clean, status, problems, problemCount, ags,
               blocks, freeBlocks, rmapRecords, seconds, error}
  -h, --help   this text

exit status (as fsck): 0 clean, 4 corruption found, 8 operational error
(cannot open, not an rmapfs, I/O error), 16 usage error.`;

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function printText(report: DeviceCheckReport, io: CommandIo): void {
  const r = report.result;
  if (report.status === CHECK_OPERATIONAL && report.error !== null && r.agsChecked === 0) {
    io.err(`rmapfs: ${report.error}`);
    return;
  }
  if (r.agsChecked === 0) {
    // The filesystem could not be opened: one line saying why.
    io.out(`rmapfs check: ${report.path} cannot be checked: ${r.problems.map(formatProblem).join('; ')}`);
    return;
  }
  if (report.replayed.transactions > 0) {
    io.out(`journal: ${plural(report.replayed.transactions, 'committed transaction')} (${plural(report.replayed.blocks, 'block')}) replayed in memory`);
  }
  for (const p of r.problems) io.out(formatProblem(p));
  if (r.problemCount > r.problems.length) io.out(`... and ${r.problemCount - r.problems.length} more`);
  if (report.error !== null) io.err(`rmapfs: ${report.error}`);
  if (report.status === CHECK_CLEAN) {
    io.out(`rmapfs check: clean (${plural(r.agsChecked, 'AG')}, ${r.blocks} blocks, ${r.freeBlocks} free, ${plural(r.rmapRecords, 'rmap record')})`);
  } else {
    io.out(`rmapfs check: ${plural(r.problemCount, 'problem')} in ${plural(r.agsChecked, 'AG')}${report.status === CHECK_OPERATIONAL ? ' (check incomplete)' : ''}`);
  }
}

function printJson(report: DeviceCheckReport, io: CommandIo): void {
  const r = report.result;
  io.out(JSON.stringify({
    clean: report.status === CHECK_CLEAN,
    status: report.status,
    problems: r.problems.map((p) => ({ ...p, text: formatProblem(p) })),
    problemCount: r.problemCount,
    ags: r.agsChecked,
    blocks: r.blocks,
    freeBlocks: r.freeBlocks,
    freeExtents: r.freeExtents,
    rmapRecords: r.rmapRecords,
    replayedTransactions: report.replayed.transactions,
    seconds: Number(report.seconds.toFixed(3)),
    error: report.error,
  }));
  if (report.error !== null) io.err(`rmapfs: ${report.error}`);
}

/** A check's report, as text or one JSON object (fsck -n prints the same). */
export function printCheckReport(report: DeviceCheckReport, json: boolean, io: CommandIo): void {
  if (json) printJson(report, io);
  else printText(report, io);
}

export const checkCommand: Command = {
  name: 'check',
  summary: 'check a filesystem offline, changing nothing (fsck exit codes)',
  usage: USAGE,
  run(argv, io) {
    let json: boolean;
    let path: string;
    try {
      const args = parseArgs(argv, [{ name: 'json', kind: 'flag' }]);
      if (args.flag('help')) {
        io.out(USAGE);
        return 0;
      }
      json = args.flag('json');
      [path] = args.expectPositionals(['DEVICE']) as [string];
    } catch (e) {
      if (e instanceof RmapfsError) throw new CliError(CHECK_USAGE, e.code, e.message);
      throw e;
    }
    let report: DeviceCheckReport;
    try {
      report = checkDevice(path);
    } catch (e) {
      // Not corruption: a bug, or something the device did that the open did not expect.
      throw new CliError(CHECK_OPERATIONAL, 'EIO', `check of ${path} failed: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    printCheckReport(report, json, io);
    return report.status === CHECK_CORRUPT ? CHECK_CORRUPT : report.status;
  },
};
