/**
 * The foreground workload of bench/repair: fio, 4 KiB random writes with
 * psync at queue depth 1 (at a fixed rate, or as fast as they go) on a file that already holds data (overwrites: no
 * allocation), logging every I/O's completion latency with a Unix-epoch
 * timestamp. The latencies of a time window (while a repair ran, or a
 * baseline stretch) are picked from that log afterwards, so fio's start-up
 * and its end never count.
 */
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
import * as fs from 'fs';
import { sleep } from '../lib/procs';

export interface LatencyFigures {
  /** I/Os completed in the window. */
  ios: number;
  iops: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export class ForegroundWriter {
  private readonly child: ChildProcess;
  private readonly exited: Promise<{ status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
  private stopped = false;

  /**
   * Starts fio on `file` (`bytes` long), `iops` writes a second (0: as fast as it goes); the latency
   * log goes to logPrefix + "_clat.1.log".
   */
  constructor(readonly file: string, bytes: number, private readonly logPrefix: string, iops = 0) {
    const args = ['--name=fg', `--filename=${file}`, '--rw=randwrite', '--bs=4k', '--ioengine=psync', '--iodepth=1',
      `--size=${bytes}`, '--fallocate=none', '--direct=0', '--time_based', '--runtime=3600', '--norandommap',
      `--write_lat_log=${logPrefix}`, '--log_avg_msec=0', '--log_unix_epoch=1', '--output-format=json'];
    if (iops > 0) args.push(`--rate_iops=${iops}`);
    this.child = spawn('fio', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    this.exited = new Promise((resolve, reject) => {
      this.child.once('error', reject);
      this.child.once('close', (status, signal) => resolve({ status, signal, stdout, stderr }));
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Waits `ms` (fio gets going), then checks fio is still running. */
  async warmUp(ms: number): Promise<void> {
    await sleep(ms);
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      const r = await this.exited;
      throw new Error(`fio on ${this.file} ended early: ${fioError(r)}`);
    }
  }

  /** Stops fio (SIGINT: it writes its logs) and waits for it. */
  async stop(): Promise<void> {
    if (!this.stopped) {
      this.stopped = true;
      this.child.kill('SIGINT');
    }
    const r = await this.exited;
    // After a SIGINT fio exits 128 (its sig_int handler sets that), having written its logs and its JSON.
    const interrupted = r.status === 128 && r.stdout.includes('terminating on signal') && r.stdout.includes('"jobs"');
    if (r.status !== 0 && !interrupted) throw new Error(`fio on ${this.file}: ${fioError(r)}`);
  }

  /** For cleanup paths: kill without waiting. */
  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }

  /** Latencies of the I/Os that completed within [fromMs, toMs] (Unix epoch ms). Call after stop(). */
  window(fromMs: number, toMs: number): LatencyFigures {
    const text = fs.readFileSync(`${this.logPrefix}_clat.1.log`, 'utf8');
    const lat: number[] = [];
    let at = 0;
    while (at < text.length) {
      let end = text.indexOf('\n', at);
      if (end < 0) end = text.length;
      const comma = text.indexOf(',', at);
      if (comma > at && comma < end) {
        const t = Number(text.slice(at, comma));
        if (t >= fromMs && t <= toMs) {
          const comma2 = text.indexOf(',', comma + 1);
          lat.push(Number(text.slice(comma + 1, comma2 > 0 && comma2 < end ? comma2 : end)));
        }
      }
      at = end + 1;
    }
    return latencyFigures(Float64Array.from(lat), (toMs - fromMs) / 1000);
  }
}

function fioError(r: { status: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }): string {
  const said = `${r.stderr}\n${r.stdout}`.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('{'));
  return `${r.signal !== null ? `killed by ${r.signal}` : `exit ${r.status}`}${said.length > 0 ? `: ${said.slice(0, 3).join(' / ')}` : ''}`;
}

/** p50/p99/max in ms of latencies in ns (nearest rank). */
export function latencyFigures(ns: Float64Array, seconds: number): LatencyFigures {
  ns.sort();
  const pick = (p: number): number => (ns.length === 0 ? NaN : ns[Math.min(ns.length - 1, Math.ceil(p * ns.length) - 1)]! / 1e6);
  return {
    ios: ns.length,
    iops: seconds > 0 ? Math.round(ns.length / seconds) : 0,
    p50Ms: pick(0.5),
    p99Ms: pick(0.99),
    maxMs: ns.length === 0 ? NaN : ns[ns.length - 1]! / 1e6,
  };
}
