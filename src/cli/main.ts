/**
 * The `rmapfs` command line. Each subcommand is one module under src/cli;
 * errors reach the user as one line ("rmapfs: ...") and a nonzero exit
 * status, never a stack trace (set DEBUG=rmapfs:* for the details).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { CliError } from './args';
import type { Command, CommandIo } from './args';
import { mkfsCommand } from './mkfs';
import { checkCommand } from './check';
import { infoCommand } from './info';
import { dbCommand } from './db';
import { mountCommand, umountCommand } from './mount';
import { scrubCommand, statusCommand } from './scrub';
import { eventsCommand } from './events';
import { fsckCommand, repairCommand } from './fsck';
import { debugCommand } from './debug';

export type { CommandIo } from './args';

const log = createDebug('rmapfs:cli');

const VERSION = '0.1.0';

/** The subcommands, in the order `rmapfs help` lists them. */
const COMMANDS: readonly Command[] = [mkfsCommand, mountCommand, umountCommand, scrubCommand, repairCommand, statusCommand, eventsCommand, checkCommand, fsckCommand, infoCommand, dbCommand, debugCommand];

function usage(): string {
  const rows: [string, string][] = [
    ...COMMANDS.map((c): [string, string] => [c.name, c.summary]),
    ['help [COMMAND]', 'this text, or a command\'s'],
    ['version', 'the version of rmapfs and of its parts'],
  ];
  const width = Math.max(...rows.map(([n]) => n.length)) + 2;
  return `usage: rmapfs <command> [options]

commands:
${rows.map(([n, s]) => `  ${n.padEnd(width)} ${s}`).join('\n')}

'rmapfs COMMAND --help' describes a command.`;
}

const stdio: CommandIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
  status: process.stderr.isTTY ? (text) => process.stderr.write(`\r${text}\x1b[K`) : undefined,
};

let pipeGuard = false;

/** `rmapfs db img sb | head`: a reader that goes away ends the output quietly, not with a stack trace. */
function guardStdout(): void {
  if (pipeGuard) return;
  pipeGuard = true;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    process.stderr.write(`rmapfs: standard output: ${e.message}\n`);
    process.exit(1);
  });
}

async function version(io: CommandIo): Promise<number> {
  // Loading the addon here proves the build is whole.
  const { native } = await import('../native');
  io.out(`rmapfs ${VERSION} (node ${process.version}, crc32c ${native.crc32cImplementation()})`);
  return 0;
}

export async function run(argv: string[], io: CommandIo = stdio): Promise<number> {
  if (io === stdio) guardStdout();
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h': {
        const topic = command === 'help' ? rest[0] : undefined;
        if (topic !== undefined) {
          const c = COMMANDS.find((x) => x.name === topic);
          if (c === undefined) throw new RmapfsError('EINVAL', `no such command '${topic}' (see 'rmapfs help')`);
          io.out(c.usage);
          return 0;
        }
        io.out(usage());
        return command === undefined ? 2 : 0;
      }
      case 'version':
      case '--version':
      case '-V':
        if (rest.length > 0) throw new RmapfsError('EINVAL', `version takes no arguments`);
        return await version(io);
      default: {
        const c = COMMANDS.find((x) => x.name === command);
        if (c === undefined) throw new RmapfsError('EINVAL', `unknown command '${command}' (see 'rmapfs help')`);
        return await c.run(rest, io);
      }
    }
  } catch (e) {
    if (e instanceof RmapfsError) {
      io.err(e.toLine());
      log('%O', e);
      if (e instanceof CliError) return e.status;
      return e.code === 'EINVAL' ? 2 : 1;
    }
    io.err(`rmapfs: internal error: ${e instanceof Error ? e.message : String(e)}`);
    log('%O', e);
    return 1;
  }
}
