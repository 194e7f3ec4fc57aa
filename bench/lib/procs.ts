/**
 * Child processes and mounts for the benchmarks that drive a real rmapfs
 * mount: run a command without blocking the event loop, find out whether a
 * path is mounted, get a free TCP port, unmount whatever is left.
 */
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';

export const RMAPFS_BIN = path.resolve(__dirname, '..', '..', '..', 'bin', 'rmapfs');

export interface RunResult {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  seconds: number;
}

export interface RunOptions {
  timeoutMs?: number;
  env?: NodeJS.ProcessEnv;
}

/** Runs a command to its end without blocking the event loop. */
export function run(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    child.stderr.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 30 * 60_000);
    child.once('error', (e) => { clearTimeout(timer); reject(e); });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, seconds: Number(process.hrtime.bigint() - t0) / 1e9 });
    });
  });
}

export function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

/** Why a command failed, in one line. */
export function failure(cmd: string, args: string[], r: RunResult): string {
  const why = firstLine(r.stderr) || firstLine(r.stdout) || (r.signal !== null ? `killed by ${r.signal}` : `exit ${r.status}`);
  return `${path.basename(cmd)} ${args.map((a) => path.basename(a)).join(' ')}: ${why}`;
}

/** Runs a command and throws with its first line of output if it fails. */
export async function must(cmd: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  if (r.status !== 0) throw new Error(failure(cmd, args, r));
  return r;
}

/** Runs the rmapfs command of this checkout. */
export function rmapfs(args: string[], options: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [RMAPFS_BIN, ...args], options);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function onPath(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

function unescapeMount(s: string): string {
  return s.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
}

export function isMounted(mnt: string): boolean {
  let text: string;
  try {
    text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return false;
  }
  const want = path.resolve(mnt);
  return text.split('\n').some((line) => {
    const field = line.split(' ')[4];
    return field !== undefined && unescapeMount(field) === want;
  });
}

/** Last resort, synchronous (signal handlers, finally): `rmapfs umount`, then fusermount -u, then -uz. */
export function forceUmount(mnt: string): void {
  if (!isMounted(mnt)) return;
  spawnSync(process.execPath, [RMAPFS_BIN, 'umount', mnt], { stdio: 'ignore', timeout: 120_000 });
  if (isMounted(mnt)) spawnSync('fusermount', ['-u', mnt], { stdio: 'ignore' });
  if (isMounted(mnt)) spawnSync('fusermount', ['-uz', mnt], { stdio: 'ignore' });
}

/** A TCP port on 127.0.0.1 nobody listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const addr = server.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      server.close(() => (port > 0 ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}
