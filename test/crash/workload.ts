/**
 * A metadata-heavy workload for the crash tests, run against a mount made
 * with -o writelog=FILE: creates, appends, renames, links, unlinks, mkdirs
 * and fsyncs in churn directories, and every few operations a durable file
 * (written, made durable, then never written again) announced to the write
 * log with a mark "fsync PATH SHA256 SIZE" -- which replay-check then demands
 * at every later crash point.
 *
 * With the kernel's writeback cache (the daemon's default) a write reaches
 * the daemon only at writeback -- close(2), fsync, memory pressure, the
 * kernel's dirty expiry -- so nothing is demanded of a file that was not
 * made durable, and the durable files are made durable three ways, each
 * with the pages still dirty in the page cache when it is asked: write +
 * fsync + close (the mark after the close); many small writes + fdatasync
 * with the descriptor kept open (closed some operations later, no more
 * writes); O_DSYNC small writes, no fsync at all (kept open too). Appends
 * also go through a few descriptors kept open across operations, so dirty
 * pages of live and unlinked files are written back among the other changes.
 *
 *   node dist/test/crash/workload.js MOUNTPOINT [--ops N] [--seed S] [--durable-every K]
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { ctlRequest } from '../../src/ctl/ctl';

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}

async function main(argv: string[]): Promise<number> {
  const mnt = argv[0];
  if (mnt === undefined) {
    process.stderr.write('usage: workload MOUNTPOINT [--ops N] [--seed S] [--durable-every K]\n');
    return 2;
  }
  const ops = arg(argv, '--ops', 2000);
  const durableEvery = arg(argv, '--durable-every', 10);
  let seed = arg(argv, '--seed', 1) >>> 0 || 1;
  const rand = (n: number): number => {
    seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0;
    return seed % n;
  };
  const bytes = (len: number): Buffer => {
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rand(256);
    return b;
  };
  const durableDir = path.join(mnt, 'durable');
  fs.mkdirSync(durableDir, { recursive: true });
  const dirs = ['c0', 'c1', 'c2'].map((d) => path.join(mnt, d));
  for (const d of dirs) fs.mkdirSync(d, { recursive: true });
  const files: string[] = [];
  const counts: Record<string, number> = {};
  const count = (k: string): void => { counts[k] = (counts[k] ?? 0) + 1; };
  let durable = 0;
  /** Durable files whose descriptors stay open a while (never written again): closed at a later op. */
  const heldDurable: { fd: number; closeAt: number }[] = [];
  /** Descriptors appending to churn files across operations (O_APPEND): their pages wait in the page cache. */
  const lingering: number[] = [];
  /** Writes data in `pieces` write(2) calls of random sizes (the last takes the rest). */
  const writeInPieces = (fd: number, data: Buffer, pieces: number): void => {
    for (let at = 0, left = pieces; at < data.length; left--) {
      const n = left <= 1 ? data.length - at : Math.min(data.length - at, 1 + rand(Math.ceil((2 * data.length) / pieces)));
      fs.writeSync(fd, data, at, n);
      at += n;
    }
  };
  for (let op = 1; op <= ops; op++) {
    for (let i = heldDurable.length - 1; i >= 0; i--) {
      if (heldDurable[i]!.closeAt > op) continue;
      fs.closeSync(heldDurable[i]!.fd);
      heldDurable.splice(i, 1);
    }
    if (op % durableEvery === 0) {
      const rel = `durable/d${durable++}`;
      const data = bytes(1 + rand(40000));
      const kind = durable % 3;
      const file = path.join(mnt, rel);
      if (kind === 0) {
        const fd = fs.openSync(file, 'w');
        fs.writeSync(fd, data);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        count('durable fsync');
      } else if (kind === 1) {
        const fd = fs.openSync(file, 'w');
        writeInPieces(fd, data, 4 + rand(40)); // small writes absorbed by the page cache
        fs.fdatasyncSync(fd);
        heldDurable.push({ fd, closeAt: op + 1 + rand(30) });
        count('durable fdatasync held');
      } else {
        const fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_DSYNC);
        writeInPieces(fd, data, 1 + rand(3)); // each write(2) is a log force: a few
        heldDurable.push({ fd, closeAt: op + 1 + rand(30) });
        count('durable O_DSYNC held');
      }
      const sha = crypto.createHash('sha256').update(data).digest('hex');
      const reply = await ctlRequest(mnt, { cmd: 'mark', label: `fsync ${rel} ${sha} ${data.length}` });
      if (!reply.ok) throw new Error(`mark failed: ${reply.error}`);
      continue;
    }
    const r = rand(100);
    const dir = dirs[rand(dirs.length)]!;
    try {
      if (r < 30 || files.length < 5) {
        const p = path.join(dir, `f${op}`);
        fs.writeFileSync(p, bytes(rand(9000)));
        files.push(p);
        count('create');
      } else if (r < 42) {
        fs.appendFileSync(files[rand(files.length)]!, bytes(1 + rand(6000)));
        count('append');
      } else if (r < 50) {
        // Through a descriptor kept open: a new one (at most 4), then appends, then a close.
        if (lingering.length < 4 && rand(3) === 0) {
          lingering.push(fs.openSync(files[rand(files.length)]!, 'a'));
          count('open held');
        } else if (lingering.length > 0 && rand(4) === 0) {
          fs.closeSync(lingering.splice(rand(lingering.length), 1)[0]!);
          count('close held');
        } else if (lingering.length > 0) {
          fs.writeSync(lingering[rand(lingering.length)]!, bytes(1 + rand(2000)));
          count('append held');
        }
      } else if (r < 62) {
        const i = rand(files.length);
        const to = path.join(dirs[rand(dirs.length)]!, `r${op}`);
        fs.renameSync(files[i]!, to);
        files[i] = to;
        count('rename');
      } else if (r < 70) {
        const to = path.join(dir, `l${op}`);
        fs.linkSync(files[rand(files.length)]!, to);
        files.push(to);
        count('link');
      } else if (r < 82) {
        const i = rand(files.length);
        fs.unlinkSync(files[i]!);
        files.splice(i, 1);
        count('unlink');
      } else if (r < 88) {
        const d = path.join(dir, `sub${op}`);
        fs.mkdirSync(d);
        fs.writeFileSync(path.join(d, 'x'), bytes(rand(3000)));
        files.push(path.join(d, 'x'));
        count('mkdir');
      } else if (r < 94) {
        fs.truncateSync(files[rand(files.length)]!, rand(5000));
        count('truncate');
      } else {
        const fd = fs.openSync(files[rand(files.length)]!, 'r+');
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        count('fsync');
      }
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'ENOSPC') throw e;
      count('enospc');
    }
  }
  for (const { fd } of heldDurable) fs.closeSync(fd);
  for (const fd of lingering) fs.closeSync(fd);
  console.log(`workload: ${ops} ops: ${Object.entries(counts).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return 0;
}

void main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`workload: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});
