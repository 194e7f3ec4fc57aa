/**
 * `rmapfs debug ...`: tools for tests of rmapfs itself (crash and fault
 * tests), not for everyday use.
 *
 *   rmapfs debug mark MOUNTPOINT LABEL       a label in the mount's write log
 *   rmapfs debug faults MOUNTPOINT RULES     device faults from now on ('off': none)
 *   rmapfs debug replay-log LOG IMAGE [--flushes N | --mark LABEL]
 *       applies a write log to IMAGE (a copy of the device as it was when the
 *       log began), up to the N-th flush or up to a mark (default: all of it)
 */
import { askDaemon } from './scrub';
import { replayWriteLog, WLOG_MARK } from '../io/write-log';
import { CliError, parseArgs } from './args';
import type { Command } from './args';

const USAGE = `usage: rmapfs debug mark MOUNTPOINT LABEL
       rmapfs debug faults MOUNTPOINT RULES|off
       rmapfs debug replay-log LOG IMAGE [--flushes N | --mark LABEL]

Tools for testing rmapfs itself.
  mark        puts LABEL in the write log of a mount made with -o writelog=FILE
  faults      makes the mount's device fail chosen I/O with EIO from now on:
              rules joined by '+': read|write:FIRST-LAST (blocks),
              read|write|sync@N (the N-th such I/O from now and all after),
              read|write|sync@N*COUNT (COUNT of them); 'off' clears them
  replay-log  rebuilds a device from a copy of it taken when the log began
              (IMAGE, changed in place) and the log: everything, up to the
              N-th flush, or up to a mark`;

export const debugCommand: Command = {
  name: 'debug',
  summary: 'tools for testing rmapfs (write-log marks, fault injection, log replay)',
  usage: USAGE,
  async run(argv, io) {
    const args = parseArgs(argv, [{ name: 'flushes', kind: 'value' }, { name: 'mark', kind: 'value' }]);
    if (args.flag('help')) {
      io.out(USAGE);
      return 0;
    }
    const [verb, a, b] = args.positionals;
    const ask = async (req: { cmd: string; [k: string]: unknown }): Promise<number> => {
      await askDaemon(a!, req);
      return 0;
    };
    if (verb === 'mark' && a !== undefined && b !== undefined && args.positionals.length === 3) {
      return ask({ cmd: 'mark', label: b });
    }
    if (verb === 'faults' && a !== undefined && b !== undefined && args.positionals.length === 3) {
      return ask({ cmd: 'faults', spec: b });
    }
    if (verb === 'replay-log' && a !== undefined && b !== undefined && args.positionals.length === 3) {
      const flushesText = args.string('flushes');
      const mark = args.string('mark');
      const flushes = flushesText === undefined ? null : Number(flushesText);
      if (flushes !== null && (!Number.isInteger(flushes) || flushes < 0)) {
        throw new CliError(2, 'EINVAL', `--flushes needs a whole number, not '${flushesText}'`);
      }
      let found = mark === undefined;
      const point = replayWriteLog(a, b, (e, p) => {
        if (flushes !== null && p.flushes === flushes) return true;
        if (mark !== undefined && e.kind === WLOG_MARK && e.label === mark) {
          found = true;
          return true;
        }
        return false;
      });
      if (!found) throw new CliError(1, 'ENOENT', `no mark '${mark}' in ${a}`);
      if (flushes !== null && point.flushes < flushes) throw new CliError(1, 'ENOENT', `${a} has only ${point.flushes} flushes`);
      io.out(`replayed ${point.entries} entries (${point.flushes} flushes, ${point.marks.length} marks) onto ${b}`);
      return 0;
    }
    throw new CliError(2, 'EINVAL', `usage: ${USAGE.split('\n')[0]!.replace('usage: ', '')} (see rmapfs debug --help)`);
  },
};
