/**
 * `rmapfs fsck [-n|-y|-p|-a] [-f] [-L] [-V] IMAGE` (what bin/fsck.rmapfs
 * runs, so `fsck -t rmapfs IMAGE` works) and `rmapfs repair IMAGE` (repair
 * given an image or a device rather than a mount point): the offline repair
 * of src/fsck/offline.ts with fsck(8)'s options and exit statuses -- 0 clean,
 * 1 errors corrected, 4 errors left uncorrected, 8 operational error, 16
 * usage error.
 */
import * as fs from 'fs';
import { RmapfsError } from '../errors';
import { isMounted } from '../io/mountinfo';
import { formatProblem } from '../scrub/common';
import { FSCK_CLEAN, FSCK_CORRECTED, FSCK_OPERATIONAL, FSCK_UNCORRECTED, FSCK_USAGE, repairDevice } from '../fsck/offline';
import type { OfflineRepairReport } from '../fsck/offline';
import { CliError, parseArgs } from './args';
import type { Command, CommandIo, OptionSpec, ParsedArgs } from './args';
import { printCheckReport } from './check';
import type { HeaderRepairResult } from '../repair/ag-header-repair';
import { headerRepairLine, onlineRepairCommand, repairObjectLines, repairProgress, repairReplyJson } from './scrub';
import { selectStructures } from '../fsck/table';

export const FSCK_USAGE_TEXT = `usage: fsck.rmapfs [-n | -y | -p | -a] [-f] [-L] [--json] [--type T,...] [--force-rebuild] IMAGE
       rmapfs repair [the same options] IMAGE
       fsck.rmapfs -V

Checks and repairs an unmounted rmapfs (an image file or a block device),
offline. First what needs the whole device: a primary superblock that does
not verify is rebuilt from its copies in the other AGs (found where the
geometry puts them, or by a scan for their magic; they vote); a log that
cannot be replayed is refused unless -L; an AG header that cannot be read is
rebuilt from a scan of the AG's blocks. Then the repairs of online
\`rmapfs repair\` (the same repairers, in the same order), then \`rmapfs check\`
again: its verdict is the result. A line per object repaired; a progress
line on a terminal.

options:
  -n           check only, change nothing (as rmapfs check)
  -y           repair everything it can without asking (the default)
  -p, -a       preen: repair what needs no decision (the btrees, free lists,
               headers and counters rebuilt from the rmap); leave a damaged
               primary superblock, an unreadable AG header or log (exit 4).
               A filesystem whose superblock says it was unmounted cleanly is
               not checked (unless -f)
  -f           check even a filesystem that says it is clean (with -p)
  -L           zero a log that cannot be replayed: the changes it held are lost
  -V           print the version
  --json       one JSON object, as rmapfs repair's online (camelCase):
               {clean, status, repaired, wholeDevice, warnings, ags, freeSpace,
               inodeBtree, headers, problems, problemCount, unrepairable,
               seconds, error, errorCode}
  --type T,... only these structures (rmapfs repair --type list names them)
  --force-rebuild  rebuild every structure that can be, damaged or not

exit status (fsck's): 0 clean, 1 errors corrected, 4 errors left uncorrected,
8 operational error (no such image, mounted, not an rmapfs, I/O), 16 usage.`;

export const FSCK_OPTIONS: readonly OptionSpec[] = [
  { name: 'no', kind: 'flag', short: 'n' },
  { name: 'yes', kind: 'flag', short: 'y' },
  { name: 'preen', kind: 'flag', short: 'p' },
  { name: 'auto', kind: 'flag', short: 'a' },
  { name: 'force', kind: 'flag', short: 'f' },
  { name: 'zero-log', kind: 'flag', short: 'L' },
  { name: 'version', kind: 'flag', short: 'V' },
  { name: 'json', kind: 'flag' },
  { name: 'type', kind: 'value' },
  { name: 'force-rebuild', kind: 'flag' },
];

function usageError(message: string): CliError {
  return new CliError(FSCK_USAGE, 'EINVAL', message);
}

function verdict(report: OfflineRepairReport): string {
  switch (report.status) {
    case FSCK_CLEAN: return `rmapfs repair: ${report.path}: clean${report.repair === null && report.before === null ? ' (the superblock says so; -f checks it)' : ''}`;
    case FSCK_CORRECTED: return `rmapfs repair: ${report.path}: errors corrected; check is clean`;
    case FSCK_UNCORRECTED: {
      const left = report.after?.result.problemCount ?? 0;
      return `rmapfs repair: ${report.path}: ${left > 0 ? `${left} problem${left === 1 ? '' : 's'} left uncorrected` : 'errors left uncorrected'}`;
    }
    default: return `rmapfs repair: ${report.path}: repair incomplete`;
  }
}

function printText(report: OfflineRepairReport, io: CommandIo): void {
  for (const line of report.wholeDevice) io.out(line);
  for (const h of report.headersAfterScan) io.out(headerRepairLine(h));
  for (const w of report.warnings) io.err(`rmapfs repair: warning: ${w}`);
  if (report.repair !== null && report.repair.ok) {
    // What it rebuilt; the verdict and the problems left are the closing check's.
    for (const l of repairObjectLines(report.repair)) io.out(l);
    for (const again of report.laterPasses) for (const l of repairObjectLines(again)) io.out(l);
  }
  const after = report.after?.result;
  if (after !== undefined && report.status === FSCK_UNCORRECTED) {
    for (const p of after.problems) io.out(formatProblem(p));
    if (after.problemCount > after.problems.length) io.out(`... and ${after.problemCount - after.problems.length} more`);
  }
  if (report.error !== null) io.err(`rmapfs repair: ${report.error}`);
  // An operational error's line is the whole story (the repair did not get to a verdict).
  if (report.status !== FSCK_OPERATIONAL || report.after !== null) io.out(verdict(report));
}

function printJson(report: OfflineRepairReport, io: CommandIo): void {
  const after = report.after?.result;
  const left = after?.problemCount ?? 0;
  const first = report.repair?.ok === true ? report.repair : { ok: true };
  // Every pass's rebuilds, as one repair's.
  const reply = { ...first };
  for (const again of report.laterPasses) {
    for (const k of ['ags', 'freeSpace', 'inodeBtree', 'headers', 'files']) {
      reply[k] = [...((reply[k] ?? []) as unknown[]), ...((again[k] ?? []) as unknown[])];
    }
  }
  const base = repairReplyJson({ ...reply, headers: [...report.headersAfterScan, ...((reply.headers ?? []) as HeaderRepairResult[])] }, report.status, left);
  io.out(JSON.stringify({
    ...base, clean: report.status === FSCK_CLEAN || report.status === FSCK_CORRECTED, status: report.status,
    repaired: report.status === FSCK_CORRECTED, wholeDevice: report.wholeDevice, warnings: report.warnings,
    problems: (after?.problems ?? []).map((p) => ({ ...p, text: formatProblem(p) })), problemCount: left,
    seconds: Number(report.seconds.toFixed(3)), error: report.error, errorCode: report.errorCode,
  }));
  if (report.error !== null) io.err(`rmapfs repair: ${report.error}`);
}

/** Runs the offline repair with already parsed arguments (rmapfs repair IMAGE comes here too). */
export async function runOfflineRepair(args: ParsedArgs, io: CommandIo): Promise<number> {
  if (args.flag('help')) {
    io.out(FSCK_USAGE_TEXT);
    return FSCK_CLEAN;
  }
  if (args.flag('version')) {
    io.out('fsck.rmapfs (rmapfs 0.1.0)');
    return FSCK_CLEAN;
  }
  const dryRun = args.flag('no');
  const preen = args.flag('preen') || args.flag('auto');
  if (dryRun && (args.flag('yes') || preen)) throw usageError(`-n (change nothing) cannot go with ${args.flag('yes') ? '-y' : '-p/-a'} (repair)`);
  if (args.flag('yes') && preen) throw usageError('-y and -p/-a are two ways to answer: give one');
  if (dryRun && (args.flag('zero-log') || args.flag('force-rebuild'))) throw usageError('-n changes nothing: not with -L or --force-rebuild');
  let device: string;
  try {
    [device] = args.expectPositionals(['IMAGE']) as [string];
  } catch (e) {
    throw e instanceof RmapfsError ? usageError(e.message) : e;
  }
  const typeText = args.string('type');
  const types = typeText === undefined ? null : typeText.split(',').filter((t) => t !== '');
  try {
    selectStructures(types, null);
  } catch (e) {
    throw usageError(e instanceof Error ? e.message : String(e));
  }
  const json = args.flag('json');
  // A progress line only on a terminal: piped, the lines per object are the record.
  const progress = io.status !== undefined && !json ? repairProgress(io) : null;
  let report: OfflineRepairReport;
  try {
    report = await repairDevice(device, {
      dryRun, preen, force: args.flag('force'), zeroLog: args.flag('zero-log'), forceRebuild: args.flag('force-rebuild'), types,
      onEvent: progress?.event,
    });
  } finally {
    progress?.end();
  }
  if (dryRun && report.after !== null) {
    printCheckReport(report.after, json, io);
    return report.status;
  }
  if (json) printJson(report, io);
  else printText(report, io);
  return report.status;
}

export const fsckCommand: Command = {
  name: 'fsck',
  summary: 'check and repair an unmounted filesystem offline (fsck.rmapfs; fsck exit codes)',
  usage: FSCK_USAGE_TEXT,
  async run(argv, io) {
    let args: ParsedArgs;
    try {
      args = parseArgs(argv, FSCK_OPTIONS);
    } catch (e) {
      throw e instanceof RmapfsError ? usageError(e.message) : e;
    }
    return runOfflineRepair(args, io);
  },
};

/** Whether `rmapfs repair ARGS` means a mount (online): its last argument is a directory, or it lists the types. */
function meansOnline(argv: readonly string[]): boolean {
  const typeAt = argv.indexOf('--type');
  if ((typeAt >= 0 && argv[typeAt + 1] === 'list') || argv.includes('--type=list')) return true;
  const last = [...argv].reverse().find((a) => !a.startsWith('-'));
  if (last === undefined) return !argv.some((a) => FSCK_OPTIONS.some((o) => o.short !== undefined && a === `-${o.short}`));
  if (isMounted(last)) return true;
  try {
    return fs.statSync(last).isDirectory();
  } catch (e) {
    // Missing: an image that is not there (offline says so). Anything else (ENOTCONN: a mount whose
    // daemon is gone) is the online command's to explain.
    return (e as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

/** `rmapfs repair`: a mount point online (xfs_scrub's statuses), an image or a device offline (fsck's). */
export const repairCommand: Command = {
  ...onlineRepairCommand,
  run(argv, io) {
    return meansOnline(argv) ? onlineRepairCommand.run(argv, io) : fsckCommand.run(argv, io);
  },
};
