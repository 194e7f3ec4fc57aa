/**
 * Crash consistency by write-log replay (like fstests' log-writes tests).
 *
 *   node dist/test/crash/replay-check.js BASE LOG [--torn K] [--seed S] [--every N] [--lying-disk]
 *                                        [--damaged AG:STRUCT[,STRUCT...]]
 *
 * BASE is the device as it was when the write log LOG began. The device is
 * rebuilt at every flush point (and, with --torn K, at K more points in each
 * flush epoch: the state at the epoch's start plus a random subset of its
 * writes, in any order, one of them torn to a prefix of its 512-byte
 * sectors -- what a volatile write cache may leave). At each point the
 * filesystem is opened as a mount would open it (the journal replayed, here
 * into an overlay so the image is not changed), `check` must be clean, and
 * every file the workload declared durable -- a log mark "fsync PATH SHA256
 * SIZE" placed after its fsync returned -- must have exactly that content.
 *
 * --lying-disk checks the checker: the disk ignores flushes (at each flush a
 * random part of the epoch's writes stays behind, landing later), which no
 * journal survives -- the run must then report failures.
 *
 * --damaged AG:STRUCTS says BASE holds known damage in those structures of
 * AG (table names, e.g. 1:bnobt,cntbt, or checkers' labels: "coverage" is
 * the cross-check of free space against the rmap), which an online repair fixes during
 * the log: until the mark "repaired AG" a point may show problems there --
 * a crash before the repair's commit leaves the old, damaged structure --
 * and nothing else; after the mark it must be clean like any other. A mark
 * "damaged AG:STRUCTS" in the log does the same from where it stands (put it
 * before the transaction that damages them: repairers' crash tests damage
 * the live filesystem round after round), until its "repaired AG". A mark
 * "damaged AG:STRUCTS matching REGEX" tolerates only those of its problems
 * whose message REGEX matches: the damage itself, not whatever else the
 * structure might show (a directory repair's torn new tree is a "directory"
 * problem too, and must fail the point).
 *
 * Prints one line per failing point and a summary line; exits 1 on failure.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { WriteLogReader, WLOG_FLUSH, WLOG_MARK, WLOG_WRITE } from '../../src/io/write-log';
import { checkDevice, CHECK_CLEAN } from '../../src/fsck/check';
import { Rmapfs } from '../../src/fs/rmapfs';
import { formatProblem } from '../../src/scrub/common';
import { structureOfProblem } from '../../src/scrub/health-marks';
import type { Problem } from '../../src/scrub/common';

interface Durable {
  path: string;
  sha: string;
  size: number;
}

interface PendingWrite {
  pos: number;
  data: Buffer;
}

function arg(argv: string[], name: string, dflt: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : dflt;
}

/** A small deterministic generator (xorshift32). */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** Whether the files declared durable are there with their content; the problems found. */
function verifyDurable(image: string, durable: Map<string, Durable>): string[] {
  if (durable.size === 0) return [];
  const out: string[] = [];
  const fsx = Rmapfs.open(image, { readOnly: true });
  try {
    for (const d of durable.values()) {
      let ino = fsx.rootIno;
      try {
        for (const part of d.path.split('/').filter(Boolean)) ino = fsx.lookup(ino, part);
      } catch (e) {
        out.push(`${d.path}: missing (${e instanceof Error ? e.message : String(e)})`);
        continue;
      }
      const size = fsx.stat(ino).size;
      const data = size > 0 ? fsx.read(ino, 0, size) : Buffer.alloc(0);
      const sha = crypto.createHash('sha256').update(data).digest('hex');
      if (size !== d.size || sha !== d.sha) out.push(`${d.path}: ${size} bytes, sha ${sha.slice(0, 12)}, want ${d.size} bytes, sha ${d.sha.slice(0, 12)}`);
    }
  } finally {
    fsx.close();
  }
  return out;
}

function main(argv: string[]): number {
  const [base, logPath] = argv.filter((a, i) => !a.startsWith('--') && !(i > 0 && argv[i - 1]!.startsWith('--')));
  if (base === undefined || logPath === undefined) {
    process.stderr.write('usage: replay-check BASE LOG [--torn K] [--seed S] [--every N]\n');
    return 2;
  }
  const torn = arg(argv, '--torn', 0);
  const every = Math.max(1, arg(argv, '--every', 1));
  const lying = argv.includes('--lying-disk');
  const random = rng(arg(argv, '--seed', 1));
  const damagedArg = argv.indexOf('--damaged') >= 0 ? argv[argv.indexOf('--damaged') + 1] ?? '' : null;
  // Until the repair's mark, problems in the damaged structures of that AG are the damage itself.
  const damageLeft = new Map<number, string[]>();
  /** The messages the damage of an AG shows, when its mark says (else any problem of its structures). */
  const damageText = new Map<number, RegExp>();
  const noteDamage = (spec: string, matching?: string): boolean => {
    const m = /^(\d+):(\S+)$/.exec(spec);
    if (m !== null) {
      damageLeft.set(Number(m[1]), m[2]!.split(','));
      if (matching === undefined) damageText.delete(Number(m[1]));
      else damageText.set(Number(m[1]), new RegExp(matching));
    }
    return m !== null;
  };
  if (damagedArg !== null && !noteDamage(damagedArg)) {
    process.stderr.write('replay-check: --damaged wants AG:STRUCT[,STRUCT...]\n');
    return 2;
  }
  let damageMarks = damagedArg === null ? 0 : 1;
  let repairedMarks = 0;
  const isKnownDamage = (p: Problem): boolean => (damageLeft.get(p.agno)?.some((s) => s === structureOfProblem(p) || s === p.structure) ?? false)
    && (damageText.get(p.agno)?.test(p.message) ?? true);
  let toleratedPoints = 0;
  /** Points between a damage and its repair's mark: where the repair's commit lands (or not yet). */
  let windowPoints = 0;
  const work = path.join(os.tmpdir(), `rmapfs-replay-${process.pid}.img`);
  fs.copyFileSync(base, work);
  const fd = fs.openSync(work, 'r+');
  const reader = new WriteLogReader(logPath);
  const durable = new Map<string, Durable>();
  let epoch: PendingWrite[] = [];
  let flushPoints = 0;
  let tornPoints = 0;
  let failures = 0;
  let writes = 0;
  let flushes = 0;
  const t0 = Date.now();

  const checkPoint = (what: string): void => {
    if (damageLeft.size > 0) windowPoints++;
    const report = checkDevice(work);
    const unknown = report.result.problems.filter((p) => !isKnownDamage(p));
    const onlyKnownDamage = report.status !== CHECK_CLEAN && report.error === null && unknown.length === 0;
    if (onlyKnownDamage) toleratedPoints++;
    const problems = report.status === CHECK_CLEAN || onlyKnownDamage ? [] : [report.error ?? '', ...unknown.map(formatProblem)];
    if (problems.length === 0) problems.push(...verifyDurable(work, durable));
    if (problems.length > 0) {
      failures++;
      console.log(`FAIL at ${what}: ${problems.slice(0, 5).join(' | ')}`);
    }
  };

  /** The state at the epoch's start plus a random subset of its writes, one torn; undone afterwards. */
  const checkTorn = (): void => {
    if (epoch.length === 0) return;
    const chosen = epoch.filter(() => random() < 0.5);
    if (chosen.length === 0) chosen.push(epoch[Math.floor(random() * epoch.length)]!);
    // Any order: later writes to the same place may land before earlier ones.
    for (let i = chosen.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [chosen[i], chosen[j]] = [chosen[j]!, chosen[i]!];
    }
    const tornIndex = Math.floor(random() * chosen.length);
    const undo: PendingWrite[] = [];
    // The image is at the epoch's start (its writes are held back until the flush): apply the subset, check, undo.
    chosen.forEach((w, i) => {
      const sectors = w.data.length / 512;
      const len = i === tornIndex && sectors > 1 ? 512 * (1 + Math.floor(random() * (sectors - 1))) : w.data.length;
      const old = Buffer.alloc(len);
      fs.readSync(fd, old, 0, len, w.pos);
      undo.push({ pos: w.pos, data: old });
      fs.writeSync(fd, w.data, 0, len, w.pos);
    });
    tornPoints++;
    checkPoint(`torn point ${tornPoints} (epoch after flush ${flushes}, ${chosen.length} of ${epoch.length} writes)`);
    for (let i = undo.length - 1; i >= 0; i--) fs.writeSync(fd, undo[i]!.data, 0, undo[i]!.data.length, undo[i]!.pos);
  };

  try {
    // Epoch writes are held back (not applied) until their flush, so the image is always at the last flush point.
    for (let e = reader.next(); e !== null; e = reader.next()) {
      if (e.kind === WLOG_WRITE) {
        writes++;
        epoch.push({ pos: e.pos, data: e.data });
      } else if (e.kind === WLOG_MARK) {
        const m = /^fsync (\S+) ([0-9a-f]{64}) (\d+)$/.exec(e.label);
        if (m !== null) durable.set(m[1]!, { path: m[1]!, sha: m[2]!, size: Number(m[3]) });
        const repaired = /^repaired (\d+)$/.exec(e.label);
        if (repaired !== null && damageLeft.delete(Number(repaired[1]))) {
          damageText.delete(Number(repaired[1]));
          repairedMarks++;
        }
        const damagedMark = /^damaged (\S+)(?: matching (.+))?$/.exec(e.label);
        if (damagedMark !== null && noteDamage(damagedMark[1]!, damagedMark[2])) damageMarks++;
      } else if (e.kind === WLOG_FLUSH) {
        for (let k = 0; k < torn; k++) checkTorn();
        const behind: PendingWrite[] = [];
        for (const w of epoch) {
          if (lying && random() < 0.5) behind.push(w);
          else fs.writeSync(fd, w.data, 0, w.data.length, w.pos);
        }
        epoch = behind;
        flushes++;
        if (flushes % every === 0) {
          flushPoints++;
          checkPoint(`flush ${flushes}`);
        }
      }
    }
    // What never reached a flush may be lost, or partly there: the torn points after the last flush.
    for (let k = 0; k < torn; k++) checkTorn();
  } finally {
    fs.closeSync(fd);
    reader.close();
    fs.rmSync(work, { force: true });
  }
  const seconds = (Date.now() - t0) / 1000;
  console.log(`replay-check: ${flushPoints + tornPoints} points (${flushPoints} flush points, ${tornPoints} torn), `
    + `${failures} failures; ${writes} writes, ${flushes} flushes, ${durable.size} durable files; ${seconds.toFixed(1)} s`
    + (damageMarks === 0 ? '' : `; ${damageMarks} damaged, ${repairedMarks} repaired, ${windowPoints} points before a repair's mark, `
      + `${toleratedPoints} with the known damage only`
      + (damageLeft.size > 0 ? `, AG ${[...damageLeft.keys()].join(', ')} never marked repaired` : '')));
  // The damage must have been repaired during the log: a run that never says so proves nothing.
  if (damageLeft.size > 0) return 1;
  return failures === 0 ? 0 : 1;
}

process.exitCode = main(process.argv.slice(2));
