/**
 * `rmapfs scrub [--json] [--ag N] MOUNTPOINT`, `rmapfs repair ... MOUNTPOINT` and `rmapfs status MOUNTPOINT`:
 * ask the daemon serving a live mount, over its control socket. All three exit by xfs_scrub's bitmask
 * (ONLINE_*) and print one JSON object of one style with --json.
 */
import { RmapfsError } from '../errors';
import { ctlRequest, refusalError } from '../ctl/ctl';
import type { CtlEvent, CtlReply, CtlRequest } from '../ctl/ctl';
import type { RmapRepairResult } from '../repair/rmap-repair';
import type { FreeSpaceRepairResult } from '../repair/free-space-repair';
import type { HeaderRepairResult } from '../repair/ag-header-repair';
import type { InodeBtreeRepairResult } from '../repair/inobt-repair';
import type { FileRepairResult } from '../repair/file-repair';
import { describeHealth, describeSick } from '../ctl/health-report';
import type { HealthSummary, SickStructureReport } from '../ctl/health-report';
import { formatProblem } from '../scrub/common';
import type { Problem } from '../scrub/common';
import { CliError, parseArgs } from './args';
import type { Command, CommandIo, OptionSpec, ParsedArgs } from './args';
import { isRepairable, selectStructures, structureListLines } from '../fsck/table';
import type { StructureName } from '../format/structures';
import { isStructureName, structureLabel } from '../format/structures';

/**
 * Exit statuses of scrub, repair and status: xfs_scrub's bitmask. (`check`, the offline fsck, keeps
 * fsck(8)'s.)
 */
export const ONLINE_CLEAN = 0;
/** Corruption found, or left after a repair (status: damage known). */
export const ONLINE_CORRUPT = 1;
/** Could be optimised (nothing says so yet). */
export const ONLINE_OPTIMIZE = 2;
/** Operational error: not a mount, daemon gone, the daemon refused or failed. */
export const ONLINE_OPERATIONAL = 4;
/** Usage error: bad options or arguments, or a request the daemon found invalid (EINVAL). */
export const ONLINE_USAGE = 8;

const EXIT_STATUS_HELP = `exit status (a bitmask, as xfs_scrub's): 0 clean, 1 corruption found or
left, 2 could be optimised, 4 operational error (not an rmapfs mount, daemon
gone, the daemon refused or failed: the line ends with the errno name, e.g.
(EBUSY)), 8 usage error (bad options, or an AG past the end).`;

/** A failure of an online command: its line ends with the errno name; its status follows the scheme. */
export function onlineError(e: RmapfsError, status: number): CliError {
  return new CliError(status, e.code, `${e.message} (${e.code})`, { cause: e });
}

/** A refusal of the daemon: EINVAL (the request was invalid) is a usage error, anything else operational. */
export function refused(reply: CtlReply, what: string): CliError {
  const e = refusalError(reply, what);
  return onlineError(e, e.code === 'EINVAL' ? ONLINE_USAGE : ONLINE_OPERATIONAL);
}

/**
 * One request to the daemon of a mount. A daemon that cannot be reached is an operational error; a
 * refusal carries the daemon's errno (unless acceptRefusal: the caller looks at the reply).
 */
export async function askDaemon(mountpoint: string, req: CtlRequest, onEvent?: (e: CtlEvent) => void,
  acceptRefusal = false): Promise<CtlReply> {
  let reply: CtlReply;
  try {
    reply = await ctlRequest(mountpoint, req, undefined, onEvent);
  } catch (e) {
    if (e instanceof RmapfsError) throw onlineError(e, ONLINE_OPERATIONAL);
    throw e;
  }
  if (!reply.ok && !acceptRefusal) throw refused(reply, req.cmd);
  return reply;
}

/** What the argument parser throws (exit 2 for most commands) exits 8 here: xfs_scrub's usage status. */
function asUsageError(e: unknown): unknown {
  return e instanceof RmapfsError ? new CliError(ONLINE_USAGE, e.code, e.message, { cause: e }) : e;
}

/**
 * Parses an online command's arguments, answers --help, and runs `body`. With --json, a failure prints
 * {clean, status, error, errorCode} on stdout too (its line still goes to stderr), so a script always
 * gets one object.
 */
export async function runOnline(argv: string[], io: CommandIo, options: OptionSpec[], usage: string,
  body: (args: ParsedArgs, json: boolean) => Promise<number>): Promise<number> {
  let args: ParsedArgs;
  try {
    args = parseArgs(argv, [{ name: 'json', kind: 'flag' }, ...options]);
  } catch (e) {
    throw asUsageError(e);
  }
  if (args.flag('help')) {
    io.out(usage);
    return ONLINE_CLEAN;
  }
  const json = args.flag('json');
  try {
    return await body(args, json);
  } catch (e) {
    if (json && e instanceof CliError) {
      io.out(JSON.stringify({ clean: false, status: e.status, error: e.message, errorCode: e.code }));
    }
    throw e;
  }
}

/** The one positional argument of every online command. */
export function mountpointArgument(args: ParsedArgs): string {
  try {
    return (args.expectPositionals(['MOUNTPOINT']) as [string])[0];
  } catch (e) {
    throw asUsageError(e);
  }
}

/**
 * --ag N and --type T[,T...], checked against the structure table: a bad one is a usage error
 * (whether the filesystem has AG N is the daemon's to say).
 */
function structureArgs(args: ParsedArgs): { ag: number | null; ino: number | null; types: string[] | null } {
  const agText = args.string('ag');
  const ag = agText === undefined ? null : Number(agText);
  if (ag !== null && (!Number.isInteger(ag) || ag < 0)) throw new CliError(ONLINE_USAGE, 'EINVAL', `--ag needs an AG number, not '${agText}'`);
  const inoText = args.string('inode');
  const ino = inoText === undefined ? null : Number(inoText);
  if (ino !== null && (!Number.isInteger(ino) || ino < 0)) throw new CliError(ONLINE_USAGE, 'EINVAL', `--inode needs an inode number, not '${inoText}'`);
  const typeText = args.string('type');
  const types = typeText === undefined ? null : typeText.split(',').filter((t) => t !== '');
  try {
    selectStructures(types, ag, ino);
  } catch (e) {
    throw new CliError(ONLINE_USAGE, 'EINVAL', e instanceof Error ? e.message : String(e));
  }
  return { ag, ino, types };
}

/** --type list: prints the structure table (true: done). */
function listTypes(args: ParsedArgs, io: CommandIo): boolean {
  if (args.string('type') !== 'list') return false;
  for (const line of structureListLines()) io.out(line);
  return true;
}

/** Problems as every --json shows them: the fields, and the line the text output prints. */
function problemsJson(problems: readonly Problem[]): (Problem & { text: string })[] {
  return problems.map((p) => ({ ...p, text: formatProblem(p) }));
}

const SCRUB_USAGE = `usage: rmapfs scrub [--json] [--type T[,T...]] [--ag N | --inode N] MOUNTPOINT
       rmapfs scrub --type list

Checks a mounted filesystem without stopping it, with the checks of
\`rmapfs check\`: the superblocks, each AG's header, free list, free-space,
rmap and inode btrees, the coverage invariant (every block free or mapped
exactly once), the summary counters, and the files against the rmap. One
line per problem. --type checks only those structures (--type list names
them); --ag N only AG N's (the structures of an AG); --inode N only inode
N's (its core, block map, directory, attributes, symlink target).

options:
  --json       one JSON object: {clean, status, problems, problemCount,
               agsChecked, rmapRecords, inodesChecked, seconds, error,
               errorCode}
  --type T,... only these structures (--type list names them)
  --ag N       only AG N
  --inode N    only inode N's structures

${EXIT_STATUS_HELP}`;

const STATUS_USAGE = `usage: rmapfs status [--json] MOUNTPOINT

Prints what the daemon serving a mount knows: device, pid, space, orphans,
the options a remount can change (sync, dirsync, atime, commit=), the health
of its metadata (how many structures -- each AG's, the filesystem's, each
inode's -- are unchecked, healthy or sick since the mount), and every
structure known to be damaged (found failing during normal operation, or by
a scrub or a repair): where (AG, inode), how and when it was found, what
fails because of it, a repair that failed and why, and whether rmapfs can
repair it. Health lives in memory: a remount starts everything unchecked.

options:
  --json       one JSON object: {clean, status, device, mountpoint, pid, ...,
               health: {ags, filesystem, inodes}, damaged, error, errorCode}

${EXIT_STATUS_HELP}
For status, 1 means damage is known.`;

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
  run(argv, io) {
    return runOnline(argv, io, [{ name: 'ag', kind: 'value' }, { name: 'inode', kind: 'value' }, { name: 'type', kind: 'value' }], SCRUB_USAGE, async (args, json) => {
      if (listTypes(args, io)) return ONLINE_CLEAN;
      const mountpoint = mountpointArgument(args);
      const { ag, ino, types } = structureArgs(args);
      const reply = await askDaemon(mountpoint, { cmd: 'scrub', ag, ino, types }) as ScrubReply;
      const problems = reply.problems ?? [];
      const count = reply.problemCount ?? problems.length;
      const status = count === 0 ? ONLINE_CLEAN : ONLINE_CORRUPT;
      if (json) {
        io.out(JSON.stringify({ clean: count === 0, status, problems: problemsJson(problems), problemCount: count,
          agsChecked: reply.agsChecked, rmapRecords: reply.rmapRecords, inodesChecked: reply.inodesChecked,
          seconds: reply.seconds, error: null, errorCode: null }));
        return status;
      }
      for (const p of problems) io.out(formatProblem(p));
      io.out(count === 0
        ? `rmapfs scrub: clean (${reply.agsChecked} AGs, ${reply.rmapRecords} rmap records${reply.inodesChecked ? ', files' : ''}, ${(reply.seconds ?? 0).toFixed(2)} s)`
        : `rmapfs scrub: ${count} problem${count === 1 ? '' : 's'} in ${reply.agsChecked} AGs`);
      return status;
    });
  },
};

const REPAIR_USAGE = `usage: rmapfs repair [--json] [--progress] [--type T[,T...]] [--ag N | --inode N] [--force-rebuild] MOUNTPOINT
       rmapfs repair [-n|-y|-p|-a] [-f] [-L] [--json] [--type T,...] [--force-rebuild] IMAGE
       rmapfs repair --type list

Given an image file or a block device rather than a mount point, repairs it
offline with fsck's options and exit statuses ('rmapfs fsck --help').

Scrubs a mounted filesystem (the structures --type names, of AG N with
--ag) and repairs what it finds damaged, online, in dependency order (the
rmap before what is rebuilt from it). A damaged structure rmapfs cannot
rebuild yet is named and left as it is. --force-rebuild rebuilds every
structure asked for that can be, damaged or not. Today that is the rmap
btree (rebuilt from the files' block maps and the static owners: its
records are collected into an in-memory btree while the filesystem stays in
use, then the new btree is loaded and swapped in with one transaction) and
the free-space btrees (rebuilt from the rmap the same way), the inode btree
(from the rmap's inode chunks and the inodes themselves), the AG
headers and free lists (recomputed from the btrees and the rmap), the
secondary superblocks (rewritten from the primary) and the summary counters
(recomputed from every AG's btrees); per file, the inode core (impossible
values made safe, counts recomputed; an inode beyond saving cleared) and
the block map (rebuilt from the rmap), each reported in one line by path
("/a/b: block count 12 -> 9"). Scrubs afterwards and reports the result. --progress draws
a progress bar (inodes scanned / total) on a terminal, or prints a line a
second elsewhere. --type list names the structures (scope, repairer,
dependencies). If a rebuild fails, the old structure stays.

options:
  --json       one JSON object: {clean, status, repaired, ags: [{agno, records,
               blocks, oldBlocks, inodesScanned, scanMs, loadMs, commitPauseMs,
               xfileBytes, heapGrowthMib, sickForks}], freeSpace: [{agno, records,
               freeBlocks, longest, bnoBlocks, cntBlocks, oldBlocks, scanMs,
               commitPauseMs}], inodeBtree: [{agno, chunks, inodes,
               freeInodes, btreeBlocks, oldBlocks, scanMs, commitPauseMs}],
               headers: [{type, agno, fixed, commitPauseMs}], files: [{type, ino,
               path, changes, commitPauseMs, leftFor, error}], problems, problemCount,
               unrepairable, error, errorCode}
  --progress   a progress bar
  --type T,... only these structures (--type list names them)
  --ag N       only AG N
  --inode N    only inode N's structures (with --force-rebuild: rebuild them)
  --force-rebuild  rebuild even what is not damaged

${EXIT_STATUS_HELP}
For repair, 1 means corruption is left after the repair, or damage it cannot
repair yet is there (then nothing is changed).`;


/** --progress: a bar redrawn in place on a terminal, else a line a second. */
export function repairProgress(io: CommandIo): { event: (e: CtlEvent) => void; end: () => void } {
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
      if (e.event === 'phase') {
        show(String(e.text), true);
      } else if (e.event === 'scan') {
        const done = Number(e.inodesScanned);
        const total = Math.max(1, Number(e.inodesTotal), done);
        const filled = Math.round((done / total) * width);
        const ags = Array.isArray(e.ags) ? e.ags.join(',') : '?';
        show(`scanning for AG ${ags} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] `
          + `${Math.floor((done / total) * 100)}% ${done}/${total} inodes`, false);
      } else if (e.event === 'commit' || e.event === 'committed') {
        // The structure the event names (the commit of one AG's, or the filesystem's: agno -1).
        const what = isStructureName(String(e.type)) ? structureLabel(e.type as StructureName) : 'rmap btree';
        const where = Number(e.agno) >= 0 ? `AG ${String(e.agno)}: ` : '';
        show(e.event === 'commit' ? `${where}rebuilding the ${what}` : `${where}${what} rebuilt`, true);
      }
    },
    end: () => {
      if (drawn) io.status?.('');
    },
  };
}

/** `rmapfs repair MOUNTPOINT` (src/cli/fsck.ts sends `rmapfs repair IMAGE` offline). */
export const onlineRepairCommand: Command = {
  name: 'repair',
  summary: 'repair a mounted filesystem online (what scrub finds damaged), or an image offline',
  usage: REPAIR_USAGE,
  run(argv, io) {
    return runOnline(argv, io, [{ name: 'progress', kind: 'flag' }, { name: 'ag', kind: 'value' }, { name: 'inode', kind: 'value' }, { name: 'type', kind: 'value' },
      { name: 'force-rebuild', kind: 'flag' }], REPAIR_USAGE, (args, json) => repair(args, json, io));
  },
};

async function repair(args: ParsedArgs, json: boolean, io: CommandIo): Promise<number> {
  if (listTypes(args, io)) return ONLINE_CLEAN;
  const mountpoint = mountpointArgument(args);
  const { ag, ino, types } = structureArgs(args);
  const forceRebuild = args.flag('force-rebuild');
  const norepairer = forceRebuild ? (types ?? []).filter((t) => !isRepairable(t as StructureName)) : [];
  if (norepairer.length > 0) {
    throw new CliError(ONLINE_OPERATIONAL, 'EOPNOTSUPP', `rmapfs cannot rebuild ${norepairer.join(', ')} yet (--type list says which it can) (EOPNOTSUPP)`);
  }
  const progress = args.flag('progress') ? repairProgress(io) : null;
  let reply: CtlReply;
  // Ctrl-C closes the connection: the daemon stops the repair before its commit, the old rmap stays.
  const stop = (): void => {
    io.err('rmapfs: repair cancelled; the old rmap stays in place');
    process.exit(ONLINE_OPERATIONAL);
  };
  process.once('SIGINT', stop);
  try {
    // Only --json shows the heap growth, and measuring it well costs the daemon two full GCs (tens of ms
    // each, on the thread that serves FUSE): ask for it only then.
    reply = await askDaemon(mountpoint, { cmd: 'repair', ag, ino, types, forceRebuild, measureHeap: json }, progress?.event, true);
    const unrepairable = reply.unrepairable as SickStructureReport[] | undefined;
    if (!reply.ok && unrepairable !== undefined) {
      // Damage it cannot rebuild yet: said plainly, nothing changed, corruption left.
      if (json) {
        io.out(JSON.stringify({ clean: false, status: ONLINE_CORRUPT, repaired: false, ags: [], problems: [],
          problemCount: 0, unrepairable, error: String(reply.error), errorCode: reply.code ?? null }));
      } else {
        io.err(`rmapfs repair: ${String(reply.error)}`);
      }
      return ONLINE_CORRUPT;
    }
    if (!reply.ok) throw refused(reply, 'repair');
  } finally {
    process.removeListener('SIGINT', stop);
    progress?.end();
  }
  // Damage it found but cannot rebuild yet, beside what it rebuilt: left as it is, and said so.
  const left = problemsLeft(reply);
  const status = left === 0 ? ONLINE_CLEAN : ONLINE_CORRUPT;
  if (json) io.out(JSON.stringify(repairReplyJson(reply, status, left)));
  else printRepairLines(reply, left, io);
  return status;
}

/** What a repair left: the closing scrub's problems and the structures it could not rebuild. */
export function problemsLeft(reply: CtlReply): number {
  return (((reply.scrub ?? {}) as ScrubReply).problemCount ?? 0) + ((reply.unrepairable ?? []) as SickStructureReport[]).length;
}

/** A repair's --json (online and offline alike): {clean, status, repaired, ags, freeSpace, inodeBtree, headers, problems, ...}. */
export function repairReplyJson(reply: CtlReply, status: number, left: number): Record<string, unknown> {
  const ags = (reply.ags ?? []) as RmapRepairResult[];
  const freeSpace = (reply.freeSpace ?? []) as FreeSpaceRepairResult[];
  const headers = (reply.headers ?? []) as HeaderRepairResult[];
  const inodeBtree = (reply.inodeBtree ?? []) as InodeBtreeRepairResult[];
  const files = (reply.files ?? []) as FileRepairResult[];
  const scrub = (reply.scrub ?? {}) as ScrubReply;
  const unrepairable = (reply.unrepairable ?? []) as SickStructureReport[];
  return { clean: left === 0, status, repaired: true, ags: ags.map((a) => ({
    agno: a.agno, records: a.records, blocks: a.blocks, oldBlocks: a.oldBlocks, inodesScanned: a.inodesScanned,
    scanMs: +a.scanMs.toFixed(1), loadMs: +a.loadMs.toFixed(2), commitPauseMs: +a.commitPauseMs.toFixed(2),
    xfileBytes: a.xfileBytes, heapGrowthMib: +a.heapGrowthMib.toFixed(2), sickForks: a.sickForks ?? [],
  })), freeSpace: freeSpace.map((f) => ({
    agno: f.agno, records: f.records, freeBlocks: f.freeBlocks, longest: f.longest, bnoBlocks: f.bnoBlocks,
    cntBlocks: f.cntBlocks, oldBlocks: f.oldBlocks, scanMs: +f.scanMs.toFixed(1), commitPauseMs: +f.commitPauseMs.toFixed(2),
  })), inodeBtree: inodeBtree.map((i) => ({
    agno: i.agno, chunks: i.chunks, inodes: i.inodes, freeInodes: i.freeInodes, btreeBlocks: i.btreeBlocks,
    oldBlocks: i.oldBlocks, scanMs: +i.scanMs.toFixed(1), commitPauseMs: +i.commitPauseMs.toFixed(2),
  })), headers: headers.map((h) => ({
    type: h.type, agno: h.agno, fixed: h.fixed, commitPauseMs: +h.commitPauseMs.toFixed(2),
  })), files: files.map((f) => ({
    type: f.type, ino: f.ino, path: f.path, changes: f.changes, commitPauseMs: +f.commitPauseMs.toFixed(2),
    ...(f.leftFor !== undefined ? { leftFor: f.leftFor } : {}), ...(f.error !== undefined ? { error: f.error } : {}),
  })), problems: problemsJson(scrub.problems ?? []), problemCount: left, unrepairable, error: null, errorCode: null };
}

/** A line per object a repair rebuilt: what it is, how it was rebuilt, what changed, its commit pause. */
export function repairObjectLines(reply: CtlReply): string[] {
  const ags = (reply.ags ?? []) as RmapRepairResult[];
  const freeSpace = (reply.freeSpace ?? []) as FreeSpaceRepairResult[];
  const headers = (reply.headers ?? []) as HeaderRepairResult[];
  const inodeBtree = (reply.inodeBtree ?? []) as InodeBtreeRepairResult[];
  const files = (reply.files ?? []) as FileRepairResult[];
  const lines: string[] = [];
  for (const h of headers) lines.push(headerRepairLine(h));
  for (const f of freeSpace) {
    const from = f.withRmap === true ? 'with the rmap from a scan of every owner' : 'from the rmap';
    lines.push(`AG ${f.agno}: free-space btrees rebuilt ${from}, ${f.records} free extents (${f.freeBlocks} blocks) `
      + `in ${f.bnoBlocks}+${f.cntBlocks} blocks (was ${f.oldBlocks}); commit pause ${f.commitPauseMs.toFixed(1)} ms`);
  }
  for (const i of inodeBtree) {
    lines.push(`AG ${i.agno}: inode btree rebuilt from the rmap and the inodes, ${i.chunks} chunks (${i.inodes} inodes, `
      + `${i.freeInodes} free) in ${i.btreeBlocks} blocks (was ${i.oldBlocks}); commit pause ${i.commitPauseMs.toFixed(1)} ms`);
  }
  for (const a of ags) {
    lines.push(`AG ${a.agno}: rmap rebuilt, ${a.records} records in ${a.blocks} blocks (was ${a.oldBlocks}); `
      + `scanned ${a.inodesScanned} inodes in ${a.scanMs.toFixed(0)} ms, commit pause ${a.commitPauseMs.toFixed(1)} ms`);
    for (const f of a.sickForks ?? []) lines.push(f.what);
  }
  // An object whose rebuild changed nothing is in --json only (a damaged directory's core, checked and sound).
  for (const f of files) if (f.changes.length > 0 || f.error !== undefined) lines.push(fileRepairLine(f));
  return lines;
}

/** A repair's text report: a line per object rebuilt, the problems left, and the verdict (`rmapfs repair: ...`) last. */
export function repairReplyLines(reply: CtlReply, left: number): string[] {
  const scrub = (reply.scrub ?? {}) as ScrubReply;
  const unrepairable = (reply.unrepairable ?? []) as SickStructureReport[];
  const lines = repairObjectLines(reply);
  const rebuilt = lines.length > 0 || ((reply.files ?? []) as FileRepairResult[]).length > 0;
  for (const p of scrub.problems ?? []) lines.push(formatProblem(p));
  if (unrepairable.length > 0) lines.push(`rmapfs repair: ${String(reply.error)}`);
  else if (!rebuilt && left === 0) lines.push('rmapfs repair: nothing damaged; scrub is clean');
  else lines.push(left === 0 ? 'rmapfs repair: done; scrub is clean' : `rmapfs repair: ${left} problems left after the repair`);
  return lines;
}

/** The text report; the verdict goes to stderr when it names damage left unrepaired (as a refusal's line does). */
export function printRepairLines(reply: CtlReply, left: number, io: CommandIo): void {
  const lines = repairReplyLines(reply, left);
  const verdict = lines.pop()!;
  for (const line of lines) io.out(line);
  (((reply.unrepairable ?? []) as unknown[]).length > 0 ? io.err : io.out)(verdict);
}

/** What a small repairer did, one line: the object, how it was rebuilt, what changed, its commit pause. */
export function headerRepairLine(h: HeaderRepairResult): string {
  const how: Record<HeaderRepairResult['type'], string> = {
    'secondary-sb': 'rewritten from the primary', agh: 'recomputed from its btrees', agfl: 'rebuilt from the rmap',
    counters: 'recomputed from the AG btrees',
  };
  const what = h.fixed.length === 0 ? 'nothing changed' : h.fixed.join(', ');
  return `${h.agno >= 0 ? `AG ${h.agno}: ` : ''}${structureLabel(h.type)} ${how[h.type]} (${what}); commit pause ${h.commitPauseMs.toFixed(1)} ms`;
}

/** What a file-level repair did to one object, one line: its path (or inode number), then what changed. */
function fileRepairLine(f: FileRepairResult): string {
  const who = f.path ?? `inode ${f.ino}`;
  if (f.error !== undefined) return `${who}: ${structureLabel(f.type)} not repaired: ${f.error}`;
  return `${who}: ${f.changes.join('; ')}`;
}

export const statusCommand: Command = {
  name: 'status',
  summary: 'what the daemon of a mount knows',
  usage: STATUS_USAGE,
  run(argv, io) {
    return runOnline(argv, io, [], STATUS_USAGE, async (args, json) => {
      const mountpoint = mountpointArgument(args);
      const reply = await askDaemon(mountpoint, { cmd: 'status' });
      const damaged = (reply.damaged ?? []) as SickStructureReport[];
      const status = damaged.length === 0 ? ONLINE_CLEAN : ONLINE_CORRUPT;
      const { ok: _ok, ...fields } = reply;
      if (json) {
        io.out(JSON.stringify({ clean: damaged.length === 0, status, ...fields, error: null, errorCode: null }));
        return status;
      }
      for (const [k, v] of Object.entries(fields)) {
        if (k === 'health') io.out(`${k.padEnd(15)} ${describeHealth(v as HealthSummary)}`);
        else if (k !== 'damaged') io.out(`${k.padEnd(15)} ${String(v)}`);
      }
      if (damaged.length === 0) io.out(`${'damaged'.padEnd(15)} none known`);
      else damaged.flatMap(describeSick).forEach((line, i) => io.out(`${(i === 0 ? 'damaged' : '').padEnd(15)} ${line}`));
      return status;
    });
  },
};
