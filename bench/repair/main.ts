/**
 * bench/repair: online rmap repair of a live mount, at 10k, 100k and 1M rmap
 * records.
 *
 * For each size:
 *  1. Build the filesystem offline, in-process through the real allocator
 *     (bench/lib/fragmented-fs buildMixedFs): many small files with real data
 *     (about 30% of the records) and fragmented large files of 1,000
 *     one-block extents (the rest), plus a 64 MiB file /fg for the
 *     foreground workload. Close it (a checkpoint: everything on disk).
 *  2. Mount it with the real daemon (`rmapfs mount`; NODE_OPTIONS carries
 *     --inspect-port, and SIGUSR1 opens the daemon's inspector, which the
 *     bench uses to read the daemon's JS heap -- nothing in the daemon
 *     changes).
 *  3. `rmapfs scrub --json MNT`, timed: the repair command ends with the same
 *     scrub, so this says how much of total_s is the scrub (scrub_s).
 *  4. The repair alone: `rmapfs repair --json MNT` (every AG), nothing else
 *     running. total_s is the command's wall time (its closing scrub
 *     included); records (summed), commit pause (max over AGs), xfile bytes
 *     per record (max over AGs), the scan time (one scan collects every AG)
 *     and the heap growth come from its JSON: the daemon runs with
 *     --expose-gc and measures heapUsed after a forced GC before the scan and
 *     when every AG is collected (the peak). The first repair also fills the
 *     daemon's buffer cache (up to 65,536 blocks, ~330 bytes of JS heap each:
 *     ~20 MiB once the filesystem is big enough), so its figure is
 *     heap_growth_mib, and the second repair's (step 5, cache already full)
 *     is heap_growth_warm_mib: what the repair itself holds.
 *  5. The repair again under the foreground workload: fio (4 KiB random
 *     overwrites of /fg, psync, QD 1, 5,000 writes/s: --fg-iops) runs; after
 *     1 s the repair starts; fio stops when it ends. The foreground latencies
 *     are those of the writes that completed while the command ran;
 *     total_s_with_fg is its wall time (the scan steps aside for waiting FUSE
 *     requests, so a busy foreground stretches it: with --fg-iops 0, fio as
 *     fast as it goes, the 1M repair took 11x as long as alone).
 *     commit_pause_ms is the larger of the two repairs' pauses.
 *  6. Baseline: the same fio alone for as long as the repair under it took
 *     (3 s at least, 10 s at most: its percentiles are steady well before).
 *     With --heap-pass, a cross-check of the daemon's heap figure: the repair
 *     once more, no foreground, while the bench forces a full GC in the
 *     daemon about 20 times (through its inspector) and reads its heap:
 *     heap_growth_gc_sampled_mib = the largest live heap seen (or the one
 *     after the repair) minus the live heap before. The first repair only
 *     reads the heap, never collects: heap_peak_nogc_mib is its peak, garbage
 *     included, over the live heap before.
 *  7. The other AG structures, one AG (AG 0), right after the rmap's runs
 *     (steps 2 and 3): `rmapfs repair --force-rebuild --type bnobt --ag 0`
 *     (both free-space btrees, rebuilt from the rmap) and `--type inobt --ag
 *     0` (the inode btree, from the rmap's chunk records and the inode
 *     cores), each alone and then again under the same fio, before fio
 *     stops. Per run: total_s (the command's wall time: its closing scrub of
 *     AG 0 and the command's own start included), rebuild_s (the daemon's
 *     scanMs + commitPauseMs: the rebuild itself, what the <= 1 s bar
 *     measures), commit_pause_ms, and heap growth: these repairers do not
 *     measure their heap, so the bench reads the daemon's live heap through
 *     its inspector after a forced full GC before and after the command
 *     (heap_growth_mib: what the repair left behind) and its heap without GC
 *     every 20 ms meanwhile (heap_peak_nogc_mib, garbage included).
 *  8. Unmount, delete the image.
 * One human line per run, PASS/FAIL per bar, then one JSON line.
 *
 * Usage (as root; needs fio): node --expose-gc dist/bench/repair/main.js
 *   [--quick]                 10k and 100k only
 *   [--sizes 10k,100k,1M]     rmap record counts to build (k, M suffixes)
 *   [--small-share 0.3]       share of the records that small files make
 *   [--min-baseline-s 3]      shortest baseline
 *   [--max-baseline-s 10]     longest baseline
 *   [--fg-iops 5000]          the foreground's rate (0: as fast as it goes)
 *   [--heap-pass]             one more repair per size, GC-sampled (step 6)
 *   [--profile]               CPU-profile the daemon during both repairs (through its
 *                             inspector; costs a few %): top functions on stderr, the
 *                             .cpuprofile file in os.tmpdir()
 * Images in $RMAPFS_BENCH_DIR (default os.tmpdir()), removed at the end;
 * the mount is always unmounted, also on failure or a signal.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { buildMixedFs, estimateRecords, mixedPlanFor } from '../lib/fragmented-fs';
import type { MixedFsPlan } from '../lib/fragmented-fs';
import { InspectorSession, startProfile, stopProfile, topFunctions } from '../lib/inspector';
import { failure, forceUmount, freePort, isMounted, onPath, rmapfs, sleep } from '../lib/procs';
import { ForegroundWriter } from './foreground';
import type { LatencyFigures } from './foreground';

const MIB = 1024 * 1024;
const FG_BYTES = 64 * MIB;
const FRAGMENTED_EXTENTS = 1000;
const WARM_UP_MS = 1000;
/** Forced-GC heap samples of the heap pass: about 20 over the repair, 100..500 ms apart. */
const HEAP_SAMPLES = 20;

interface Options {
  sizes: number[];
  smallShare: number;
  minBaselineS: number;
  maxBaselineS: number;
  heapPass: boolean;
  profile: boolean;
  /** Foreground writes per second (0: as fast as fio goes). */
  fgIops: number;
}

function parseCount(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (m === null) throw new Error(`not a record count: '${text}' (use e.g. 10k, 100k, 1M)`);
  const mult = m[2] === '' ? 1 : m[2]!.toLowerCase() === 'k' ? 1e3 : 1e6;
  return Math.round(Number(m[1]) * mult);
}

function label(n: number): string {
  if (n >= 1e6 && n % 1e5 === 0) return `${n / 1e6}M`;
  if (n >= 1e3 && n % 100 === 0) return `${n / 1e3}k`;
  return String(n);
}

function parseOptions(argv: string[]): Options {
  const value = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    if (i < 0) return undefined;
    const v = argv[i + 1];
    if (v === undefined) throw new Error(`${name} needs a value`);
    return v;
  };
  const withValue = ['--sizes', '--small-share', '--min-baseline-s', '--max-baseline-s', '--fg-iops'];
  for (let i = 0; i < argv.length; i++) {
    if (!['--quick', '--heap-pass', '--profile', ...withValue].includes(argv[i]!)) throw new Error(`unknown argument '${argv[i]}'`);
    if (withValue.includes(argv[i]!)) i++;
  }
  const sizesText = value('--sizes') ?? (argv.includes('--quick') ? '10k,100k' : '10k,100k,1M');
  const smallShare = Number(value('--small-share') ?? 0.3);
  if (!(smallShare >= 0 && smallShare <= 1)) throw new Error('--small-share needs a number from 0 to 1');
  const minBaselineS = Number(value('--min-baseline-s') ?? 3);
  const maxBaselineS = Number(value('--max-baseline-s') ?? 10);
  const fgIops = Number(value('--fg-iops') ?? 5000);
  if (!(Number.isInteger(fgIops) && fgIops >= 0)) throw new Error('--fg-iops needs a whole number >= 0');
  if (!(minBaselineS > 0 && maxBaselineS >= minBaselineS)) throw new Error('--min/max-baseline-s need positive numbers, min <= max');
  return {
    sizes: sizesText.split(',').map(parseCount), smallShare, minBaselineS, maxBaselineS, heapPass: argv.includes('--heap-pass'),
    profile: argv.includes('--profile'), fgIops,
  };
}

/** A mix that makes about `records` rmap records, with the foreground's file. */
function planFor(records: number, smallShare: number): MixedFsPlan {
  return { ...mixedPlanFor(records, smallShare, FRAGMENTED_EXTENTS), foregroundBytes: FG_BYTES };
}

// ---------------------------------------------------------------------------
// The repair command's JSON (src/cli/scrub.ts); read defensively, its shape may grow.

interface AgFigures {
  agno: number;
  records: number;
  scanMs: number;
  loadMs: number;
  commitPauseMs: number;
  xfileBytes: number;
  heapGrowthMib: number;
}

/** One AG's rebuild of a structure other than the rmap (freeSpace[] and inodeBtree[] of the JSON). */
interface AgStructureFigures {
  agno: number;
  /** Free extents, or inode chunks. */
  records: number;
  scanMs: number;
  commitPauseMs: number;
}

interface RepairFigures {
  clean: boolean;
  problemsLeft: number;
  ags: AgFigures[];
  freeSpace: AgStructureFigures[];
  inodeBtree: AgStructureFigures[];
  seconds: number;
}

function num(o: Record<string, unknown>, key: string): number {
  const v = o[key];
  return typeof v === 'number' ? v : NaN;
}

/**
 * `rmapfs repair --force-rebuild --json`: the rmap of every AG, or `only` of one AG. The rmap runs name
 * their type: --force-rebuild alone rebuilds every structure that has a repairer (issue 12), and total_s
 * must stay the rmap's, comparable with issue 5's figures.
 */
async function runRepair(mnt: string, only?: { type: AgStructure; agno: number }): Promise<RepairFigures> {
  const args = ['repair', '--force-rebuild', '--json', ...(only ? ['--type', only.type, '--ag', String(only.agno)] : ['--type', 'rmapbt']), mnt];
  const r = await rmapfs(args, { timeoutMs: 20 * 60_000 });
  // 0 clean, 1 corruption left (src/cli/scrub.ts ONLINE_*): both still report their figures.
  if (r.status !== 0 && r.status !== 1) throw new Error(failure('rmapfs', args, r));
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  if (line === undefined) throw new Error('rmapfs repair --json printed no JSON');
  const parsed = JSON.parse(line) as Record<string, unknown>;
  const list = (key: string): Record<string, unknown>[] => (Array.isArray(parsed[key]) ? parsed[key] as Record<string, unknown>[] : []);
  const ags = list('ags');
  const structureFigures = (key: string, recordsKey: string): AgStructureFigures[] => list(key).map((a) => ({
    agno: num(a, 'agno'), records: num(a, recordsKey), scanMs: num(a, 'scanMs'), commitPauseMs: num(a, 'commitPauseMs'),
  }));
  return {
    freeSpace: structureFigures('freeSpace', 'records'),
    inodeBtree: structureFigures('inodeBtree', 'chunks'),
    clean: parsed.clean === true,
    problemsLeft: num(parsed, 'problemCount'),
    seconds: r.seconds,
    ags: ags.map((a) => ({
      agno: num(a, 'agno'), records: num(a, 'records'), scanMs: num(a, 'scanMs'), loadMs: num(a, 'loadMs'),
      commitPauseMs: num(a, 'commitPauseMs'), xfileBytes: num(a, 'xfileBytes'), heapGrowthMib: num(a, 'heapGrowthMib'),
    })),
  };
}

/** `rmapfs scrub --json`: seconds the daemon reports, or the command's wall time. */
async function runScrub(mnt: string): Promise<number> {
  const args = ['scrub', '--json', mnt];
  const r = await rmapfs(args, { timeoutMs: 20 * 60_000 });
  if (r.status !== 0 && r.status !== 1) throw new Error(failure('rmapfs', args, r));
  const line = r.stdout.trim().split('\n').reverse().find((l) => l.startsWith('{'));
  const seconds = line === undefined ? NaN : num(JSON.parse(line) as Record<string, unknown>, 'seconds');
  return Number.isFinite(seconds) ? seconds : r.seconds;
}

// ---------------------------------------------------------------------------
// The daemon's heap, through its inspector

/** Reads the daemon's heap every `everyMs` until stopped; with `collect`, after a forced full GC each time. */
class HeapSampler {
  maxUsed = 0;
  samples = 0;
  private running = true;
  private readonly loop: Promise<void>;

  constructor(session: InspectorSession, everyMs: number, collect: boolean) {
    this.loop = (async () => {
      while (this.running) {
        const h = collect ? await session.liveHeap() : await session.heapUsage();
        this.maxUsed = Math.max(this.maxUsed, h.usedSize);
        this.samples++;
        if (this.running) await sleep(everyMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

// ---------------------------------------------------------------------------
// One AG's free-space btrees or inode btree

/** The structures other than the rmap that the bench rebuilds, one AG each (`--type` names). */
type AgStructure = 'bnobt' | 'inobt';
const AG_STRUCTURE_AGNO = 0;
/** Heap reads (no GC) during a one-AG repair, which takes about a second. */
const AG_STRUCTURE_HEAP_EVERY_MS = 20;

interface AgStructureRun {
  repair: RepairFigures;
  /** The AG's figures from the JSON (NaN-filled when the command reported none). */
  figures: AgStructureFigures;
  heapGrowthMib: number;
  heapPeakNoGcMib: number;
}

async function runAgStructure(mnt: string, session: InspectorSession, type: AgStructure): Promise<AgStructureRun> {
  const before = (await session.liveHeap()).usedSize;
  const sampler = new HeapSampler(session, AG_STRUCTURE_HEAP_EVERY_MS, false);
  let repair: RepairFigures;
  try {
    repair = await runRepair(mnt, { type, agno: AG_STRUCTURE_AGNO });
  } finally {
    await sampler.stop();
  }
  const after = (await session.liveHeap()).usedSize;
  const rebuilt = type === 'bnobt' ? repair.freeSpace : repair.inodeBtree;
  const figures = rebuilt.find((f) => f.agno === AG_STRUCTURE_AGNO)
    ?? { agno: AG_STRUCTURE_AGNO, records: NaN, scanMs: NaN, commitPauseMs: NaN };
  return { repair, figures, heapGrowthMib: (after - before) / MIB, heapPeakNoGcMib: (sampler.maxUsed - before) / MIB };
}

function describeAgStructure(type: AgStructure, what: string, r: AgStructureRun): string {
  const f = r.figures;
  return `  ${type === 'bnobt' ? 'free-space btrees' : 'inode btree'} of AG ${f.agno} ${what} ${r.repair.seconds.toFixed(2)} s `
    + `(rebuild ${((f.scanMs + f.commitPauseMs) / 1000).toFixed(3)} s: scan ${f.scanMs.toFixed(0)} ms, pause ${f.commitPauseMs.toFixed(1)} ms; `
    + `${f.records} ${type === 'bnobt' ? 'free extents' : 'chunks'}); heap growth ${r.heapGrowthMib.toFixed(2)} MiB `
    + `(peak without GC ${r.heapPeakNoGcMib.toFixed(1)})${r.repair.clean ? '' : '; NOT CLEAN'}\n`;
}

// ---------------------------------------------------------------------------
// One size

interface Run {
  label: string;
  target: number;
  plan: MixedFsPlan;
  buildS: number;
  /** The repair alone (first on the fresh mount), and again under the foreground workload. */
  repair: RepairFigures;
  repairFg: RepairFigures;
  baseline: LatencyFigures;
  during: LatencyFigures;
  /** Live heap (after GC) before the first repair, and the largest heap read during it (no GC: garbage included). */
  heapBeforeMib: number;
  heapPeakNoGcMib: number;
  /** From the heap pass (NaN without it). */
  heapGrowthMib: number;
  heapPassS: number;
  heapPassSamples: number;
  scrubS: number;
  /** One AG's free-space btrees and inode btree, alone and under fio. */
  freeSpace: AgStructureRun;
  freeSpaceFg: AgStructureRun;
  inobt: AgStructureRun;
  inobtFg: AgStructureRun;
}

interface Mounted {
  mnt: string;
  session: InspectorSession | null;
}

async function mountWithInspector(image: string, mnt: string): Promise<Mounted> {
  const port = await freePort();
  // The daemon inherits the environment of `rmapfs mount`; the inspector stays closed until SIGUSR1.
  const env = { ...process.env, NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect-port=127.0.0.1:${port}`.trim() };
  const args = ['mount', image, mnt];
  const r = await rmapfs(args, { env, timeoutMs: 300_000 });
  if (r.status !== 0) throw new Error(failure('rmapfs', args, r));
  if (!isMounted(mnt)) throw new Error(`rmapfs mount returned but ${mnt} is not mounted`);
  const status = await rmapfs(['status', mnt]);
  const pid = Number(/^pid\s+(\d+)/m.exec(status.stdout)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`rmapfs status ${mnt}: no daemon pid (${firstLineOf(status.stdout + status.stderr)})`);
  process.kill(pid, 'SIGUSR1');
  return { mnt, session: await InspectorSession.connect(port) };
}

function firstLineOf(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

async function runSize(target: number, opts: Options, dir: string, track: { fio: ForegroundWriter | null }): Promise<Run> {
  const name = label(target);
  const image = path.join(dir, `repair-${name}.img`);
  const mnt = path.join(dir, 'mnt');
  const plan = planFor(target, opts.smallShare);
  process.stderr.write(`${name}: building ${plan.smallFiles} small files and ${plan.fragmentedFiles} files of `
    + `${plan.fragmentedExtents} extents (about ${estimateRecords(plan)} rmap records)\n`);
  let t0 = process.hrtime.bigint();
  let lastReport = Date.now();
  const fsx = buildMixedFs(image, plan, (p) => {
    if (Date.now() - lastReport > 5000) {
      lastReport = Date.now();
      process.stderr.write(`  ${p.smallFilesDone} small files, ${p.extentsDone} extents\n`);
    }
  });
  fsx.close();
  const buildS = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stderr.write(`  built in ${buildS.toFixed(1)} s (${(fs.statSync(image).blocks * 512 / MIB).toFixed(0)} MiB on disk)\n`);

  fs.mkdirSync(mnt, { recursive: true });
  let mounted: Mounted | null = null;
  const fgFile = path.join(mnt, 'fg');
  const logPrefix = (what: string): string => path.join(dir, `fio-${name}-${what}`);
  try {
    mounted = await mountWithInspector(image, mnt);
    const session = mounted.session!;
    const profileOf = async (what: string): Promise<void> => {
      const profile = await stopProfile(session);
      const file = path.join(os.tmpdir(), `rmapfs-bench-repair-${name}-${what}-${process.pid}.cpuprofile`);
      fs.writeFileSync(file, JSON.stringify(profile));
      process.stderr.write(`  daemon CPU profile of the repair ${what} (${file}), self time:\n`);
      for (const l of topFunctions(profile, 20)) {
        process.stderr.write(`    ${(l.share * 100).toFixed(1).padStart(5)}% ${l.selfMs.toFixed(0).padStart(7)} ms  ${l.where}\n`);
      }
    };
    const describe = (what: string, r: RepairFigures): string => `  repair ${what} ${r.seconds.toFixed(2)} s: `
      + `scan ${(Math.max(...r.ags.map((a) => a.scanMs)) / 1000).toFixed(2)} s; ${r.ags.map((a) => `AG ${a.agno} ${a.records} records, `
      + `pause ${a.commitPauseMs.toFixed(0)} ms (load ${a.loadMs.toFixed(0)})`).join('; ')}; `
      + `heap growth ${Math.max(...r.ags.map((a) => a.heapGrowthMib)).toFixed(1)} MiB\n`;

    // 1. The scrub the repair command ends with, alone.
    const scrubS = await runScrub(mnt);
    process.stderr.write(`  scrub alone ${scrubS.toFixed(2)} s\n`);

    // 2. The repair alone, on the otherwise idle filesystem.
    const heapBefore = (await session.liveHeap()).usedSize;
    if (opts.profile) await startProfile(session);
    const sampler = new HeapSampler(session, 100, false);
    let repair: RepairFigures;
    try {
      repair = await runRepair(mnt);
    } finally {
      await sampler.stop();
    }
    process.stderr.write(describe('alone', repair));
    if (opts.profile) await profileOf('alone');
    const freeSpace = await runAgStructure(mnt, session, 'bnobt');
    process.stderr.write(describeAgStructure('bnobt', 'alone', freeSpace));
    const inobt = await runAgStructure(mnt, session, 'inobt');
    process.stderr.write(describeAgStructure('inobt', 'alone', inobt));

    // 3. The repair again, with the foreground workload running.
    const fio = new ForegroundWriter(fgFile, FG_BYTES, logPrefix('during'), opts.fgIops);
    track.fio = fio;
    await fio.warmUp(WARM_UP_MS);
    if (opts.profile) await startProfile(session);
    const t1 = Date.now();
    const repairFg = await runRepair(mnt);
    const t2 = Date.now();
    // fio keeps running: the one-AG rebuilds go under the same load (the window above is the rmap's alone).
    const freeSpaceFg = await runAgStructure(mnt, session, 'bnobt');
    const inobtFg = await runAgStructure(mnt, session, 'inobt');
    await fio.stop();
    track.fio = null;
    const during = fio.window(t1, t2);
    process.stderr.write(describe('with fio', repairFg));
    process.stderr.write(describeAgStructure('bnobt', 'with fio', freeSpaceFg));
    process.stderr.write(describeAgStructure('inobt', 'with fio', inobtFg));
    if (opts.profile) await profileOf('with-fio');

    // 4. Baseline: the same workload alone, as long as the repair under it took.
    const baselineMs = Math.min(opts.maxBaselineS * 1000, Math.max(opts.minBaselineS * 1000, t2 - t1));
    const alone = new ForegroundWriter(fgFile, FG_BYTES, logPrefix('baseline'), opts.fgIops);
    track.fio = alone;
    await alone.warmUp(WARM_UP_MS);
    const b1 = Date.now();
    await sleep(baselineMs);
    const b2 = Date.now();
    await alone.stop();
    track.fio = null;
    const baseline = alone.window(b1, b2);
    for (const what of ['during', 'baseline']) {
      for (const kind of ['clat', 'lat', 'slat']) fs.rmSync(`${logPrefix(what)}_${kind}.1.log`, { force: true });
    }

    const fmt = (l: LatencyFigures): string => `p50/p99/max ${l.p50Ms.toFixed(3)}/${l.p99Ms.toFixed(3)}/${l.maxMs.toFixed(1)} ms, ${l.iops} IOPS`;
    process.stderr.write(`  baseline ${(baselineMs / 1000).toFixed(1)} s: fio ${fmt(baseline)}; during the repair ${fmt(during)}\n`);

    // 5. Heap pass: the repair again, GC forced in the daemon about HEAP_SAMPLES times.
    let heapGrowthMib = NaN;
    let heapPassS = 0;
    let heapPassSamples = 0;
    if (opts.heapPass) {
      const h0 = (await session.liveHeap()).usedSize;
      const everyMs = Math.min(500, Math.max(100, repair.seconds * 1000 / HEAP_SAMPLES));
      const gcSampler = new HeapSampler(session, everyMs, true);
      let third: RepairFigures;
      try {
        third = await runRepair(mnt);
      } finally {
        await gcSampler.stop();
      }
      const h1 = (await session.liveHeap()).usedSize;
      heapGrowthMib = (Math.max(gcSampler.maxUsed, h1) - h0) / MIB;
      heapPassS = third.seconds;
      heapPassSamples = gcSampler.samples;
      process.stderr.write(`  heap pass: repair ${third.seconds.toFixed(2)} s, ${gcSampler.samples} GC'd samples, `
        + `live heap ${(h0 / MIB).toFixed(1)} -> max ${(gcSampler.maxUsed / MIB).toFixed(1)} MiB, after ${(h1 / MIB).toFixed(1)} MiB\n`);
    }
    return {
      label: name, target, plan, buildS, repair, repairFg, baseline, during,
      heapBeforeMib: heapBefore / MIB, heapPeakNoGcMib: (sampler.maxUsed - heapBefore) / MIB,
      heapGrowthMib, heapPassS, heapPassSamples, scrubS, freeSpace, freeSpaceFg, inobt, inobtFg,
    };
  } finally {
    track.fio?.kill();
    track.fio = null;
    mounted?.session?.close();
    if (isMounted(mnt)) {
      t0 = process.hrtime.bigint();
      const r = await rmapfs(['umount', mnt], { timeoutMs: 300_000 });
      if (r.status !== 0) process.stderr.write(`  ${failure('rmapfs', ['umount', mnt], r)}\n`);
      forceUmount(mnt);
      process.stderr.write(`  unmounted in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s\n`);
    }
    if (!isMounted(mnt)) fs.rmSync(image, { force: true });
  }
}

// ---------------------------------------------------------------------------
// Figures and report

interface RunJson {
  label: string;
  records: number;
  ags: number;
  small_files: number;
  fragmented_files: number;
  build_s: number;
  total_s: number;
  records_per_s: number;
  scan_s: number;
  total_s_with_fg: number;
  scan_s_with_fg: number;
  scrub_s: number;
  /** Sum of the AGs' commit pauses. */
  commits_s: number;
  commit_pause_ms: number;
  commit_pause_ms_alone: number;
  commit_pause_ms_with_fg: number;
  load_ms: number;
  xfile_bytes_per_record: number;
  heap_growth_mib: number;
  /** The daemon's figure for the second repair (under fio). */
  heap_growth_warm_mib: number;
  heap_peak_nogc_mib: number;
  heap_growth_gc_sampled_mib: number | null;
  fg_p50_ms_baseline: number;
  fg_p99_ms_baseline: number;
  fg_p50_ms_during: number;
  fg_p99_ms_during: number;
  /** The slowest single write (a stall of the daemon shows here, not in p99). */
  fg_max_ms_baseline: number;
  fg_max_ms_during: number;
  fg_iops_baseline: number;
  fg_iops_during: number;
  fg_ios_during: number;
  clean: boolean;
  /** The machine's 1-minute load average when the run ended (other work on the machine skews every figure). */
  load_avg: number;
  /** One AG's free-space btrees (both, rebuilt from the rmap) and inode btree. */
  free_space: AgStructureJson;
  inobt: AgStructureJson;
}

interface AgStructureJson {
  agno: number;
  /** Free extents, or inode chunks. */
  records: number;
  /** The command's wall time (its closing scrub of the AG included), alone and under fio. */
  total_s: number;
  total_s_with_fg: number;
  /** The rebuild itself (the daemon's scan + commit pause): the <= 1 s bar. */
  rebuild_s: number;
  rebuild_s_with_fg: number;
  scan_s: number;
  commit_pause_ms: number;
  commit_pause_ms_alone: number;
  commit_pause_ms_with_fg: number;
  /** Live heap after a forced GC, after minus before the command (alone, and under fio). */
  heap_growth_mib: number;
  heap_growth_warm_mib: number;
  heap_peak_nogc_mib: number;
  clean: boolean;
}

const round = (x: number, digits: number): number => (Number.isFinite(x) ? +x.toFixed(digits) : NaN);

function agStructureJson(alone: AgStructureRun, withFg: AgStructureRun): AgStructureJson {
  const a = alone.figures;
  const f = withFg.figures;
  return {
    agno: a.agno,
    records: a.records,
    total_s: round(alone.repair.seconds, 3),
    total_s_with_fg: round(withFg.repair.seconds, 3),
    rebuild_s: round((a.scanMs + a.commitPauseMs) / 1000, 3),
    rebuild_s_with_fg: round((f.scanMs + f.commitPauseMs) / 1000, 3),
    scan_s: round(a.scanMs / 1000, 3),
    commit_pause_ms: round(Math.max(a.commitPauseMs, f.commitPauseMs), 1),
    commit_pause_ms_alone: round(a.commitPauseMs, 1),
    commit_pause_ms_with_fg: round(f.commitPauseMs, 1),
    heap_growth_mib: round(alone.heapGrowthMib, 2),
    heap_growth_warm_mib: round(withFg.heapGrowthMib, 2),
    heap_peak_nogc_mib: round(Math.max(alone.heapPeakNoGcMib, withFg.heapPeakNoGcMib), 1),
    clean: alone.repair.clean && withFg.repair.clean,
  };
}

function toJson(r: Run): RunJson {
  const ags = r.repair.ags;
  const records = ags.reduce((n, a) => n + a.records, 0);
  const maxOf = (f: (a: AgFigures) => number, list: AgFigures[] = ags): number => list.reduce((m, a) => Math.max(m, f(a)), -Infinity);
  const pauseAlone = maxOf((a) => a.commitPauseMs);
  const pauseFg = maxOf((a) => a.commitPauseMs, r.repairFg.ags);
  return {
    label: r.label,
    records,
    ags: ags.length,
    small_files: r.plan.smallFiles,
    fragmented_files: r.plan.fragmentedFiles,
    build_s: round(r.buildS, 1),
    total_s: round(r.repair.seconds, 3),
    records_per_s: Math.round(records / r.repair.seconds),
    scan_s: round(maxOf((a) => a.scanMs) / 1000, 3),
    total_s_with_fg: round(r.repairFg.seconds, 3),
    scan_s_with_fg: round(maxOf((a) => a.scanMs, r.repairFg.ags) / 1000, 3),
    scrub_s: round(r.scrubS, 3),
    commits_s: round(ags.reduce((n, a) => n + a.commitPauseMs, 0) / 1000, 3),
    commit_pause_ms: round(Math.max(pauseAlone, pauseFg), 1),
    commit_pause_ms_alone: round(pauseAlone, 1),
    commit_pause_ms_with_fg: round(pauseFg, 1),
    load_ms: round(Math.max(maxOf((a) => a.loadMs), maxOf((a) => a.loadMs, r.repairFg.ags)), 1),
    xfile_bytes_per_record: round(maxOf((a) => (a.records > 0 ? a.xfileBytes / a.records : 0)), 1),
    heap_growth_mib: round(maxOf((a) => a.heapGrowthMib), 2),
    heap_growth_warm_mib: round(maxOf((a) => a.heapGrowthMib, r.repairFg.ags), 2),
    heap_peak_nogc_mib: round(r.heapPeakNoGcMib, 1),
    heap_growth_gc_sampled_mib: Number.isFinite(r.heapGrowthMib) ? round(r.heapGrowthMib, 2) : null,
    fg_p50_ms_baseline: round(r.baseline.p50Ms, 3),
    fg_p99_ms_baseline: round(r.baseline.p99Ms, 3),
    fg_p50_ms_during: round(r.during.p50Ms, 3),
    fg_p99_ms_during: round(r.during.p99Ms, 3),
    fg_max_ms_baseline: round(r.baseline.maxMs, 1),
    fg_max_ms_during: round(r.during.maxMs, 1),
    fg_iops_baseline: r.baseline.iops,
    fg_iops_during: r.during.iops,
    fg_ios_during: r.during.ios,
    clean: r.repair.clean && r.repairFg.clean,
    load_avg: round(os.loadavg()[0]!, 2),
    free_space: agStructureJson(r.freeSpace, r.freeSpaceFg),
    inobt: agStructureJson(r.inobt, r.inobtFg),
  };
}

function humanLine(j: RunJson): string {
  const other = j.total_s - j.scan_s - j.scrub_s - j.commits_s;
  return `${j.label.padStart(5)}: ${j.records} rmap records (${j.small_files} small files, ${j.fragmented_files} fragmented, `
    + `built in ${j.build_s} s); repair ${j.total_s.toFixed(2)} s = ${j.records_per_s} records/s `
    + `(scan ${j.scan_s.toFixed(2)} s, commits ${j.commits_s.toFixed(2)} s, scrub ~${j.scrub_s.toFixed(2)} s, `
    + `rest ${other.toFixed(2)} s), ${j.total_s_with_fg.toFixed(2)} s under fio (scan ${j.scan_s_with_fg.toFixed(2)} s); `
    + `commit pause ${j.commit_pause_ms_alone}/${j.commit_pause_ms_with_fg} ms alone/under fio; `
    + `xfile ${j.xfile_bytes_per_record} B/record; heap growth ${j.heap_growth_mib} MiB, ${j.heap_growth_warm_mib} warm `
    + `(peak without GC ${j.heap_peak_nogc_mib}${j.heap_growth_gc_sampled_mib === null ? '' : `, GC-sampled ${j.heap_growth_gc_sampled_mib}`}); `
    + `fg 4 KiB write p50/p99/max ${j.fg_p50_ms_baseline}/${j.fg_p99_ms_baseline}/${j.fg_max_ms_baseline} ms alone, `
    + `${j.fg_p50_ms_during}/${j.fg_p99_ms_during}/${j.fg_max_ms_during} ms during repair (${j.fg_iops_baseline} vs ${j.fg_iops_during} IOPS); `
    + `${j.clean ? 'scrub clean' : 'NOT CLEAN'}; load average ${j.load_avg}; `
    + `${agStructureLine('free-space btrees', j.free_space)}; ${agStructureLine('inode btree', j.inobt)}`;
}

function agStructureLine(what: string, s: AgStructureJson): string {
  return `${what} of AG ${s.agno} (${s.records} records) rebuilt in ${s.rebuild_s}/${s.rebuild_s_with_fg} s alone/under fio `
    + `(command ${s.total_s}/${s.total_s_with_fg} s), commit pause ${s.commit_pause_ms_alone}/${s.commit_pause_ms_with_fg} ms, `
    + `heap growth ${s.heap_growth_mib}/${s.heap_growth_warm_mib} MiB${s.clean ? '' : ', NOT CLEAN'}`;
}

type Verdict = 'PASS' | 'FAIL' | 'SKIP' | 'INFO';

function bars(runs: RunJson[], targets: number[]): [Verdict, string, string][] {
  const at = (n: number): RunJson | undefined => runs[targets.indexOf(n)];
  const big = at(1e6);
  const mid = at(1e5);
  const out: [Verdict, string, string][] = [];
  const bar = (name: string, ok: boolean | null, seen: string): void => { out.push([ok === null ? 'SKIP' : ok ? 'PASS' : 'FAIL', name, seen]); };
  bar('1M: repair completes in <= 20 s', big ? big.total_s <= 20 : null, big ? `${big.total_s} s` : '');
  bar('1M: commit pause <= 200 ms', big ? big.commit_pause_ms <= 200 : null,
    big ? `${big.commit_pause_ms_alone} ms alone, ${big.commit_pause_ms_with_fg} ms under fio` : '');
  bar('1M: JS heap growth <= 64 MiB (first repair, buffer cache filling included)', big ? big.heap_growth_mib <= 64 : null,
    big ? `${big.heap_growth_mib} MiB` : '');
  bar('heap growth flat from 100k to 1M, within 8 MiB (second repair, buffer cache already full)',
    big && mid ? big.heap_growth_warm_mib - mid.heap_growth_warm_mib <= 8 : null,
    big && mid ? `${mid.heap_growth_warm_mib} -> ${big.heap_growth_warm_mib} MiB (first repair: `
      + `${mid.heap_growth_mib} -> ${big.heap_growth_mib} MiB)` : '');
  bar('1M: foreground p99 during repair <= 3x baseline', big ? big.fg_p99_ms_during <= 3 * big.fg_p99_ms_baseline : null,
    big ? `${big.fg_p99_ms_during} vs ${big.fg_p99_ms_baseline} ms = ${round(big.fg_p99_ms_during / big.fg_p99_ms_baseline, 2)}x` : '');
  bar('time(1M) / time(100k) <= 12', big && mid ? big.total_s / mid.total_s <= 12 : null,
    big && mid ? `${big.total_s} / ${mid.total_s} s = ${round(big.total_s / mid.total_s, 2)}` : '');
  for (const [what, of] of [['free-space btrees', (r: RunJson) => r.free_space], ['inode btree', (r: RunJson) => r.inobt]] as const) {
    const b = big ? of(big) : undefined;
    const m = mid ? of(mid) : undefined;
    bar(`1M: ${what} of one AG rebuilt in <= 1 s (alone and under fio)`, b ? Math.max(b.rebuild_s, b.rebuild_s_with_fg) <= 1 : null,
      b ? `${b.rebuild_s} s alone, ${b.rebuild_s_with_fg} s under fio (command ${b.total_s} / ${b.total_s_with_fg} s, closing scrub included)` : '');
    bar(`1M: ${what} commit pause <= 100 ms`, b ? b.commit_pause_ms <= 100 : null,
      b ? `${b.commit_pause_ms_alone} ms alone, ${b.commit_pause_ms_with_fg} ms under fio` : '');
    bar(`${what}: heap growth flat from 100k to 1M, within 8 MiB`,
      b && m ? Math.max(b.heap_growth_mib, b.heap_growth_warm_mib) - Math.max(m.heap_growth_mib, m.heap_growth_warm_mib) <= 8 : null,
      b && m ? `${m.heap_growth_mib}/${m.heap_growth_warm_mib} -> ${b.heap_growth_mib}/${b.heap_growth_warm_mib} MiB alone/under fio` : '');
  }
  bar('scrub clean after every repair', runs.every((r) => r.clean && r.free_space.clean && r.inobt.clean),
    runs.map((r) => `${r.label} ${r.clean && r.free_space.clean && r.inobt.clean ? 'clean' : 'not clean'}`).join(', '));
  if (big) {
    out.push(['INFO', '1M: repair under the foreground workload', `${big.total_s_with_fg} s (scan ${big.scan_s_with_fg} s), `
      + `${round(big.total_s_with_fg / big.total_s, 2)}x the repair alone; fio ${big.fg_iops_during} IOPS during it, ${big.fg_iops_baseline} alone`]);
    out.push(['INFO', '1M: slowest foreground write', `${big.fg_max_ms_during} ms during the repair, ${big.fg_max_ms_baseline} ms alone`]);
  }
  return out;
}

async function main(argv: string[]): Promise<number> {
  let opts: Options;
  try {
    opts = parseOptions(argv);
  } catch (e) {
    console.error(`bench/repair: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    console.error('bench/repair: run as root (it mounts a FUSE filesystem)');
    return 1;
  }
  for (const tool of ['fio', 'fusermount']) {
    if (!onPath(tool)) {
      console.error(`bench/repair: ${tool} is missing (apt-get install ${tool === 'fio' ? 'fio' : 'fuse'})`);
      return 1;
    }
  }
  const base = process.env.RMAPFS_BENCH_DIR ?? os.tmpdir();
  const dir = path.join(base, `rmapfs-bench-repair-${process.pid}`);
  const mnt = path.join(dir, 'mnt');
  const track: { fio: ForegroundWriter | null } = { fio: null };
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    track.fio?.kill();
    try {
      forceUmount(mnt);
    } catch {
      // reported below
    }
    if (!isMounted(mnt)) fs.rmSync(dir, { recursive: true, force: true });
    else console.error(`bench/repair: could not unmount ${mnt}; left ${dir} in place`);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`bench/repair: ${sig}: unmounting and cleaning up`);
    cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);

  console.log(`bench/repair on ${os.cpus().length} cores, node ${process.version}, ${os.release()}; `
    + `sizes ${opts.sizes.map(label).join(', ')} rmap records; foreground ${opts.fgIops === 0 ? 'unthrottled' : `${opts.fgIops} writes/s`}; images in ${dir}; load average ${os.loadavg()[0]!.toFixed(2)}`);
  const runs: RunJson[] = [];
  try {
    fs.mkdirSync(dir, { recursive: true });
    for (const target of opts.sizes) {
      const j = toJson(await runSize(target, opts, dir, track));
      runs.push(j);
      console.log(humanLine(j));
    }
  } catch (e) {
    console.error(`bench/repair: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    return 1;
  } finally {
    cleanup();
    for (const s of signals) process.off(s, onSignal);
  }
  for (const [verdict, name, seen] of bars(runs, opts.sizes)) console.log(`${verdict}  ${name}${seen ? `: ${seen}` : ''}`);
  console.log(JSON.stringify({ runs }));
  return runs.every((r) => r.clean && r.free_space.clean && r.inobt.clean) ? 0 : 1;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(`bench/repair: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exitCode = 1;
});
