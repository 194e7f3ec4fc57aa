/**
 * bench/io: the same I/O and metadata workloads on rmapfs and on fuse2fs
 * (ext4 over FUSE) serving an image of the same size on the same disk.
 *
 * Each workload runs on a fresh mount (unmount, sync, drop caches, mount):
 *   seq_write_mibs   dd 1 GiB of zeros, conv=fsync
 *   seq_read_mibs    dd that file back to /dev/null
 *   rand_write_iops  fio psync 4 KiB random writes on a 256 MiB file, 20 s (5 s with --quick)
 *   rand_read_iops   the same, random reads
 *   create_ps        10,000 empty files created in one directory (one process, timed inside)
 *   stat_ps          then stat each of them
 *   unlink_ps        then unlink each of them
 * While rmapfs serves, the daemon's VmRSS/VmHWM is sampled every 200 ms.
 *
 * Installs fuse2fs, fio and e2fsprogs with apt-get when missing. Images live
 * in $RMAPFS_BENCH_DIR/rmapfs-bench-io-PID (default /var/tmp), removed at the
 * end; mountpoints are unmounted at the end, also on failure or Ctrl-C.
 * Prints one line per figure (rmapfs, fuse2fs, rmapfs/fuse2fs), PASS/MISS
 * lines for the bars, and one JSON object as the last line.
 *
 * Usage: node dist/bench/io/main.js [--quick]   (as root)
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const MIB = 1024 * 1024;
const IMAGE_SIZE = '4G';
const SEQ_MIB = 1024;
const META_FILES = 10_000;
const RMAPFS_BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');

// ---------------------------------------------------------------------------
// Processes

interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

/** Runs a command without blocking the event loop (so the RSS sampler keeps sampling). */
function run(cmd: string, args: string[], timeoutMs = 30 * 60_000): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
    });
  });
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

/** Runs a command and throws with its first line of stderr if it fails. */
async function must(cmd: string, args: string[], timeoutMs?: number): Promise<RunResult> {
  const r = await run(cmd, args, timeoutMs);
  if (r.status !== 0) {
    const why = firstLine(r.stderr) || firstLine(r.stdout) || (r.signal !== null ? `killed by ${r.signal}` : `exit ${r.status}`);
    throw new Error(`${path.basename(cmd)} ${args.join(' ')}: ${why}`);
  }
  return r;
}

function onPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Pids of processes whose argv contains every one of `words` (exact arguments). */
function findProcesses(words: string[]): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let argv: string[];
    try {
      argv = fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (words.every((w) => argv.some((a) => a === w || path.basename(a) === w))) pids.push(Number(entry));
  }
  return pids;
}

function alive(pid: number): boolean {
  try {
    return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false;
  }
}

async function waitGone(pids: number[], timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (pids.some(alive)) {
    if (Date.now() > until) return false;
    await sleep(100);
  }
  return true;
}

// ---------------------------------------------------------------------------
// Mounts

function unescapeMount(s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

function isMounted(mnt: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  return text.split('\n').some((line) => line.split(' ')[4] !== undefined && unescapeMount(line.split(' ')[4]!) === mnt);
}

async function dropCaches(): Promise<void> {
  await run('sync', []);
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
  } catch (e) {
    console.error(`bench/io: cannot drop caches (${e instanceof Error ? e.message : String(e)}); figures may be cached`);
  }
}

/** The daemon's memory: the largest VmRSS sampled and the last VmHWM seen (KiB). */
class RssSampler {
  maxKib = 0;
  private timer: NodeJS.Timeout | null = null;
  private pid = 0;

  start(pid: number): void {
    this.stop();
    this.pid = pid;
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
  }

  sample(): void {
    if (this.pid === 0) return;
    let status: string;
    try {
      status = fs.readFileSync(`/proc/${this.pid}/status`, 'utf8');
    } catch {
      return;
    }
    for (const field of ['VmRSS', 'VmHWM']) {
      const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status);
      if (m !== null) this.maxKib = Math.max(this.maxKib, Number(m[1]));
    }
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    this.pid = 0;
  }
}

interface FsUnderTest {
  name: 'rmapfs' | 'fuse2fs';
  image: string;
  mnt: string;
  mkfs(): Promise<void>;
  mount(): Promise<void>;
  umount(): Promise<void>;
  /** Synchronous last-resort unmount (signal handlers, finally). */
  forceUmount(): void;
}

function daemonPids(fsut: FsUnderTest): number[] {
  return fsut.name === 'rmapfs' ? findProcesses(['mount', '-f', fsut.image, fsut.mnt]) : findProcesses(['fuse2fs', fsut.image, fsut.mnt]);
}

function lazyUmount(mnt: string): void {
  if (!isMounted(mnt)) return;
  spawnSync('fusermount', ['-u', mnt], { stdio: 'ignore' });
  if (isMounted(mnt)) spawnSync('fusermount', ['-uz', mnt], { stdio: 'ignore' });
}

function rmapfsUnderTest(dir: string, sampler: RssSampler): FsUnderTest {
  const image = path.join(dir, 'rmapfs.img');
  const mnt = path.join(dir, 'mnt-rmapfs');
  const self: FsUnderTest = {
    name: 'rmapfs', image, mnt,
    async mkfs() {
      await must(process.execPath, [RMAPFS_BIN, 'mkfs', '--size', IMAGE_SIZE, image]);
    },
    async mount() {
      await must(process.execPath, [RMAPFS_BIN, 'mount', image, mnt], 120_000);
      if (!isMounted(mnt)) throw new Error(`rmapfs mount returned but ${mnt} is not mounted`);
      const pids = daemonPids(self);
      if (pids.length !== 1) throw new Error(`expected one rmapfs daemon for ${image}, found ${pids.length}`);
      sampler.start(pids[0]!);
    },
    async umount() {
      const pids = daemonPids(self);
      sampler.sample();
      const r = await run(process.execPath, [RMAPFS_BIN, 'umount', mnt], 180_000);
      sampler.stop();
      if (r.status !== 0) throw new Error(`rmapfs umount ${mnt}: ${firstLine(r.stderr)}`);
      if (!(await waitGone(pids, 60_000))) throw new Error(`the rmapfs daemon for ${mnt} did not exit`);
    },
    forceUmount() {
      sampler.stop();
      if (!isMounted(mnt)) return;
      spawnSync(process.execPath, [RMAPFS_BIN, 'umount', mnt], { stdio: 'ignore', timeout: 120_000 });
      lazyUmount(mnt);
    },
  };
  return self;
}

function fuse2fsUnderTest(dir: string): FsUnderTest {
  const image = path.join(dir, 'ext4.img');
  const mnt = path.join(dir, 'mnt-fuse2fs');
  const self: FsUnderTest = {
    name: 'fuse2fs', image, mnt,
    async mkfs() {
      fs.writeFileSync(image, '');
      await must('truncate', ['-s', IMAGE_SIZE, image]);
      await must('mkfs.ext4', ['-F', '-q', image]);
    },
    async mount() {
      // fuse2fs daemonizes once the mount is in place.
      await must('fuse2fs', [image, mnt, '-o', 'fakeroot'], 120_000);
      const until = Date.now() + 10_000;
      while (!isMounted(mnt)) {
        if (Date.now() > until) throw new Error(`fuse2fs returned but ${mnt} is not mounted`);
        await sleep(50);
      }
    },
    async umount() {
      const pids = daemonPids(self);
      await must('fusermount', ['-u', mnt], 180_000);
      if (!(await waitGone(pids, 180_000))) throw new Error(`fuse2fs for ${mnt} did not exit`);
    },
    forceUmount() {
      lazyUmount(mnt);
    },
  };
  return self;
}

// ---------------------------------------------------------------------------
// Workloads

interface Figures {
  seq_write_mibs: number;
  seq_read_mibs: number;
  rand_write_iops: number;
  rand_read_iops: number;
  create_ps: number;
  stat_ps: number;
  unlink_ps: number;
}

/** The metadata workload, run as one child process so process start-up is not timed. */
const META_SCRIPT = `
const fs = require('fs');
const path = require('path');
const dir = process.argv[1];
const n = Number(process.argv[2]);
fs.mkdirSync(dir);
const names = [];
for (let i = 0; i < n; i++) names.push(path.join(dir, 'f' + i));
const rate = (t0) => Math.round(n / (Number(process.hrtime.bigint() - t0) / 1e9));
let t0 = process.hrtime.bigint();
for (const p of names) fs.closeSync(fs.openSync(p, 'wx'));
const create = rate(t0);
// Let the kernel's attribute and name caches (1 s on rmapfs, none on fuse2fs) expire: measure the filesystem.
const pause = () => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1200);
pause();
t0 = process.hrtime.bigint();
for (const p of names) if (!fs.statSync(p).isFile()) throw new Error(p + ' is not a file');
const stat = rate(t0);
pause();
t0 = process.hrtime.bigint();
for (const p of names) fs.unlinkSync(p);
const unlink = rate(t0);
fs.rmdirSync(dir);
console.log(JSON.stringify({ create, stat, unlink }));
`;

function fioIops(stdout: string, kind: 'read' | 'write'): number {
  const start = stdout.indexOf('{');
  if (start < 0) throw new Error('fio printed no JSON');
  const parsed = JSON.parse(stdout.slice(start)) as { jobs?: { read?: { iops?: number }; write?: { iops?: number } }[] };
  const iops = parsed.jobs?.[0]?.[kind]?.iops;
  if (typeof iops !== 'number') throw new Error(`fio JSON has no jobs[0].${kind}.iops`);
  return Math.round(iops);
}

async function fio(file: string, rw: 'randwrite' | 'randread', runtime: number): Promise<number> {
  const r = await must('fio', [`--name=${rw}`, '--ioengine=psync', '--iodepth=1', '--bs=4k', `--rw=${rw}`, '--size=256M',
    `--runtime=${runtime}`, '--time_based', '--direct=0', `--filename=${file}`, '--output-format=json'], (runtime + 600) * 1000);
  return fioIops(r.stdout, rw === 'randwrite' ? 'write' : 'read');
}

async function phase<T>(fsut: FsUnderTest, label: string, body: () => Promise<T>): Promise<T> {
  await dropCaches();
  await fsut.mount();
  let result: T;
  try {
    result = await body();
  } finally {
    await fsut.umount();
  }
  process.stderr.write(`  ${fsut.name}: ${label} done\n`);
  return result;
}

async function runAll(fsut: FsUnderTest, fioRuntime: number): Promise<Figures> {
  fs.mkdirSync(fsut.mnt, { recursive: true });
  await fsut.mkfs();
  const seq = path.join(fsut.mnt, 'seq');
  const seqWrite = await phase(fsut, 'sequential write', async () => {
    const r = await must('dd', ['if=/dev/zero', `of=${seq}`, 'bs=1M', `count=${SEQ_MIB}`, 'conv=fsync']);
    return SEQ_MIB / r.seconds;
  });
  const seqRead = await phase(fsut, 'sequential read', async () => {
    const size = fs.statSync(seq).size;
    if (size !== SEQ_MIB * MIB) throw new Error(`${seq} is ${size} bytes after remount, not ${SEQ_MIB * MIB}`);
    const r = await must('dd', [`if=${seq}`, 'of=/dev/null', 'bs=1M']);
    return SEQ_MIB / r.seconds;
  });
  const fioFile = path.join(fsut.mnt, 'fio');
  const randWrite = await phase(fsut, 'random write', () => fio(fioFile, 'randwrite', fioRuntime));
  const randRead = await phase(fsut, 'random read', () => fio(fioFile, 'randread', fioRuntime));
  const meta = await phase(fsut, 'metadata', async () => {
    const r = await must(process.execPath, ['-e', META_SCRIPT, path.join(fsut.mnt, 'meta'), String(META_FILES)]);
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as { create: number; stat: number; unlink: number };
  });
  return {
    seq_write_mibs: +seqWrite.toFixed(1),
    seq_read_mibs: +seqRead.toFixed(1),
    rand_write_iops: randWrite,
    rand_read_iops: randRead,
    create_ps: meta.create,
    stat_ps: meta.stat,
    unlink_ps: meta.unlink,
  };
}

// ---------------------------------------------------------------------------
// Set-up, clean-up, report

async function ensureTools(): Promise<boolean> {
  const missing = ['fuse2fs', 'fio', 'mkfs.ext4', 'fusermount'].filter((t) => !onPath(t));
  if (missing.length === 0) return true;
  const packages = ['fuse2fs', 'fio', 'e2fsprogs'];
  console.log(`bench/io: ${missing.join(', ')} missing: apt-get install -y ${packages.join(' ')}`);
  const apt = (args: string[]): Promise<RunResult> =>
    run('env', ['DEBIAN_FRONTEND=noninteractive', 'apt-get', ...args], 20 * 60_000);
  let r = await apt(['install', '-y', '-qq', ...packages]);
  if (r.status !== 0) {
    console.log('bench/io: apt-get install failed; apt-get update, then again');
    await apt(['update', '-qq']);
    r = await apt(['install', '-y', '-qq', ...packages]);
  }
  const still = ['fuse2fs', 'fio', 'mkfs.ext4', 'fusermount'].filter((t) => !onPath(t));
  if (r.status !== 0 || still.length > 0) {
    const why = r.status !== 0 ? firstLine(r.stderr.split('\n').filter((l) => /^E:/.test(l)).join('\n') || r.stderr) : `still missing: ${still.join(', ')}`;
    console.error(`bench/io: cannot install ${packages.join(' ')}: ${why}`);
    return false;
  }
  return true;
}

function ratio(a: number, b: number): number {
  return b > 0 ? +(a / b).toFixed(2) : 0;
}

async function main(argv: string[]): Promise<number> {
  const quick = argv.includes('--quick');
  const fioRuntime = quick ? 5 : 20;
  if (process.getuid?.() !== 0) {
    console.error('bench/io: run as root (it mounts FUSE filesystems, drops caches and may apt-get install)');
    return 1;
  }
  if (!(await ensureTools())) return 1;

  const base = process.env.RMAPFS_BENCH_DIR ?? '/var/tmp';
  const dir = path.join(base, `rmapfs-bench-io-${process.pid}`);
  const sampler = new RssSampler();
  const targets = [rmapfsUnderTest(dir, sampler), fuse2fsUnderTest(dir)];
  let cleaned = false;
  const cleanup = (): void => {
    if (cleaned) return;
    cleaned = true;
    sampler.stop();
    for (const t of targets) {
      try {
        t.forceUmount();
      } catch {
        // keep going: the others must be unmounted too
      }
    }
    if (targets.every((t) => !isMounted(t.mnt))) fs.rmSync(dir, { recursive: true, force: true });
    else console.error(`bench/io: could not unmount everything under ${dir}; left it in place`);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    console.error(`bench/io: ${sig}: unmounting and cleaning up`);
    cleanup();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);

  console.log(`bench/io on ${os.cpus().length} cores, node ${process.version}, ${os.release()}; ` +
    `${IMAGE_SIZE} images in ${dir}; fio ${fioRuntime} s per pattern`);
  const results: Partial<Record<'rmapfs' | 'fuse2fs', Figures>> = {};
  try {
    fs.mkdirSync(dir, { recursive: true });
    for (const t of targets) {
      process.stderr.write(`${t.name}:\n`);
      results[t.name] = await runAll(t, fioRuntime);
      fs.rmSync(t.image, { force: true }); // free the disk space before the next one
    }
  } catch (e) {
    console.error(`bench/io: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  } finally {
    cleanup();
    for (const s of signals) process.off(s, onSignal);
  }

  const r = results.rmapfs!;
  const f = results.fuse2fs!;
  const rows: [keyof Figures, string, string][] = [
    ['seq_write_mibs', 'seq_write', 'sequential write MiB/s'],
    ['seq_read_mibs', 'seq_read', 'sequential read MiB/s'],
    ['rand_write_iops', 'rand_write', 'random 4 KiB write IOPS'],
    ['rand_read_iops', 'rand_read', 'random 4 KiB read IOPS'],
    ['create_ps', 'create', 'create files/s'],
    ['stat_ps', 'stat', 'stat files/s'],
    ['unlink_ps', 'unlink', 'unlink files/s'],
  ];
  const ratios: Record<string, number> = {};
  console.log(`${'figure'.padEnd(26)}${'rmapfs'.padStart(12)}${'fuse2fs'.padStart(12)}${'ratio'.padStart(9)}`);
  for (const [key, short, label] of rows) {
    ratios[short] = ratio(r[key], f[key]);
    console.log(`${label.padEnd(26)}${String(r[key]).padStart(12)}${String(f[key]).padStart(12)}${ratios[short]!.toFixed(2).padStart(9)}`);
  }
  const rssMib = +(sampler.maxKib / 1024).toFixed(1);
  console.log(`${'rmapfs daemon max RSS MiB'.padEnd(26)}${String(rssMib).padStart(12)}`);

  const bars: [string, boolean][] = [
    ['sequential write >= 1.5x fuse2fs', ratios.seq_write! >= 1.5],
    ['sequential read >= 1.0x fuse2fs', ratios.seq_read! >= 1.0],
    ['random 4 KiB write >= 1.0x fuse2fs', ratios.rand_write! >= 1.0],
    ['create >= 2.0x fuse2fs', ratios.create! >= 2.0],
    ['stat >= 2.0x fuse2fs', ratios.stat! >= 2.0],
    ['unlink >= 2.0x fuse2fs', ratios.unlink! >= 2.0],
    ['daemon RSS < 300 MiB', rssMib < 300],
  ];
  for (const [name, ok] of bars) console.log(`${ok ? 'PASS' : 'MISS'}  ${name}`);
  console.log(JSON.stringify({ rmapfs: r, fuse2fs: f, ratios, daemon_max_rss_mib: rssMib }));
  return 0;
}

main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  console.error(`bench/io: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
  process.exitCode = 1;
});
