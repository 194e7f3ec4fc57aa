/**
 * fsx: a random-operation data checker for one file on a mounted rmapfs, in
 * the manner of fstests' fsx. A model holds every byte the file must hold
 * and its size; each operation goes to the file and to the model, every read
 * is compared with the model, the size is compared after every operation,
 * and the whole file every --check-every operations, after each remount and
 * at the end.
 *
 * Operations: read, write, mmap read, mmap write (msync), truncate down and
 * up, fallocate (mode 0, KEEP_SIZE, PUNCH_HOLE|KEEP_SIZE, ZERO_RANGE with
 * and without KEEP_SIZE), O_DIRECT read and write (block aligned), fsync,
 * close and reopen; a remount (unmount, mount again) every --remount-every
 * operations when --image is given. --repair runs `rmapfs repair MNT` in a
 * loop beside it (stopped around remounts; every repair must exit 0, clean).
 *
 * Deterministic by --seed. On a mismatch it prints the operation, the first
 * differing offset and the last operations (the log), and exits 1; usage 2.
 *
 *   node dist/test/stress/fsx.js [--ops N] [--seed S] [--max-size B]
 *     [--check-every N] [--image IMG --remount-every N] [--repair] [--no-mmap]
 *     [--no-direct] [--no-fallocate] [-v] MNT
 */
import { spawn, spawnSync } from 'child_process';
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import { native } from '../../src/native';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import { Rng } from '../lib/rng';
import { fallocated, resized, written } from '../lib/file-model';

const RMAPFS = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');
const BLOCK = 4096;
const LOG_KEPT = 40;

const USAGE = `usage: fsx [options] MNT
  --ops N             operations (default 10000)
  --seed S            random seed (default 1)
  --max-size B        largest file size (default 262144)
  --check-every N     compare the whole file every N operations (default 1000)
  --image IMG         the mounted image: allows remounts
  --remount-every N   unmount and mount again every N operations (default 2000, with --image)
  --repair            run 'rmapfs repair MNT' in a loop beside the operations
  --no-mmap, --no-direct, --no-fallocate   leave those operations out
  -v, --verbose       every operation on stderr`;

type OpName = 'read' | 'write' | 'mapread' | 'mapwrite' | 'truncate' | 'falloc' | 'falloc-keep' | 'punch' | 'zero' | 'zero-keep'
  | 'dread' | 'dwrite' | 'fsync' | 'reopen';

class Mismatch extends Error {}

interface Config {
  mnt: string;
  ops: number;
  seed: number;
  maxSize: number;
  checkEvery: number;
  image: string | null;
  remountEvery: number;
  repair: boolean;
  kinds: OpName[];
  verbose: boolean;
}

function parse(argv: string[]): Config {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: {
      ops: { type: 'string' }, seed: { type: 'string' }, 'max-size': { type: 'string' }, 'check-every': { type: 'string' },
      image: { type: 'string' }, 'remount-every': { type: 'string' }, repair: { type: 'boolean' },
      'no-mmap': { type: 'boolean' }, 'no-direct': { type: 'boolean' }, 'no-fallocate': { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help === true || positionals.length !== 1) throw new Error(USAGE);
  const num = (v: string | undefined, d: number, what: string): number => {
    if (v === undefined) return d;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`fsx: bad ${what} '${v}'`);
    return n;
  };
  let names: OpName[] = ['read', 'write', 'mapread', 'mapwrite', 'truncate', 'falloc', 'falloc-keep', 'punch', 'zero', 'zero-keep',
    'dread', 'dwrite', 'fsync', 'reopen'];
  if (values['no-mmap'] === true) names = names.filter((n) => !n.startsWith('map'));
  if (values['no-direct'] === true) names = names.filter((n) => n !== 'dread' && n !== 'dwrite');
  if (values['no-fallocate'] === true) names = names.filter((n) => !/falloc|punch|zero/.test(n));
  const maxSize = num(values['max-size'], 262144, '--max-size');
  if (maxSize < BLOCK) throw new Error(`fsx: --max-size must be at least ${BLOCK}`);
  return {
    mnt: positionals[0]!, ops: num(values.ops, 10000, '--ops'), seed: num(values.seed, 1, '--seed'), maxSize,
    checkEvery: Math.max(1, num(values['check-every'], 1000, '--check-every')), image: values.image ?? null,
    remountEvery: num(values['remount-every'], 2000, '--remount-every'), repair: values.repair === true, kinds: names,
    verbose: values.verbose === true,
  };
}

/** `rmapfs repair MNT` over and over, beside the operations; every run must end clean (exit 0). */
class RepairLoop {
  private child: ChildProcess | null = null;
  runs = 0;
  failure: string | null = null;

  constructor(private readonly mnt: string) {}

  start(): void {
    const loop = `n=0; while :; do "$0" repair --force-rebuild "$1" >/dev/null 2>"$2" || { echo "repair exit $? after $n runs: $(tail -1 "$2")"; exit 1; }; n=$((n+1)); echo "$n" > "$2.runs"; done`;
    const err = path.join(fs.mkdtempSync('/tmp/rmapfs-fsx-repair-'), 'err');
    this.child = spawn('bash', ['-c', loop, RMAPFS, this.mnt, err], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    this.child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const child = this.child;
    child.on('exit', (code) => {
      try {
        this.runs += Number(fs.readFileSync(`${err}.runs`, 'utf8'));
      } catch { /* no run finished */ }
      fs.rmSync(path.dirname(err), { recursive: true, force: true });
      if (code !== null && code !== 0 && this.failure === null) this.failure = out.trim() || `repair loop exit ${code}`;
    });
  }

  /** Stops the loop and waits for its repair to end (a remount must not find one running). */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = null;
    if (child === null || child.exitCode !== null) return;
    const done = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    child.kill('SIGTERM');
    await done;
  }
}

export class Fsx {
  private readonly rng: Rng;
  private model: Buffer = Buffer.alloc(0);
  private fd = -1;
  private readonly file: string;
  private readonly log: string[] = [];
  private readonly counts = new Map<OpName | 'remount', number>();
  private readonly repair: RepairLoop | null;

  constructor(private readonly cfg: Config) {
    this.rng = new Rng(cfg.seed);
    this.file = path.join(cfg.mnt, `fsx.${cfg.seed}`);
    this.repair = cfg.repair ? new RepairLoop(cfg.mnt) : null;
  }

  private note(text: string): void {
    this.log.push(text);
    if (this.log.length > LOG_KEPT) this.log.shift();
    if (this.cfg.verbose) process.stderr.write(`${text}\n`);
  }

  private open(): void {
    this.fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
  }

  private close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private fill(len: number): Buffer {
    const b = Buffer.allocUnsafe(len);
    for (let i = 0; i < len; i++) b[i] = 1 + this.rng.int(255);
    return b;
  }

  private compare(got: Buffer, at: number, what: string): void {
    const want = this.model.subarray(at, at + got.length);
    if (got.length !== want.length) throw new Mismatch(`${what}: read ${got.length} bytes at ${at}, the model has ${want.length}`);
    if (got.equals(want)) return;
    let i = 0;
    while (got[i] === want[i]) i++;
    throw new Mismatch(`${what}: byte ${at + i} is ${got[i]}, the model says ${want[i]}`);
  }

  private checkSize(what: string): void {
    const size = fs.fstatSync(this.fd).size;
    if (size !== this.model.length) throw new Mismatch(`${what}: size ${size}, the model says ${this.model.length}`);
  }

  private checkAll(what: string): void {
    this.checkSize(what);
    const b = Buffer.alloc(this.model.length);
    const n = fs.readSync(this.fd, b, 0, b.length, 0);
    this.compare(b.subarray(0, n), 0, `${what}: whole file`);
  }

  /** A range: offsets anywhere up to the largest size, lengths up to a quarter of it, often unaligned. */
  private range(aligned: boolean): { at: number; len: number } {
    const max = this.cfg.maxSize;
    if (aligned) {
      const blocks = max / BLOCK;
      const at = this.rng.int(blocks) * BLOCK;
      return { at, len: Math.min(1 + this.rng.int(Math.max(1, blocks / 4)), (max - at) / BLOCK) * BLOCK };
    }
    const at = this.rng.int(max);
    return { at, len: Math.min(1 + this.rng.int(max / 4), max - at) };
  }

  private step(op: OpName): void {
    const size = this.model.length;
    switch (op) {
      case 'read': case 'mapread': {
        if (size === 0) return this.note(`${op}: empty file, skipped`);
        const at = this.rng.int(size);
        const len = 1 + this.rng.int(Math.min(size - at, this.cfg.maxSize / 4));
        this.note(`${op} ${at} +${len}`);
        const b = Buffer.alloc(len);
        if (op === 'read') this.compare(b.subarray(0, fs.readSync(this.fd, b, 0, len, at)), at, op);
        else {
          native.mmapCopy(this.fd, b, at, false);
          this.compare(b, at, op);
        }
        return;
      }
      case 'write': case 'mapwrite': {
        const { at, len } = this.range(false);
        this.note(`${op} ${at} +${len}${at + len > size ? ` (size ${size} -> ${at + len})` : ''}`);
        const data = this.fill(len);
        if (op === 'write') {
          if (fs.writeSync(this.fd, data, 0, len, at) !== len) throw new Mismatch(`${op}: short write`);
        } else {
          // A mapping reaches only as far as the file: grow it first, as fsx does.
          if (at + len > size) fs.ftruncateSync(this.fd, at + len);
          native.mmapCopy(this.fd, data, at, true);
        }
        this.model = written(this.model, at, data);
        return;
      }
      case 'truncate': {
        const to = this.rng.next() < 0.5 ? this.rng.int(this.cfg.maxSize + 1) : this.rng.int(size + 1);
        this.note(`truncate ${size} -> ${to}`);
        fs.ftruncateSync(this.fd, to);
        this.model = resized(this.model, to);
        return;
      }
      case 'falloc': case 'falloc-keep': case 'punch': case 'zero': case 'zero-keep': {
        const { at, len } = this.range(this.rng.next() < 0.3);
        const mode = { falloc: 0, 'falloc-keep': FALLOC_FL_KEEP_SIZE, punch: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
          zero: FALLOC_FL_ZERO_RANGE, 'zero-keep': FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE }[op];
        this.note(`${op} ${at} +${len} (size ${size})`);
        native.fallocate(this.fd, mode, at, len);
        this.model = fallocated(this.model, mode, at, len);
        return;
      }
      case 'dread': case 'dwrite': {
        const { at, len } = this.range(true);
        if (op === 'dread' && at >= size) return this.note(`dread ${at}: past EOF ${size}, skipped`);
        this.note(`${op} ${at} +${len} (size ${size})`);
        const fd = fs.openSync(this.file, fs.constants.O_RDWR | fs.constants.O_DIRECT);
        try {
          const b = native.alignedBuffer(len, BLOCK);
          if (op === 'dread') {
            const n = fs.readSync(fd, b, 0, len, at);
            this.compare(b.subarray(0, n), at, op);
          } else {
            this.fill(len).copy(b);
            if (fs.writeSync(fd, b, 0, len, at) !== len) throw new Mismatch(`${op}: short write`);
            this.model = written(this.model, at, b);
          }
        } finally {
          fs.closeSync(fd);
        }
        return;
      }
      case 'fsync':
        this.note('fsync');
        fs.fsyncSync(this.fd);
        return;
      case 'reopen':
        this.note('close and open');
        this.close();
        this.open();
        return;
    }
  }

  private async remount(): Promise<void> {
    this.note('remount');
    this.close();
    await this.repair?.stop();
    const run = (args: string[]): void => {
      const r = spawnSync(RMAPFS, args, { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`rmapfs ${args.join(' ')}: exit ${r.status}: ${(r.stderr ?? '').trim()}`);
    };
    run(['umount', this.cfg.mnt]);
    run(['mount', this.cfg.image!, this.cfg.mnt]);
    this.repair?.start();
    this.open();
    this.checkAll('after a remount');
  }

  async run(): Promise<{ ok: boolean; line: string }> {
    this.open();
    fs.ftruncateSync(this.fd, 0);
    this.repair?.start();
    let done = 0;
    try {
      for (; done < this.cfg.ops; done++) {
        if (this.cfg.image !== null && this.cfg.remountEvery > 0 && done > 0 && done % this.cfg.remountEvery === 0) {
          await this.remount();
          this.counts.set('remount', (this.counts.get('remount') ?? 0) + 1);
        }
        const op = this.cfg.kinds[this.rng.int(this.cfg.kinds.length)]!;
        try {
          this.step(op);
        } catch (e) {
          if (e instanceof Mismatch) throw e;
          throw new Mismatch(`${op}: ${e instanceof Error ? e.message : String(e)}`);
        }
        this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
        this.checkSize(op);
        if ((done + 1) % this.cfg.checkEvery === 0) this.checkAll(`after operation ${done + 1}`);
        // Let the repair loop's output and exit reach us now and then.
        if (this.repair !== null && done % 256 === 0) await new Promise((r) => setImmediate(r));
        if (this.repair?.failure != null) throw new Mismatch(`beside operation ${done + 1}: ${this.repair.failure}`);
      }
      this.checkAll('at the end');
    } catch (e) {
      if (!(e instanceof Mismatch)) throw e;
      await this.repair?.stop();
      this.close();
      return { ok: false, line: `fsx seed ${this.cfg.seed}: FAIL at operation ${done + 1}: ${e.message}\nlast operations:\n  ${this.log.join('\n  ')}` };
    }
    await this.repair?.stop();
    this.close();
    if (this.repair?.failure != null) return { ok: false, line: `fsx seed ${this.cfg.seed}: ${this.repair.failure}` };
    // A loop that never finished a repair tested nothing beside the operations.
    if (this.repair !== null && this.repair.runs === 0) return { ok: false, line: `fsx seed ${this.cfg.seed}: no repair finished beside ${done} operations` };
    const counts = [...this.counts].sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => `${k} ${v}`).join(', ');
    return {
      ok: true,
      line: `fsx seed ${this.cfg.seed}: ${done} operations, 0 mismatches (${counts})${this.repair !== null ? `; ${this.repair.runs} repairs beside` : ''}`,
    };
  }
}

async function main(): Promise<void> {
  let cfg: Config;
  try {
    cfg = parse(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  }
  const r = await new Fsx(cfg).run();
  process.stdout.write(`${r.line}\n`);
  process.exit(r.ok ? 0 : 1);
}

if (require.main === module) void main();
