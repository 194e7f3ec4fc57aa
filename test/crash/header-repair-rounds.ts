/**
 * Crash consistency of the small repairers (src/repair/ag-header-repair.ts):
 * the AG header, the free list, the summary counters and the secondary
 * superblocks (a test file each, *-repair-crash.test.ts, so each stays well
 * inside the tap timeout). For each, round after round under one write log: the
 * structure is damaged on the live filesystem (a wrong count, a bad free
 * list entry, a stale or unreadable superblock copy: one
 * transaction, announced to the log first with "damaged AG:STRUCTS"), then
 * `onlineRepair` -- what `rmapfs repair` runs: the structure table's scrub
 * finds it, its repairer rebuilds it, the log is forced, the closing scrub
 * -- while writers run between the slices of it (a loop on the event loop,
 * as FUSE requests are served between slices; at most WRITES_DURING_REPAIR
 * operations, so the point count does not hang on the machine's speed);
 * "repaired AG" goes to the log once it returns. Every flush point and torn points inside each flush epoch
 * are replayed (replay-check.ts): each must check clean apart from the damage
 * until its repaired mark, with every file marked durable intact.
 *
 * These repairs are one small transaction each (the free list's has a paced
 * collection first): a round gives a handful of points around the commit
 * (the damage forced to the log first, so points see it on disk), and about
 * 30 with the writers' fsyncs around it; each repairer runs ROUNDS rounds
 * (half of them per AG) to pass 500 points.
 */
import type { Test } from 'tap';
import * as fs from 'fs';
import { setImmediate as yieldToEventLoop } from 'timers/promises';
import { Rmapfs } from '../../src/fs/rmapfs';
import { WriteLogRecorder } from '../../src/io/write-log';
import { onlineRepair } from '../../src/fsck/online';
import type { StructureName } from '../../src/format/structures';
import type { HeaderRepairResult } from '../../src/repair/ag-header-repair';
import type { LiveScrubResult } from '../../src/scrub/live-scrub';
import { formatProblem } from '../../src/scrub/common';
import {
  OFF_AGFL, OFF_FREE_BLOCKS, OFF_FREE_EXTENTS, OFF_FREE_INODES, OFF_INODE_COUNT, OFF_LONGEST,
  SLOT_BLOCKS, SLOT_RECORDS, slotOffset,
} from '../../src/format/ag-header';
import { SUPERBLOCK_FIELDS, superblockBufOps } from '../../src/format/superblock';
import { Rng } from '../lib/rng';
import { crashImage, CrashWriters } from './repair-writers';
import { expectEveryCrashPointClean } from './replay-points';

/** One way to damage a structure: what it does (in the caller's transaction) and what check may blame it on until repaired. */
interface Damage {
  what: string;
  /** Structures (table names or checkers' labels) whose problems are this damage. */
  shows: string[];
  apply: (fsx: Rmapfs, agno: number) => void;
}

/** Adds `delta` to the AG header's u32 at `offset`. */
function bumpHeader(fsx: Rmapfs, agno: number, offset: number, delta: number): void {
  const hdr = fsx.fs.alloc.ag(agno).header();
  hdr.data.writeUInt32BE(hdr.data.readUInt32BE(offset) + delta, offset);
  fsx.fs.cache.markDirty(hdr);
}

/** Changes AG agno's superblock copy: `patch` on its bytes, the crc made right (ops) or left as it was (null). */
function patchSecondary(fsx: Rmapfs, agno: number, patch: (b: Buffer) => void, keepCrcRight: boolean): void {
  const bno = fsx.fs.geo.agStart(agno);
  const buf = fsx.fs.cache.read(bno, null);
  patch(buf.data);
  buf.ops = keepCrcRight ? superblockBufOps(fsx.fs.geo.uuid) : null;
  fsx.fs.cache.markDirty(buf);
}

/** The label: a field every copy shares with the primary, which nothing checks the value of. */
const OFF_SB_LABEL = SUPERBLOCK_FIELDS.find((f) => f.name === 'label')!.offset;

/** The structures this file tests, each with the damage its rounds cycle through. */
export type HeaderStructureName = 'agh' | 'agfl' | 'counters' | 'secondary-sb';

const DAMAGE: Record<HeaderStructureName, Damage[]> = {
  agh: [
    { what: 'free blocks +7', shows: ['agh'], apply: (fsx, a) => bumpHeader(fsx, a, OFF_FREE_BLOCKS, 7) },
    { what: 'longest free extent -1', shows: ['agh'], apply: (fsx, a) => bumpHeader(fsx, a, OFF_LONGEST, -1) },
    {
      what: 'bnobt blocks +2, cntbt records +3', shows: ['agh'], apply: (fsx, a) => {
        bumpHeader(fsx, a, slotOffset('bno') + SLOT_BLOCKS, 2);
        bumpHeader(fsx, a, slotOffset('cnt') + SLOT_RECORDS, 3);
      },
    },
    {
      what: 'inobt blocks +1, records -1', shows: ['agh'], apply: (fsx, a) => {
        bumpHeader(fsx, a, slotOffset('ino') + SLOT_BLOCKS, 1);
        bumpHeader(fsx, a, slotOffset('ino') + SLOT_RECORDS, -1);
      },
    },
  ],
  agfl: [
    {
      what: 'entry 0 = a free block', shows: ['agfl', 'coverage'], apply: (fsx, a) => {
        const ag = fsx.fs.alloc.ag(a);
        const free = ag.findFree({ minLen: 1, maxLen: 1, goal: null })!.startblock;
        const hdr = ag.header();
        hdr.data.writeUInt32BE(free, OFF_AGFL);
        fsx.fs.cache.markDirty(hdr);
      },
    },
    {
      what: 'entry 0 outside the AG', shows: ['agfl'], apply: (fsx, a) => {
        const hdr = fsx.fs.alloc.ag(a).header();
        hdr.data.writeUInt32BE(fsx.fs.alloc.ag(a).length + 5, OFF_AGFL);
        fsx.fs.cache.markDirty(hdr);
      },
    },
    {
      what: 'entry 1 = entry 0 (listed twice, one lost)', shows: ['agfl'], apply: (fsx, a) => {
        const hdr = fsx.fs.alloc.ag(a).header();
        hdr.data.writeUInt32BE(hdr.data.readUInt32BE(OFF_AGFL), OFF_AGFL + 4);
        fsx.fs.cache.markDirty(hdr);
      },
    },
  ],
  counters: [
    { what: 'free extents +9', shows: ['counters'], apply: (fsx, a) => bumpHeader(fsx, a, OFF_FREE_EXTENTS, 9) },
    { what: 'free inodes +9', shows: ['counters'], apply: (fsx, a) => bumpHeader(fsx, a, OFF_FREE_INODES, 9) },
    { what: 'inodes +64', shows: ['counters'], apply: (fsx, a) => bumpHeader(fsx, a, OFF_INODE_COUNT, 64) },
  ],
  'secondary-sb': [
    { what: 'a stale label', shows: ['secondary-sb'], apply: (fsx, a) => patchSecondary(fsx, a, (b) => b.write('stale', OFF_SB_LABEL), true) },
    { what: 'a bad crc', shows: ['secondary-sb'], apply: (fsx, a) => patchSecondary(fsx, a, (b) => b.write('XX', OFF_SB_LABEL), false) },
  ],
};

const ROUNDS = 20;
/** Writer operations at most between the slices of one repair (its scrubs are sliced finely: 50 us). */
const WRITES_DURING_REPAIR = 8;

/** ROUNDS of damage and online repair of `name` under a write log, then every crash point replayed. */
export async function headerRepairCrashRounds(t: Test, name: HeaderStructureName, seed: number): Promise<void> {
  t.comment(`seed ${seed} (replay with RMAPFS_SEED=${seed})`);
  const img = crashImage(t, `hdr-${name}`);
  const recorder = new WriteLogRecorder(img.logPath, fs.statSync(img.image).size);
  const fsx = Rmapfs.open(img.image, { interposers: [recorder] });
  const writers = new CrashWriters(fsx, recorder, new Rng(seed), img.ag1Dir);
  const scope = name === 'counters' ? 'filesystem' : 'ag';
  const fixes: string[] = [];
  let slicesWithWriters = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      // AG 0 holds the primary superblock: the copies are AG 1's.
      const agno = name === 'secondary-sb' ? 1 : round % 2;
      const damage = DAMAGE[name][round % DAMAGE[name].length]!;
      writers.work(6);
      recorder.mark(`damaged ${agno}:${damage.shows.join(',')}`);
      fsx.fs.run(() => damage.apply(fsx, agno));
      // Known damaged from here, as a verifier or a scrub would have it: the allocator steps around an AG
      // whose space metadata is sick (a free block on the free list must not be handed out twice).
      if (scope === 'filesystem') fsx.fs.alloc.fsHealth.markSick('counters', 'scrub', damage.what, 'testing');
      else fsx.fs.alloc.ag(agno).health.markSick(name as Exclude<typeof name, 'counters'>, 'scrub', damage.what, 'testing');
      writers.work(3);
      fsx.fsync();
      // Writers between the slices of the repair (its scrubs' and its collection's), as FUSE requests are.
      let repairing = true;
      const writing = (async () => {
        for (let n = 0; repairing; n++) {
          if (n < WRITES_DURING_REPAIR) writers.work(1);
          slicesWithWriters++;
          await yieldToEventLoop();
        }
      })();
      let reply;
      try {
        reply = await onlineRepair(fsx, [name as StructureName], scope === 'filesystem' ? null : agno,
          { forceRebuild: false, measureHeap: false, cancelled: () => false },
          { foregroundWaiting: () => true, abortReason: () => null, send: () => undefined });
      } finally {
        repairing = false;
        await writing;
      }
      const headers = (reply.headers ?? []) as HeaderRepairResult[];
      const fixed = headers.flatMap((h) => h.fixed);
      const left = (reply.scrub as LiveScrubResult | undefined)?.problems ?? [];
      if (!reply.ok || fixed.length === 0 || left.length > 0) {
        t.fail(`round ${round}: AG ${agno} ${damage.what}: not repaired: ${reply.error ?? JSON.stringify(reply.headers)}`
          + `; closing scrub: ${left.map(formatProblem).join(' | ')}`);
        break;
      }
      // Its commit is in the log (onlineRepair forced it before its closing scrub): from here it must check clean.
      recorder.mark(`repaired ${agno}`);
      fixes.push(`AG ${agno} ${damage.what}: ${fixed.join(', ')}`);
      writers.work(6);
    }
    fsx.fsync();
  } finally {
    fsx.close();
    recorder.close();
  }
  t.equal(fixes.length, ROUNDS, `${ROUNDS} repairs: ${[...new Set(fixes.map((f) => f.replace(/^AG \d+ /, '')))].join('; ')}`);
  t.ok(slicesWithWriters >= ROUNDS, `the repairs yielded to the writers ${slicesWithWriters} times`);
  t.ok(writers.durable > 0, `${writers.durable} files marked durable (${writers.refused} frees refused in an AG known damaged)`);
  expectEveryCrashPointClean(t, img.base, img.logPath, seed, 500);
}
