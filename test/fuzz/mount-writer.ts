/**
 * The fuzz loop's writer for --mounted cases: a process of its own (an
 * application, as far as the daemon can tell) that creates files in a
 * mounted rmapfs, writes them (1-3 blocks each: allocations that split free
 * extents) and removes the oldest of those it keeps, recording the sha256 of
 * each file it completed.
 *
 *   node dist/test/fuzz/mount-writer.js DIR PREFIX [--steps N]
 *
 * Without --steps it runs until a line arrives on stdin (or stdin closes): a
 * write may fail then (the damage is there), and the file is forgotten. With
 * --steps N it makes N changes and any failure is fatal (exit 1): after a
 * repair nothing may fail any more. Either way its last stdout line is one
 * JSON object: {files: {name: sha256}, steps, failures, firstFailure}.
 * It prints "started" once its first change is done (or failed), so the loop
 * knows the daemon is already serving it when the scrub begins.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';

/** How many completed files it keeps before removing the oldest: enough to find a lost one, never filling the filesystem. */
const KEPT_FILES = 16;

interface WriterReport {
  files: Record<string, string>;
  steps: number;
  failures: number;
  firstFailure: string | null;
}

async function main(argv: string[]): Promise<number> {
  const [dir, prefix] = argv;
  if (dir === undefined || prefix === undefined) {
    process.stderr.write('usage: mount-writer DIR PREFIX [--steps N]\n');
    return 2;
  }
  const stepsAt = argv.indexOf('--steps');
  const steps = stepsAt >= 0 ? Number(argv[stepsAt + 1]) : null;
  const strict = steps !== null;
  const files = new Map<string, string>();
  const report: WriterReport = { files: {}, steps: 0, failures: 0, firstFailure: null };
  let stopped = false;
  if (!strict) {
    process.stdin.on('data', () => { stopped = true; });
    process.stdin.on('end', () => { stopped = true; });
  }
  for (let n = 0; steps === null ? !stopped : n < steps; n++) {
    const name = `${prefix}-${n}`;
    try {
      if (n % 2 === 1 && files.size > KEPT_FILES) {
        const [oldest] = files.keys();
        files.delete(oldest!);
        fs.unlinkSync(path.join(dir, oldest!));
      } else {
        const pattern = crypto.createHash('sha256').update(name).digest();
        const body = Buffer.concat(Array.from({ length: 128 * (1 + (n % 3)) }, () => pattern));
        fs.writeFileSync(path.join(dir, name), body);
        files.set(name, crypto.createHash('sha256').update(body).digest('hex'));
      }
    } catch (e) {
      report.failures++;
      report.firstFailure ??= `${name}: ${e instanceof Error ? e.message : String(e)}`;
      if (strict) break;
    }
    report.steps = n + 1;
    if (n === 0) process.stdout.write('started\n');
    // Between changes the event loop runs: the stop line is read here.
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  report.files = Object.fromEntries(files);
  process.stdout.write(`${JSON.stringify(report)}\n`);
  return strict && report.failures > 0 ? 1 : 0;
}

void main(process.argv.slice(2)).then((code) => { process.exitCode = code; }, (e: unknown) => {
  process.stderr.write(`mount-writer: ${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
  process.exitCode = 1;
});
