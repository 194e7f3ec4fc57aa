/**
 * bench/io: the workloads of issue 14 side by side on kernel ext4 and kernel
 * XFS (-m rmapbt=1, both on loop devices), fuse2fs, rmapfs and the floor (a
 * trivial in-memory filesystem on our FUSE binding: what the round trips
 * alone cost; metadata workloads only). Images of one size in one directory
 * ($RMAPFS_BENCH_DIR, default /var/tmp). Workloads (bench/io/workloads.ts),
 * each on a fresh mount (caches dropped), every peer in turn before the next
 * workload, so a change of load hits all peers alike:
 *   untar_umount_s      tar -xf of a tar of /usr/include, then unmount (the flush counts;
 *                       umount_after_untar_s: the unmount alone)
 *   ls_lr_s             ls -lR of that tree, cold
 *   cat_all_s           cat of every file of it, cold
 *   touch_s             30,000 touch in one directory (xargs touch)
 *   sqlite_s            3,000 sqlite3 autocommit INSERTs (one statement per transaction)
 *   rm_rf_s             rm -rf of the tree and the 30,000
 *   rand_write_iops     fio psync 4 KiB random writes on a 256 MiB file, buffered, 20 s
 *   rand_write_direct_iops  the same with O_DIRECT
 *   seq_write_mibs      dd 1 GiB of zeros, conv=fsync
 *   seq_read_mibs       dd that file back, cold
 * Prints a table (figure per peer, ratios rmapfs/peer), PASS/MISS lines for
 * the issue's bars, the rmapfs daemon's memory (VmHWM) and CPU time, the
 * load average, and ONE JSON object as the last line.
 *
 * Installs fio, sqlite3, fuse2fs, xfsprogs, e2fsprogs with apt-get when
 * missing. Mounts are undone, loop devices detached and images removed at
 * the end, also on failure or Ctrl-C.
 *
 * Usage: node dist/bench/io/main.js [--quick] [--only W1,W2] [--peers P1,P2] [--rmapfs-options OPTS]   (as root)
 *   --rmapfs-options: what `rmapfs mount -o` gets (writeback_cache, say); in the JSON as rmapfs_options
 *   --quick: /usr/include/linux, 3,000 touch, 300 inserts, 128 MiB, fio 3 s
 *   workloads: untar ls cat touch sqlite rm rand_write rand_write_direct seq_write seq_read
 *   peers: ext4 xfs fuse2fs rmapfs floor
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { firstLine, must, onPath, run, RunResult } from '../lib/procs';
import { makePeer, Peer, PeerName, PEER_NAMES } from './peers';
import { Context, Scale, Workload, WorkloadKey, WORKLOADS, WORKLOAD_KEYS } from './workloads';

const IMAGE_SIZE = '4G';
const FULL: Scale = { treeSource: '/usr/include', touchFiles: 30_000, sqliteInserts: 3_000, seqMib: 1024, fioMib: 256, fioSeconds: 20 };
const QUICK: Scale = { treeSource: '/usr/include/linux', touchFiles: 3_000, sqliteInserts: 300, seqMib: 128, fioMib: 64, fioSeconds: 3 };
const CLOCK_TICKS = 100; // USER_HZ: /proc/PID/stat's utime and stime unit

// ---------------------------------------------------------------------------
// Tools

const TOOLS: readonly { command: string; pkg: string; peers?: readonly PeerName[]; workloads?: readonly WorkloadKey[] }[] = [
  { command: 'fio', pkg: 'fio', workloads: ['rand_write', 'rand_write_direct'] },
  { command: 'sqlite3', pkg: 'sqlite3', workloads: ['sqlite'] },
  { command: 'fuse2fs', pkg: 'fuse2fs', peers: ['fuse2fs'] },
  { command: 'mkfs.xfs', pkg: 'xfsprogs', peers: ['xfs'] },
  { command: 'mkfs.ext4', pkg: 'e2fsprogs', peers: ['ext4', 'fuse2fs'] },
  { command: 'losetup', pkg: 'mount', peers: ['ext4', 'xfs'] },
];

async function ensureTools(peers: readonly PeerName[], workloads: readonly WorkloadKey[]): Promise<boolean> {
  const needed = TOOLS.filter((t) => (t.peers ?? PEER_NAMES).some((p) => peers.includes(p)) &&
    (t.workloads ?? WORKLOAD_KEYS).some((w) => workloads.includes(w)));
  const missing = needed.filter((t) => !onPath(t.command));
  if (missing.length === 0) return true;
  const packages = [...new Set(missing.map((t) => t.pkg))];
  console.log(`bench/io: ${missing.map((t) => t.command).join(', ')} missing: apt-get install -y ${packages.join(' ')}`);
  const apt = (args: string[]): Promise<RunResult> =>
    run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args], { timeoutMs: 20 * 60_000 });
  let r = await apt(['install', '-y', '-qq', ...packages]);
  if (r.status !== 0) {
    console.log('bench/io: apt-get install failed; apt-get update, then again');
    await apt(['update', '-qq']);
    r = await apt(['install', '-y', '-qq', ...packages]);
  }
  const still = missing.filter((t) => !onPath(t.command));
  if (r.status !== 0 || still.length > 0) {
    const why = r.status !== 0 ? firstLine(r.stderr.split('\n').filter((l) => /^E:/.test(l)).join('\n') || r.stderr)
      : `still missing: ${still.map((t) => t.command).join(', ')}`;
    console.error(`bench/io: cannot install ${packages.join(' ')}: ${why}`);
    return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// The daemons' memory and CPU

function procStatus(pid: number, field: string): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** utime + stime of a process, in seconds. */
function cpuSeconds(pid: number): number | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS; // fields 14 and 15 of stat(5)
  } catch {
    return null;
  }
}

/** Per peer: the largest VmHWM seen before an unmount; per (peer, workload): the daemon's CPU seconds. */
class DaemonMeter {
  readonly hwmKib = new Map<PeerName, number>();
  readonly cpu = new Map<string, number>();
  private startCpu = new Map<PeerName, number>();
  workload: WorkloadKey | null = null;

  mounted(peer: Peer): void {
    const pid = peer.daemonPid();
    const c = pid === null ? null : cpuSeconds(pid);
    if (c !== null) this.startCpu.set(peer.name, c);
    else this.startCpu.delete(peer.name);
  }

  unmounting(peer: Peer): void {
    const pid = peer.daemonPid();
    if (pid === null) return;
    const hwm = procStatus(pid, 'VmHWM');
    if (hwm !== null) this.hwmKib.set(peer.name, Math.max(this.hwmKib.get(peer.name) ?? 0, hwm));
    const c = cpuSeconds(pid);
    const c0 = this.startCpu.get(peer.name);
    if (c !== null && c0 !== undefined && this.workload !== null) this.cpu.set(`${peer.name}/${this.workload}`, +(c - c0).toFixed(2));
  }
}

// ---------------------------------------------------------------------------
// Set-up

async function dropCaches(): Promise<void> {
  await run('sync', []);
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch (e) {
    console.error(`bench/io: cannot drop caches (${e instanceof Error ? e.message : String(e)}); figures may be cached`);
  }
}

/** The tar of the tree, the names to touch and the SQL, on tmpfs; returns what the tar holds. */
async function prepareInputs(work: string, scale: Scale): Promise<{ tar: string; touchList: string; sqlScript: string; holds: string }> {
  fs.mkdirSync(work, { recursive: true });
  const tar = path.join(work, 'tree.tar');
  await must('tar', ['-cf', tar, '-C', path.dirname(scale.treeSource), path.basename(scale.treeSource)]);
  const listing = (await must('tar', ['-tvf', tar])).stdout.trim().split('\n');
  let files = 0;
  let dirs = 0;
  let links = 0;
  let bytes = 0;
  for (const line of listing) {
    if (line.startsWith('-')) {
      files++;
      bytes += Number(line.split(/\s+/)[2]);
    } else if (line.startsWith('d')) dirs++;
    else links++;
  }
  const touchList = path.join(work, 'touch.list');
  fs.writeFileSync(touchList, Array.from({ length: scale.touchFiles }, (_, i) => `f${String(i).padStart(5, '0')}\n`).join(''));
  const sqlScript = path.join(work, 'inserts.sql');
  fs.writeFileSync(sqlScript, Array.from({ length: scale.sqliteInserts },
    (_, i) => `INSERT INTO t(v) VALUES('row ${i} of the bench/io autocommit workload');\n`).join(''));
  const holds = `${scale.treeSource}: ${files} files, ${dirs} directories, ${links} links, ${(bytes / 1e6).toFixed(1)} MB`;
  return { tar, touchList, sqlScript, holds };
}

function listOption(argv: readonly string[], flag: string, allowed: readonly string[]): string[] | null {
  const i = argv.indexOf(flag);
  if (i < 0) return null;
  const list = (argv[i + 1] ?? '').split(',').filter((s) => s !== '');
  const bad = list.filter((s) => !allowed.includes(s));
  if (list.length === 0 || bad.length > 0) throw new Error(`${flag}: ${bad.join(',') || '(empty)'}: choose from ${allowed.join(',')}`);
  return list;
}

/** The workloads to run, in their order: those asked for and what they require. */
function withRequirements(asked: readonly WorkloadKey[]): Workload[] {
  const want = new Set<WorkloadKey>();
  const add = (k: WorkloadKey): void => {
    if (want.has(k)) return;
    want.add(k);
    for (const r of WORKLOADS.find((w) => w.key === k)!.requires) add(r);
  };
  asked.forEach(add);
  return WORKLOADS.filter((w) => want.has(w.key));
}

// ---------------------------------------------------------------------------
// Report

type Figures = Partial<Record<string, number | null>>;

function fmt(v: number | null | undefined, unit: string): string {
  if (v === null || v === undefined) return '-';
  return unit === 's' ? v.toFixed(2) : unit === 'IOPS' ? String(Math.round(v)) : v.toFixed(1);
}

function ratio(a: number | null | undefined, b: number | null | undefined): number | null {
  return typeof a === 'number' && typeof b === 'number' && b > 0 ? +(a / b).toFixed(2) : null;
}

interface Bar { name: string; ok: boolean | null; note: string }

/** The issue's bars. Times: rmapfs/peer is a slowdown; rates: rmapfs/peer is a speed-up. */
function bars(results: Record<string, Figures>, ran: readonly Workload[]): Bar[] {
  const out: Bar[] = [];
  const r = results.rmapfs ?? {};
  const has = (k: WorkloadKey): Workload | undefined => ran.find((w) => w.key === k);
  const fuse2fs = results.fuse2fs;
  if (fuse2fs !== undefined) {
    for (const w of ran) {
      if (w.key === 'sqlite') continue; // fsync-bound: no bar against fuse2fs
      const want = w.unit === 's' ? 2.0 : 1.5;
      // How many times faster rmapfs is.
      const speedup = w.unit === 's' ? ratio(fuse2fs[w.figure], r[w.figure]) : ratio(r[w.figure], fuse2fs[w.figure]);
      out.push({ name: `${w.key} >= ${want}x faster than fuse2fs`, ok: speedup === null ? null : speedup >= want, note: `${speedup ?? '-'}x` });
    }
  }
  const ext4 = results.ext4;
  const floor = results.floor;
  if (ext4 !== undefined) {
    const limits: [WorkloadKey, number][] = [['untar', 2], ['ls', 2], ['cat', 1.5], ['touch', 3], ['sqlite', 1.5], ['rm', 3]];
    for (const [k, limit] of limits) {
      const w = has(k);
      if (w === undefined) continue;
      const slow = ratio(r[w.figure], ext4[w.figure]);
      const floorSlow = floor === undefined ? null : ratio(floor[w.figure], ext4[w.figure]);
      const floorNote = floorSlow === null ? '' : `; floor/ext4 ${floorSlow}x${floorSlow > limit ? ': the FUSE round trip alone misses it' : ''}`;
      out.push({ name: `${k} <= ${limit}x ext4`, ok: slow === null ? null : slow <= limit, note: `${slow ?? '-'}x${floorNote}` });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const scale = quick ? QUICK : FULL;
  let peerNames: PeerName[];
  let asked: WorkloadKey[];
  try {
    peerNames = (listOption(argv, '--peers', PEER_NAMES) ?? [...PEER_NAMES]) as PeerName[];
    asked = (listOption(argv, '--only', WORKLOAD_KEYS) ?? [...WORKLOAD_KEYS]) as WorkloadKey[];
  } catch (e) {
    console.error(`bench/io: ${e instanceof Error ? e.message : String(e)}`);
    return 16;
  }
  peerNames = PEER_NAMES.filter((p) => peerNames.includes(p));
  if (process.getuid?.() !== 0) {
    console.error('bench/io: run as root (it mounts filesystems and loop devices, drops caches and may apt-get install)');
    return 1;
  }
  const workloads = withRequirements(asked);
  if (!(await ensureTools(peerNames, workloads.map((w) => w.key)))) return 1;

  const base = process.env.RMAPFS_BENCH_DIR ?? '/var/tmp';
  const dir = path.join(base, `rmapfs-bench-io-${process.pid}`);
  const work = path.join('/dev/shm', `rmapfs-bench-io-${process.pid}`);
  const oi = argv.indexOf('--rmapfs-options');
  const rmapfsOptions = oi >= 0 ? argv[oi + 1] ?? '' : '';
  const peers = peerNames.map((p) => makePeer(p, dir, IMAGE_SIZE, rmapfsOptions));
  const meter = new DaemonMeter();
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    for (const p of peers) {
      try {
        p.cleanup();
      } catch {
        // keep going: the others must be unmounted too
      }
    }
    fs.rmSync(work, { recursive: true, force: true });
    const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${dir}/`);
    if (!mounted) fs.rmSync(dir, { recursive: true, force: true });
    else console.error(`bench/io: could not unmount everything under ${dir}; left it in place`);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`bench/io: ${sig}: unmounting and cleaning up`);
    cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);

  const loadStart = os.loadavg().map((l) => +l.toFixed(2));
  const results: Record<string, Figures> = {};
  const errors: string[] = [];
  let holds = '';
  const t0 = Date.now();
  try {
    fs.mkdirSync(dir, { recursive: true });
    const inputs = await prepareInputs(work, scale);
    holds = inputs.holds;
    console.log(`bench/io on ${os.cpus().length} cores, node ${process.version}, Linux ${os.release()}; ${IMAGE_SIZE} images in ${dir}; ` +
      `load ${loadStart.join(' ')}${quick ? '; --quick' : ''}`);
    console.log(`tree: ${holds}; touch ${scale.touchFiles}; ${scale.sqliteInserts} inserts; ` +
      `sequential ${scale.seqMib} MiB; fio ${scale.fioMib} MiB file, ${scale.fioSeconds} s`);
    const ctx: Context = {
      scale, tar: inputs.tar, treeName: path.basename(scale.treeSource), touchList: inputs.touchList, sqlScript: inputs.sqlScript,
      dropCaches, mounted: (p) => meter.mounted(p), unmounting: (p) => meter.unmounting(p),
      extra: (p, figure, v) => { if (asked.includes('untar')) results[p.name]![figure] = +v.toFixed(3); },
    };
    const broken = new Set<PeerName>();
    for (const p of peers) {
      results[p.name] = {};
      fs.mkdirSync(p.mnt, { recursive: true });
      try {
        await p.mkfs();
      } catch (e) {
        errors.push(`${p.name}: mkfs: ${e instanceof Error ? e.message : String(e)}`);
        broken.add(p.name);
      }
    }
    for (const w of workloads) {
      const timed = asked.includes(w.key);
      meter.workload = w.key;
      for (const p of peers) {
        if (broken.has(p.name) || (p.name === 'floor' && !w.onFloor)) continue;
        const w0 = Date.now();
        try {
          const v = await w.run(p, ctx);
          if (timed) results[p.name]![w.figure] = w.unit === 's' ? +v.toFixed(3) : w.unit === 'IOPS' ? Math.round(v) : +v.toFixed(1);
          process.stderr.write(`  ${w.key} ${p.name}: ${fmt(v, w.unit)} ${w.unit}${timed ? '' : ' (set-up, not reported)'}\n`);
        } catch (e) {
          if (timed) results[p.name]![w.figure] = null;
          errors.push(`${p.name}: ${w.key}: ${e instanceof Error ? e.message : String(e)}`);
          process.stderr.write(`  ${w.key} ${p.name}: FAILED after ${((Date.now() - w0) / 1000).toFixed(1)} s\n`);
          p.release();
        }
      }
    }
  } catch (e) {
    console.error(`bench/io: ${e instanceof Error ? e.message : String(e)}`);
    cleanup();
    return 1;
  } finally {
    cleanup();
    for (const s of signals) process.off(s, onSignal);
  }

  // The table: one row per workload, a column per peer, then rmapfs/peer for each other peer.
  const reported = workloads.filter((w) => asked.includes(w.key));
  const others = peerNames.filter((p) => p !== 'rmapfs');
  const cols = [...peerNames.map((p) => p as string), ...(peerNames.includes('rmapfs') ? others.map((p) => `r/${p}`) : [])];
  console.log(`${'workload'.padEnd(34)}${cols.map((c) => c.padStart(10)).join('')}`);
  const ratioSets: Record<string, Record<string, number | null>> = {};
  for (const p of others) ratioSets[p] = {};
  for (const w of reported) {
    const cells = peerNames.map((p) => fmt(results[p]?.[w.figure], w.unit));
    if (peerNames.includes('rmapfs')) {
      for (const p of others) {
        const q = ratio(results.rmapfs?.[w.figure], results[p]?.[w.figure]);
        ratioSets[p]![w.key] = q;
        cells.push(q === null ? '-' : `${q.toFixed(2)}x`);
      }
    }
    console.log(`${`${w.label} (${w.unit})`.padEnd(34)}${cells.map((c) => c.padStart(10)).join('')}`);
    if (w.key === 'untar') {
      console.log(`${'  of which the unmount (s)'.padEnd(34)}${peerNames.map((p) => fmt(results[p]?.umount_after_untar_s, 's').padStart(10)).join('')}`);
    }
  }
  console.log('(r/peer = rmapfs figure / peer figure: for seconds below 1 is better, for MiB/s and IOPS above 1)');
  for (const p of peers.filter((q) => !q.persistent)) {
    console.log(`(${p.name}: in memory, mounted once: its untar has no unmount flush, its cold runs only had the kernel's caches dropped)`);
  }
  const hwmMib = (p: PeerName): number | null => (meter.hwmKib.has(p) ? +((meter.hwmKib.get(p) ?? 0) / 1024).toFixed(1) : null);
  const rmapfsHwm = hwmMib('rmapfs');
  if (rmapfsHwm !== null) console.log(`rmapfs daemon VmHWM (largest over the mounts): ${rmapfsHwm} MiB`);
  const cpu = Object.fromEntries(meter.cpu);
  const rmapfsCpu = reported.map((w) => `${w.key} ${cpu[`rmapfs/${w.key}`] ?? '-'}`).join(', ');
  if (peerNames.includes('rmapfs')) console.log(`rmapfs daemon CPU s per workload: ${rmapfsCpu}`);
  const loadEnd = os.loadavg().map((l) => +l.toFixed(2));
  const wallS = Math.round((Date.now() - t0) / 1000);
  console.log(`load average at start ${loadStart.join(' ')}, at end ${loadEnd.join(' ')}; ${wallS} s in all`);
  const barList = bars(results, reported);
  if (rmapfsHwm !== null) barList.push({ name: 'rmapfs daemon VmHWM < 300 MiB', ok: rmapfsHwm < 300, note: `${rmapfsHwm} MiB` });
  for (const b of barList) console.log(`${b.ok === null ? 'N/A ' : b.ok ? 'PASS' : 'MISS'}  ${b.name}: ${b.note}`);
  for (const e of errors) console.log(`ERROR ${e}`);
  console.log(JSON.stringify({
    bench: 'io', quick, rmapfs_options: rmapfsOptions, tree: holds, image_size: IMAGE_SIZE, ...results,
    ratios: ratioSets.fuse2fs ?? {}, ratios_ext4: ratioSets.ext4 ?? {}, ratios_xfs: ratioSets.xfs ?? {}, ratios_floor: ratioSets.floor ?? {},
    bars: Object.fromEntries(barList.map((b) => [b.name, b.ok])),
    daemon_max_rss_mib: rmapfsHwm, daemon_vmhwm_mib: Object.fromEntries(peerNames.map((p) => [p, hwmMib(p)])),
    daemon_cpu_s: cpu, load_start: loadStart, load_end: loadEnd, wall_s: wallS, errors,
  }));
  return errors.length > 0 ? 1 : 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(`bench/io: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exitCode = 1;
});
