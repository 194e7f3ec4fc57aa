/**
 * `rmapfs mkfs`: makes a new filesystem on a device or image file and prints
 * what it made. Refuses to overwrite a filesystem (any known signature)
 * without --force; an image file it created is removed again if it fails.
 */
import * as fs from 'fs';
import { mkfs } from '../fs/mkfs';
import type { MkfsOptions } from '../fs/mkfs';
import { BLOCK_SIZE } from '../format/superblock';
import { formatBytes, parseArgs, usageError, withStatus } from './args';
import type { Command } from './args';

const USAGE = `usage: rmapfs mkfs [--size SIZE] [--ag-count N | --ag-size SIZE] [--log-blocks N]
                   [--label LABEL] [--force] DEVICE|IMAGE

Makes a new rmapfs. An IMAGE file that does not exist is created with
--size bytes (an existing empty one is sized); a device or non-empty image
is used whole. Sizes are bytes or take K, M, G, T (binary): 512K, 64M, 1G.

options:
  -s, --size SIZE      size of a new image file
  --ag-count N         number of allocation groups
  --ag-size SIZE       size of each allocation group (not with --ag-count)
  --log-blocks N       journal size in ${BLOCK_SIZE}-byte blocks (default: 1/64 of the device, 256..32768)
  -L, --label LABEL    filesystem label (up to 32 bytes)
  -f, --force          overwrite an existing filesystem or other signature
  -h, --help           this text

exit status: 0 made, 1 refused or failed (existing filesystem, too small,
bad geometry), 2 usage error.`;

export const mkfsCommand: Command = {
  name: 'mkfs',
  summary: 'make a new filesystem on a device or image file',
  usage: USAGE,
  run(argv, io) {
    const args = parseArgs(argv, [
      { name: 'size', kind: 'value', short: 's' },
      { name: 'ag-count', kind: 'value' },
      { name: 'ag-size', kind: 'value' },
      { name: 'log-blocks', kind: 'value' },
      { name: 'label', kind: 'value', short: 'L' },
      { name: 'force', kind: 'flag', short: 'f' },
    ]);
    if (args.flag('help')) {
      io.out(USAGE);
      return 0;
    }
    const [path] = args.expectPositionals(['DEVICE or IMAGE']) as [string];
    if (args.has('ag-count') && args.has('ag-size')) throw usageError('give --ag-count or --ag-size, not both');
    const options: MkfsOptions = { force: args.flag('force') };
    const size = args.size('size');
    const agCount = args.count('ag-count');
    const agSize = args.size('ag-size');
    const logBlocks = args.count('log-blocks');
    const label = args.string('label');
    if (size !== undefined) options.size = size;
    if (agCount !== undefined) options.agCount = agCount;
    if (agSize !== undefined) options.agSize = agSize;
    if (logBlocks !== undefined) options.logBlocks = logBlocks;
    if (label !== undefined) options.label = label;

    const existed = fs.existsSync(path);
    let made;
    try {
      made = mkfs(path, options);
    } catch (e) {
      if (!existed) fs.rmSync(path, { force: true });
      throw withStatus(e, 1);
    }
    const { geometry: g, superblock: sb } = made;
    const lastAg = g.agLength(g.agCount - 1);
    io.out(`rmapfs mkfs: ${path}: ${formatBytes(g.totalBlocks * BLOCK_SIZE)}, ${g.totalBlocks} blocks of ${BLOCK_SIZE} bytes`);
    io.out(`  ${g.agCount} AG${g.agCount === 1 ? '' : 's'} x ${g.agBlocks} blocks${lastAg !== g.agBlocks ? ` (the last ${lastAg})` : ''}, `
      + `log ${g.logBlocks} blocks at block ${g.logStart}`);
    io.out(`  uuid ${sb.uuid}${sb.label !== '' ? `, label '${sb.label}'` : ''}`);
    return 0;
  },
};
