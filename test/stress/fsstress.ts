/**
 * fsstress: a stress workload for a mounted filesystem, in the spirit of
 * fstests' ltp/fsstress. N processes (default 4) each do random operations
 * in their own subdirectory `pN` of the target directory -- create, write
 * (appends, overwrites, holes, O_APPEND), read (checked), truncate (shrink
 * and grow), rename (also over another name and across directories), link,
 * unlink, mkdir, rmdir, setxattr, removexattr, fsync, symlink -- for a fixed
 * number of operations or a fixed time. Every operation is chosen so that
 * it must succeed: any errno but ENOSPC is a failure.
 *
 * Deterministic by --seed: each process has its own random stream, and file
 * contents are a function of (write key, offset), so the model of what each
 * file holds is small; --verify reads everything back and compares, and
 * --manifest saves the model so that a later `--verify-only --manifest F`
 * (say after a remount) can compare again.
 *
 * Prints one summary line; exit status 0 clean, 1 a failure or a
 * difference, 2 usage.
 *
 *   node dist/test/stress/fsstress.js [-p N] [-n OPS | -d SECONDS] [-s SEED]
 *        [--verify] [--manifest FILE] [--no-xattr] [-v] DIR
 *   node dist/test/stress/fsstress.js --verify-only --manifest FILE DIR
 */
import { fork } from 'child_process';
import * as fs from 'fs';
import { OP_KINDS, Worker } from './worker';
import type { WorkerConfig, WorkerResult } from './worker';
import type { SerialModel } from './model';

const USAGE = `usage: fsstress [options] DIR
  -p, --procs N          processes (default 4), each in DIR/pN
  -n, --ops N            operations per process (default 10000 unless -d)
  -d, --duration SECONDS stop starting operations after this long
  -s, --seed N           random seed (default: from the clock; printed)
      --verify           read everything back at the end and compare with the model
      --manifest FILE    save the model there (after a run), or read it (--verify-only)
      --verify-only      no operations: compare DIR with the model in --manifest
      --no-xattr         no setxattr/removexattr
      --max-files N      files and symlinks per process (default 150)
      --max-file-size B  bytes (default 2097152)
      --max-bytes B      file bytes per process (default 25165824)
  -v, --verbose          every operation on stderr
  -h, --help`;

interface Options {
  procs: number;
  ops: number | null;
  duration: number | null;
  seed: number;
  verify: boolean;
  verifyOnly: boolean;
  manifest: string | null;
  xattrs: boolean;
  maxFiles: number;
  maxFileSize: number;
  maxBytes: number;
  verbose: boolean;
  dir: string;
}

class UsageError extends Error {}

function parse(argv: string[]): Options | null {
  const o: Options = {
    procs: 4, ops: null, duration: null, seed: Date.now() % 1000000, verify: false, verifyOnly: false, manifest: null,
    xattrs: true, maxFiles: 150, maxFileSize: 2 << 20, maxBytes: 24 << 20, verbose: false, dir: '',
  };
  const dirs: string[] = [];
  const num = (name: string, v: string | undefined, min: number): number => {
    const n = Number(v);
    if (v === undefined || v === '' || !Number.isFinite(n) || n < min) throw new UsageError(`${name} needs a number >= ${min}, not '${v ?? ''}'`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    switch (a) {
      case '-p': case '--procs': o.procs = Math.floor(num(a, next(), 1)); break;
      case '-n': case '--ops': o.ops = Math.floor(num(a, next(), 0)); break;
      case '-d': case '--duration': o.duration = num(a, next(), 0); break;
      case '-s': case '--seed': o.seed = Math.floor(num(a, next(), 0)); break;
      case '--verify': o.verify = true; break;
      case '--verify-only': o.verifyOnly = true; break;
      case '--manifest': o.manifest = next() ?? ''; if (o.manifest === '') throw new UsageError('--manifest needs a file'); break;
      case '--no-xattr': o.xattrs = false; break;
      case '--max-files': o.maxFiles = Math.floor(num(a, next(), 1)); break;
      case '--max-file-size': o.maxFileSize = Math.floor(num(a, next(), 1)); break;
      case '--max-bytes': o.maxBytes = Math.floor(num(a, next(), 1)); break;
      case '-v': case '--verbose': o.verbose = true; break;
      case '-h': case '--help': return null;
      default:
        if (a.startsWith('-')) throw new UsageError(`unknown option '${a}'`);
        dirs.push(a);
    }
  }
  if (dirs.length !== 1) throw new UsageError('give one target directory');
  o.dir = dirs[0]!;
  if (o.verifyOnly && o.manifest === null) throw new UsageError('--verify-only needs --manifest');
  if (o.ops === null && o.duration === null) o.ops = 10000;
  return o;
}

interface Manifest {
  seed: number;
  procs: number;
  models: SerialModel[];
}

function runWorker(cfg: WorkerConfig): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, ['--worker'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: WorkerResult | null = null;
    child.on('message', (m) => { result = m as WorkerResult; });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (result !== null) resolve(result);
      else reject(new Error(`process p${cfg.index} died (${signal ?? `exit ${code}`})`));
    });
    child.send(cfg);
  });
}

function mib(n: number): string {
  return `${(n / 1048576).toFixed(1)} MiB`;
}

async function main(argv: string[]): Promise<number> {
  let o: Options | null;
  try {
    o = parse(argv);
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`fsstress: ${e.message}\n${USAGE}\n`);
    return 2;
  }
  if (o === null) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (!fs.existsSync(o.dir) || !fs.statSync(o.dir).isDirectory()) {
    process.stderr.write(`fsstress: ${o.dir} is not a directory\n`);
    return 2;
  }
  let models: (SerialModel | undefined)[] = [];
  if (o.verifyOnly) {
    try {
      const m = JSON.parse(fs.readFileSync(o.manifest!, 'utf8')) as Manifest;
      models = m.models;
      o.procs = m.models.length;
      o.seed = m.seed;
    } catch (e) {
      process.stderr.write(`fsstress: cannot read the manifest ${o.manifest}: ${e instanceof Error ? e.message : String(e)}\n`);
      return 2;
    }
  }
  const start = Date.now();
  const deadline = o.duration === null ? null : start + o.duration * 1000;
  const configs: WorkerConfig[] = [];
  for (let i = 0; i < o.procs; i++) {
    const cfg: WorkerConfig = {
      index: i, seed: o.seed, dir: o.dir, ops: o.ops, deadline, verify: o.verify || o.verifyOnly, xattrs: o.xattrs,
      maxFiles: o.maxFiles, maxFileSize: o.maxFileSize, maxBytes: o.maxBytes, verbose: o.verbose,
    };
    const model = models[i];
    if (model !== undefined) cfg.model = model;
    configs.push(cfg);
  }
  let results: WorkerResult[];
  try {
    results = await Promise.all(configs.map(runWorker));
  } catch (e) {
    process.stderr.write(`fsstress: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const seconds = (Date.now() - start) / 1000;
  const sum = (f: (r: WorkerResult) => number): number => results.reduce((a, r) => a + f(r), 0);
  const failures = sum((r) => r.failures);
  const notes = [...new Set(results.map((r) => r.xattrNote).filter((x): x is string => x !== null))];
  let line: string;
  const verified = results.every((r) => r.verify !== null)
    ? `; verify: ${sum((r) => r.verify!.files)} files, ${mib(sum((r) => r.verify!.bytes))}, ${sum((r) => r.verify!.differences)} differences`
    : '';
  if (o.verifyOnly) {
    line = `fsstress: verify-only, seed ${o.seed}, ${o.procs} procs, ${seconds.toFixed(1)} s${verified}; failures ${failures}`;
  } else {
    const kinds = OP_KINDS.map((k) => `${k} ${sum((r) => r.counts[k] ?? 0)}`).join(', ');
    line = `fsstress: seed ${o.seed}, ${o.procs} procs, ${seconds.toFixed(1)} s, ${sum((r) => r.ops)} ops (${kinds}), `
      + `enospc ${sum((r) => r.enospc)}; now ${sum((r) => r.files)} files (${mib(sum((r) => r.bytes))}), `
      + `${sum((r) => r.dirs)} dirs, ${sum((r) => r.symlinks)} symlinks${verified}; failures ${failures}`
      + (notes.length > 0 ? ` (${notes.join('; ')})` : '');
    if (o.manifest !== null) {
      const m: Manifest = { seed: o.seed, procs: o.procs, models: results.map((r) => r.model) };
      fs.writeFileSync(o.manifest, JSON.stringify(m));
    }
  }
  process.stdout.write(`${line}\n`);
  return failures === 0 ? 0 : 1;
}

async function worker(): Promise<void> {
  const cfg = await new Promise<WorkerConfig>((resolve) => process.once('message', (m) => resolve(m as WorkerConfig)));
  const result = await new Worker(cfg).run();
  process.send!(result, () => process.disconnect());
}

if (process.argv[2] === '--worker') {
  worker().catch((e: unknown) => {
    process.stderr.write(`fsstress: worker: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exit(1);
  });
} else {
  main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
    process.stderr.write(`fsstress: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
    process.exitCode = 1;
  });
}
