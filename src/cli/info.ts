/**
 * `rmapfs info [--json] DEVICE`: what a filesystem is and how full, from its
 * superblock and AG headers (read-only; a dirty journal is replayed in
 * memory). An AG whose header cannot be read is shown as such; the command
 * then exits 1.
 */
import { RmapfsError } from '../errors';
import { Filesystem } from '../fs/filesystem';
import { AG_BTREES, OFF_FREE_EXTENTS, SLOT_BLOCKS, SLOT_HEIGHT, SLOT_RECORDS, SLOT_ROOT, slotOffset } from '../format/ag-header';
import type { AgBtreeName } from '../format/ag-header';
import { BLOCK_SIZE, STATE_CLEAN, STATE_DIRTY } from '../format/superblock';
import { formatBytes, parseArgs, withStatus } from './args';
import type { Command } from './args';

const USAGE = `usage: rmapfs info [--json] DEVICE

Prints the geometry (size, AGs, log, label, UUID, state, mount count) and,
per AG, the free space, free list, inodes and the shape of each btree
(from the AG headers), with totals. Read-only.

options:
  --json       one JSON object instead of the table
  -h, --help   this text

exit status: 0, 1 when the filesystem (or an AG header) cannot be read,
2 usage error.`;

interface TreeInfo {
  root: number;
  height: number;
  blocks: number;
  records: number;
}

interface AgInfo {
  agno: number;
  start: number;
  length: number;
  freeBlocks: number;
  freeExtents: number;
  longestFree: number;
  agflCount: number;
  inodes: number;
  freeInodes: number;
  btrees: Record<AgBtreeName, TreeInfo>;
}

const TREE_LABEL: Record<AgBtreeName, string> = { bno: 'bnobt', cnt: 'cntbt', rmap: 'rmapbt', ino: 'inobt' };

function stateName(state: number): string {
  return state === STATE_CLEAN ? 'clean' : state === STATE_DIRTY ? 'dirty' : `unknown (${state})`;
}

function time(sec: number): string {
  const d = new Date(sec * 1000);
  // A damaged timestamp may lie outside what a Date can show: print the number.
  return Number.isNaN(d.getTime()) ? `${sec} (not a valid time)` : d.toISOString().replace(/\.000Z$/, 'Z');
}

function pad(cells: (string | number)[], widths: number[]): string {
  return cells.map((c, i) => String(c).padStart(widths[i] ?? 0)).join('  ').trimEnd();
}

export const infoCommand: Command = {
  name: 'info',
  summary: 'show the geometry and usage of a filesystem',
  usage: USAGE,
  run(argv, io) {
    const args = parseArgs(argv, [{ name: 'json', kind: 'flag' }]);
    if (args.flag('help')) {
      io.out(USAGE);
      return 0;
    }
    const [path] = args.expectPositionals(['DEVICE']) as [string];
    let fs: Filesystem;
    try {
      fs = Filesystem.open(path, { readOnly: true });
    } catch (e) {
      throw withStatus(e, 1);
    }
    try {
      const sb = fs.superblock();
      const g = fs.geo;
      const ags: AgInfo[] = [];
      const bad: { agno: number; error: string }[] = [];
      for (const ag of fs.alloc.ags) {
        try {
          const h = ag.header().data;
          const tree = (t: AgBtreeName): TreeInfo => ({
            root: h.readUInt32BE(slotOffset(t) + SLOT_ROOT),
            height: h.readUInt32BE(slotOffset(t) + SLOT_HEIGHT),
            blocks: h.readUInt32BE(slotOffset(t) + SLOT_BLOCKS),
            records: h.readUInt32BE(slotOffset(t) + SLOT_RECORDS),
          });
          const btrees = Object.fromEntries(AG_BTREES.map((t) => [t, tree(t)])) as Record<AgBtreeName, TreeInfo>;
          ags.push({
            agno: ag.agno, start: ag.start, length: ag.length, freeBlocks: ag.freeBlocks,
            freeExtents: h.readUInt32BE(OFF_FREE_EXTENTS), longestFree: ag.longestFree, agflCount: ag.agflCount,
            inodes: ag.inodeCount, freeInodes: ag.freeInodes, btrees,
          });
        } catch (e) {
          if (!(e instanceof RmapfsError)) throw e;
          bad.push({ agno: ag.agno, error: e.message });
        }
      }
      const sum = (f: (a: AgInfo) => number): number => ags.reduce((n, a) => n + f(a), 0);
      const totals = {
        freeBlocks: sum((a) => a.freeBlocks), freeExtents: sum((a) => a.freeExtents), agflCount: sum((a) => a.agflCount),
        inodes: sum((a) => a.inodes), freeInodes: sum((a) => a.freeInodes),
        btreeBlocks: sum((a) => AG_BTREES.reduce((n, t) => n + a.btrees[t].blocks, 0)),
        rmapRecords: sum((a) => a.btrees.rmap.records),
      };
      if (args.flag('json')) {
        io.out(JSON.stringify({
          path, bytes: g.totalBlocks * BLOCK_SIZE, blockSize: sb.blockSize, totalBlocks: g.totalBlocks,
          agCount: g.agCount, agBlocks: g.agBlocks, logStart: g.logStart, logBlocks: g.logBlocks,
          label: sb.label, uuid: sb.uuid, version: sb.version, state: stateName(sb.state), mountCount: sb.mountCount,
          createdSec: sb.createdSec, writtenSec: sb.writtenSec, rootIno: sb.rootIno,
          replayedTransactions: fs.replayed.transactions, ags, unreadableAgs: bad, totals,
        }));
      } else {
        const lastAg = g.agLength(g.agCount - 1);
        io.out(`${path}: rmapfs version ${sb.version}, ${formatBytes(g.totalBlocks * BLOCK_SIZE)} (${g.totalBlocks} blocks of ${sb.blockSize} bytes)`);
        io.out(`  uuid         ${sb.uuid}`);
        io.out(`  label        ${sb.label === '' ? '(none)' : `'${sb.label}'`}`);
        io.out(`  AGs          ${g.agCount} x ${g.agBlocks} blocks (${formatBytes(g.agBlocks * BLOCK_SIZE)})${lastAg !== g.agBlocks ? `, the last ${lastAg}` : ''}`);
        io.out(`  log          blocks ${g.logStart}..${g.logStart + g.logBlocks - 1} (${g.logBlocks} blocks)`
          + `${fs.replayed.transactions > 0 ? `, ${fs.replayed.transactions} committed transactions not yet checkpointed` : ''}`);
        io.out(`  state        ${stateName(sb.state)}, mounted ${sb.mountCount} time${sb.mountCount === 1 ? '' : 's'}`);
        io.out(`  created      ${time(sb.createdSec)}, last written ${time(sb.writtenSec)}`);
        io.out(`  free         ${totals.freeBlocks} blocks (${formatBytes(totals.freeBlocks * BLOCK_SIZE)}, `
          + `${g.totalBlocks > 0 ? ((100 * totals.freeBlocks) / g.totalBlocks).toFixed(1) : '0'}%) in ${totals.freeExtents} extents`);
        io.out(`  inodes       ${totals.inodes} (${totals.freeInodes} free)`);
        io.out('');
        const head = ['AG', 'start', 'blocks', 'free', 'extents', 'longest', 'agfl', 'inodes', 'ifree',
          ...AG_BTREES.map((t) => `${TREE_LABEL[t]} h/blk/rec`)];
        const rows: (string | number)[][] = ags.map((a) => [a.agno, a.start, a.length, a.freeBlocks, a.freeExtents, a.longestFree,
          a.agflCount, a.inodes, a.freeInodes,
          ...AG_BTREES.map((t) => `${a.btrees[t].height}/${a.btrees[t].blocks}/${a.btrees[t].records}`)]);
        rows.push(['total', '', g.totalBlocks, totals.freeBlocks, totals.freeExtents, '', totals.agflCount, totals.inodes,
          totals.freeInodes, ...AG_BTREES.map((t) => {
            const s = (f: (x: TreeInfo) => number): number => sum((a) => f(a.btrees[t]));
            return `-/${s((x) => x.blocks)}/${s((x) => x.records)}`;
          })]);
        const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)));
        io.out(pad(head, widths));
        for (const r of rows) io.out(pad(r, widths));
        for (const b of bad) io.out(`AG ${b.agno}: header unreadable: ${b.error}`);
      }
      return bad.length > 0 ? 1 : 0;
    } finally {
      fs.close();
    }
  },
};
