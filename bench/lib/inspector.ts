/**
 * A minimal client of the V8 inspector protocol of another Node process,
 * for benchmarks that measure a running daemon from outside (its JS heap,
 * after a forced GC) without a line of code in the daemon.
 *
 * The process must listen: start it with NODE_OPTIONS=--inspect-port=HOST:PORT
 * and send it SIGUSR1 (Node then opens the inspector on that port), or with
 * --inspect. `InspectorSession.connect(port)` finds its target through
 * /json/list and speaks WebSocket (RFC 6455, just what the protocol needs:
 * masked text frames out, text frames, pings and close in).
 *
 * Commands reach the target even while its main thread runs synchronous
 * JavaScript (the inspector interrupts it), so a forced GC lands wherever
 * the target happens to be.
 */
import * as crypto from 'crypto';
import * as http from 'http';
import * as net from 'net';

export interface HeapUsage {
  usedSize: number;
  totalSize: number;
}

function getJson(port: number, path: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => { body += d; });
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as unknown);
        } catch (e) {
          reject(e instanceof Error ? e : new Error(String(e)));
        }
      });
    });
    req.once('timeout', () => req.destroy(new Error(`inspector on port ${port}: no answer to ${path}`)));
    req.once('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits until something answers /json/list on the port; returns the first target's WebSocket URL. */
export async function waitForInspector(port: number, timeoutMs = 10_000): Promise<string> {
  const until = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < until) {
    try {
      const list = await getJson(port, '/json/list', 1000);
      if (Array.isArray(list)) {
        const first = list[0] as { webSocketDebuggerUrl?: unknown } | undefined;
        if (typeof first?.webSocketDebuggerUrl === 'string') return first.webSocketDebuggerUrl;
      }
      last = new Error('no target in /json/list');
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`no inspector on 127.0.0.1:${port} after ${timeoutMs} ms (${last instanceof Error ? last.message : String(last)})`);
}

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
}

export class InspectorSession {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private input: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {}

  /** Connects to the process listening on 127.0.0.1:port (waits up to timeoutMs for it). */
  static async connect(port: number, timeoutMs = 10_000): Promise<InspectorSession> {
    const url = new URL(await waitForInspector(port, timeoutMs));
    const socket = net.connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const key = crypto.randomBytes(16).toString('base64');
    socket.write(`GET ${url.pathname} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    // The handshake answer, then frames.
    const rest = await new Promise<Buffer>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const onData = (d: Buffer): void => {
        got = Buffer.concat([got, d]);
        const end = got.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('data', onData);
        const head = got.subarray(0, end).toString('latin1');
        if (!/^HTTP\/1\.1 101/.test(head)) reject(new Error(`inspector refused the WebSocket upgrade: ${head.split('\r\n')[0]}`));
        else resolve(got.subarray(end + 4));
      };
      socket.on('data', onData);
      socket.once('error', reject);
    });
    const session = new InspectorSession(socket);
    socket.removeAllListeners('error');
    socket.on('data', (d: Buffer) => session.onData(d));
    socket.on('error', (e) => session.fail(e));
    socket.on('close', () => session.fail(new Error('inspector connection closed')));
    if (rest.length > 0) session.onData(rest);
    return session;
  }

  /** Sends one protocol command and resolves with its result. */
  send(method: string, params: Record<string, unknown> = {}): Promise<unknown> {
    if (this.closedError !== null) return Promise.reject(this.closedError);
    const id = this.nextId++;
    const payload = Buffer.from(JSON.stringify({ id, method, params }), 'utf8');
    this.writeFrame(0x1, payload);
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  /** The target's JS heap right now (live objects and garbage not yet collected). */
  async heapUsage(): Promise<HeapUsage> {
    const r = await this.send('Runtime.getHeapUsage') as Partial<HeapUsage>;
    if (typeof r.usedSize !== 'number' || typeof r.totalSize !== 'number') throw new Error('Runtime.getHeapUsage: unexpected answer');
    return { usedSize: r.usedSize, totalSize: r.totalSize };
  }

  /** A full GC in the target, then its heap: what is live. */
  async liveHeap(): Promise<HeapUsage> {
    await this.send('HeapProfiler.collectGarbage');
    return this.heapUsage();
  }

  close(): void {
    if (this.closedError === null) {
      try {
        this.writeFrame(0x8, Buffer.alloc(0));
      } catch {
        // going anyway
      }
    }
    this.fail(new Error('inspector session closed'));
    this.socket.destroy();
  }

  private fail(e: Error): void {
    this.closedError ??= e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  private writeFrame(opcode: number, payload: Buffer): void {
    const len = payload.length;
    const head = len < 126 ? Buffer.alloc(2) : len < 65536 ? Buffer.alloc(4) : Buffer.alloc(10);
    head[0] = 0x80 | opcode;
    if (len < 126) head[1] = 0x80 | len;
    else if (len < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(len, 2);
    } else {
      head[1] = 0x80 | 127;
      head.writeBigUInt64BE(BigInt(len), 2);
    }
    const mask = crypto.randomBytes(4);
    const body = Buffer.alloc(len);
    for (let i = 0; i < len; i++) body[i] = payload[i]! ^ mask[i & 3]!;
    this.socket.write(Buffer.concat([head, mask, body]));
  }

  private onData(d: Buffer): void {
    this.input = this.input.length === 0 ? d : Buffer.concat([this.input, d]);
    for (;;) {
      const b = this.input;
      if (b.length < 2) return;
      const fin = (b[0]! & 0x80) !== 0;
      const opcode = b[0]! & 0x0f;
      const masked = (b[1]! & 0x80) !== 0;
      let len = b[1]! & 0x7f;
      let at = 2;
      if (len === 126) {
        if (b.length < 4) return;
        len = b.readUInt16BE(2);
        at = 4;
      } else if (len === 127) {
        if (b.length < 10) return;
        len = Number(b.readBigUInt64BE(2));
        at = 10;
      }
      const maskAt = at;
      if (masked) at += 4;
      if (b.length < at + len) return;
      const payload = Buffer.from(b.subarray(at, at + len));
      if (masked) for (let i = 0; i < len; i++) payload[i] = payload[i]! ^ b[maskAt + (i & 3)]!;
      this.input = b.subarray(at + len);
      if (opcode === 0x9) this.writeFrame(0xa, payload);
      else if (opcode === 0x8) this.fail(new Error('inspector closed the connection'));
      else if (opcode === 0x1 || opcode === 0x0) {
        this.fragments.push(payload);
        if (fin) {
          const text = Buffer.concat(this.fragments).toString('utf8');
          this.fragments = [];
          this.onMessage(text);
        }
      }
    }
  }

  private onMessage(text: string): void {
    const m = JSON.parse(text) as { id?: number; result?: unknown; error?: { message?: string } };
    if (typeof m.id !== 'number') return; // an event: none enabled, none wanted
    const p = this.pending.get(m.id);
    if (p === undefined) return;
    this.pending.delete(m.id);
    if (m.error !== undefined) p.reject(new Error(`inspector: ${m.error.message ?? 'error'}`));
    else p.resolve(m.result);
  }
}

// ---------------------------------------------------------------------------
// CPU profiles (Profiler domain)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

export interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

export interface ProfileLine {
  /** "function file:line" */
  where: string;
  selfMs: number;
  share: number;
}

/** Starts the target's sampling CPU profiler (interval in microseconds). */
export async function startProfile(session: InspectorSession, intervalUs = 500): Promise<void> {
  await session.send('Profiler.enable');
  await session.send('Profiler.setSamplingInterval', { interval: intervalUs });
  await session.send('Profiler.start');
}

export async function stopProfile(session: InspectorSession): Promise<CpuProfile> {
  const r = await session.send('Profiler.stop') as { profile?: CpuProfile };
  await session.send('Profiler.disable');
  if (r.profile === undefined) throw new Error('Profiler.stop: no profile');
  return r.profile;
}

/** Self time per function (summed over the call tree), largest first. */
export function topFunctions(profile: CpuProfile, count: number): ProfileLine[] {
  const totalMs = (profile.endTime - profile.startTime) / 1000;
  const hits = profile.nodes.reduce((n, x) => n + (x.hitCount ?? 0), 0);
  const byWhere = new Map<string, number>();
  for (const n of profile.nodes) {
    const f = n.callFrame;
    const file = f.url === '' ? '' : ` ${f.url.replace(/^file:\/\//, '').replace(/^.*\/dist\//, '')}:${f.lineNumber + 1}`;
    const where = `${f.functionName || '(anonymous)'}${file}`;
    byWhere.set(where, (byWhere.get(where) ?? 0) + (n.hitCount ?? 0));
  }
  return [...byWhere.entries()].sort((a, b) => b[1] - a[1]).slice(0, count).map(([where, h]) => ({
    where, selfMs: hits > 0 ? h / hits * totalMs : 0, share: hits > 0 ? h / hits : 0,
  }));
}
