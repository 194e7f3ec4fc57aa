/**
 * The `rmapfs` command line. Each subcommand is one module under src/cli;
 * errors reach the user as one line ("rmapfs: ...") and a nonzero exit
 * status, never a stack trace (set DEBUG=rmapfs:* for the details).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';

const log = createDebug('rmapfs:cli');

const VERSION = '0.1.0';

const USAGE = `usage: rmapfs <command> [options]

commands:
  help                 this text
  version              the version of rmapfs and of its parts

rmapfs is being built layer by layer; mkfs, mount, check, scrub and repair
arrive with the filesystem core and the FUSE daemon.`;

export interface CommandIo {
  out: (line: string) => void;
  err: (line: string) => void;
}

const stdio: CommandIo = {
  out: (line) => process.stdout.write(`${line}\n`),
  err: (line) => process.stderr.write(`${line}\n`),
};

async function version(io: CommandIo): Promise<number> {
  // Loading the addon here proves the build is whole.
  const { native } = await import('../native');
  io.out(`rmapfs ${VERSION} (node ${process.version}, crc32c ${native.crc32cImplementation()})`);
  return 0;
}

export async function run(argv: string[], io: CommandIo = stdio): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        io.out(USAGE);
        return command === undefined ? 2 : 0;
      case 'version':
      case '--version':
      case '-V':
        if (rest.length > 0) throw new RmapfsError('EINVAL', `version takes no arguments`);
        return await version(io);
      default:
        throw new RmapfsError('EINVAL', `unknown command '${command}' (see 'rmapfs help')`);
    }
  } catch (e) {
    if (e instanceof RmapfsError) {
      io.err(e.toLine());
      log('%O', e);
      return e.code === 'EINVAL' ? 2 : 1;
    }
    io.err(`rmapfs: internal error: ${e instanceof Error ? e.message : String(e)}`);
    log('%O', e);
    return 1;
  }
}
