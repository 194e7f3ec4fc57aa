/**
 * A workload rich in every fallocate mode, for the crash tests (regress
 * 132), run against a mount made with -o writelog=FILE: files in churn
 * directories get preallocations (mode 0 and KEEP_SIZE), punched holes, zero
 * ranges (with and without KEEP_SIZE), writes into preallocated and punched
 * space, truncates, unlinks and fsyncs; and every few operations a durable
 * file is built the same way -- a random mix of those on a model of its
 * bytes -- fsync'ed, then never touched again, and announced to the write log
 * with a mark "fsync PATH SHA256 SIZE", which replay-check demands at every
 * later crash point.
 *
 *   node dist/test/crash/falloc-workload.js MOUNTPOINT [--ops N] [--seed S] [--durable-every K]
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { parseArgs } from 'util';
import { ctlRequest } from '../../src/ctl/ctl';
import { native } from '../../src/native';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE } from '../../src/file/fallocate';
import { Rng } from '../lib/rng';
import { fallocated, resized, written } from '../lib/file-model';

const B = 4096;
const MODES: Record<string, number> = {
  prealloc: 0, 'prealloc-keep': FALLOC_FL_KEEP_SIZE, punch: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, zero: FALLOC_FL_ZERO_RANGE,
  'zero-keep': FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE,
};

/** One file and what it must hold. */
class ModelFile {
  bytes: Buffer = Buffer.alloc(0);
  constructor(readonly fd: number) {}

  write(at: number, data: Buffer): void {
    fs.writeSync(this.fd, data, 0, data.length, at);
    this.bytes = written(this.bytes, at, data);
  }

  fallocate(mode: number, at: number, len: number): void {
    native.fallocate(this.fd, mode, at, len);
    this.bytes = fallocated(this.bytes, mode, at, len);
  }

  truncate(size: number): void {
    fs.ftruncateSync(this.fd, size);
    this.bytes = resized(this.bytes, size);
  }
}

/** One random change: a fallocate mode most of the time, over ranges up to 48 blocks, unaligned half the time. */
function change(f: ModelFile, rng: Rng, counts: Map<string, number>): void {
  const at = rng.int(48) * B + (rng.next() < 0.5 ? rng.int(B) : 0);
  const len = 1 + rng.int(16) * B + (rng.next() < 0.5 ? rng.int(B) : 0);
  const r = rng.int(10);
  let what: string;
  if (r < 3) {
    what = 'write';
    const data = Buffer.alloc(len);
    for (let i = 0; i < len; i += 64) data[i] = 1 + rng.int(255);
    f.write(at, data);
  } else if (r < 4) {
    what = 'truncate';
    f.truncate(rng.int(64 * B));
  } else {
    const names = Object.keys(MODES);
    what = names[rng.int(names.length)]!;
    f.fallocate(MODES[what]!, at, len);
  }
  counts.set(what, (counts.get(what) ?? 0) + 1);
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { ops: { type: 'string' }, seed: { type: 'string' }, 'durable-every': { type: 'string' } },
  });
  const mnt = positionals[0];
  if (mnt === undefined) {
    process.stderr.write('usage: falloc-workload MOUNTPOINT [--ops N] [--seed S] [--durable-every K]\n');
    return 2;
  }
  const ops = Number(values.ops ?? 1500);
  const durableEvery = Number(values['durable-every'] ?? 8);
  const rng = new Rng(Number(values.seed ?? 1));
  const counts = new Map<string, number>();
  fs.mkdirSync(path.join(mnt, 'durable'), { recursive: true });
  const dirs = ['c0', 'c1'].map((d) => path.join(mnt, d));
  for (const d of dirs) fs.mkdirSync(d, { recursive: true });
  const churn: { path: string; file: ModelFile }[] = [];
  let durable = 0;
  for (let op = 1; op <= ops; op++) {
    try {
      if (op % durableEvery === 0) {
        const rel = `durable/d${durable++}`;
        const fd = fs.openSync(path.join(mnt, rel), 'w');
        const f = new ModelFile(fd);
        for (let i = 1 + rng.int(6); i > 0; i--) change(f, rng, counts);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        const sha = crypto.createHash('sha256').update(f.bytes).digest('hex');
        const reply = await ctlRequest(mnt, { cmd: 'mark', label: `fsync ${rel} ${sha} ${f.bytes.length}` });
        if (!reply.ok) throw new Error(`mark failed: ${reply.error}`);
        counts.set('durable', (counts.get('durable') ?? 0) + 1);
        continue;
      }
      const r = rng.int(20);
      if (r < 3 || churn.length < 4) {
        const p = path.join(dirs[rng.int(dirs.length)]!, `f${op}`);
        churn.push({ path: p, file: new ModelFile(fs.openSync(p, 'w+')) });
        counts.set('create', (counts.get('create') ?? 0) + 1);
      } else if (r < 5) {
        const [gone] = churn.splice(rng.int(churn.length), 1);
        fs.closeSync(gone!.file.fd);
        fs.unlinkSync(gone!.path);
        counts.set('unlink', (counts.get('unlink') ?? 0) + 1);
      } else if (r < 6) {
        fs.fsyncSync(churn[rng.int(churn.length)]!.file.fd);
        counts.set('fsync', (counts.get('fsync') ?? 0) + 1);
      } else {
        change(churn[rng.int(churn.length)]!.file, rng, counts);
      }
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
      counts.set('enospc', (counts.get('enospc') ?? 0) + 1);
    }
  }
  // What the churn files hold is checked here, before the crash points are: the workload itself must be right.
  for (const { path: p, file } of churn) {
    const got = fs.readFileSync(p);
    if (!got.equals(file.bytes)) throw new Error(`${p}: differs from its model (${got.length} bytes, model ${file.bytes.length})`);
    fs.closeSync(file.fd);
  }
  const list = [...counts].sort((a, b) => a[0].localeCompare(b[0])).map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`falloc-workload: ${ops} ops: ${list}`);
  return 0;
}

void main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`falloc-workload: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
