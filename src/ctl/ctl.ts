/**
 * The control channel between the `rmapfs` command and a running daemon: a
 * Unix socket in a directory only the mounting user (and root) can enter,
 * named after the mountpoint. One JSON request per line, one JSON reply per
 * line. The daemon answers between FUSE requests, on the same thread, so a
 * scrub sees the filesystem exactly as the last finished operation left it.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import { daemonGoneMessage, findMount, mountpointDaemonGone } from '../io/mountinfo';

const log = createDebug('rmapfs:ctl');

export interface CtlRequest {
  cmd: string;
  [arg: string]: unknown;
}

export interface CtlReply {
  ok: boolean;
  /** A refusal's one line. */
  error?: string;
  /** A refusal's errno name (EBUSY, EROFS, EINVAL, ENOSPC...): the command reports it and exits by it. */
  code?: string;
  [field: string]: unknown;
}

/** The daemon says no: an errno name and one line, carried to the command as they are. */
export function refusal(code: string, message: string): CtlReply {
  return { ok: false, code, error: message };
}

/** A failure as a refusal: an RmapfsError keeps its code; anything else (a bug) is EIO. */
export function refusalFrom(e: unknown, prefix = ''): CtlReply {
  const message = `${prefix}${e instanceof Error ? e.message : String(e)}`;
  return refusal(e instanceof RmapfsError ? e.code : 'EIO', message);
}

/** The error a refusal stands for, on the command's side. */
export function refusalError(reply: CtlReply, what: string): RmapfsError {
  return new RmapfsError(reply.code ?? 'EIO', reply.error ?? `${what} failed`);
}

/**
 * An interim message of a long request (progress): a JSON line with an
 * `event` field, sent before the reply (which has `ok`).
 */
export interface CtlEvent {
  event: string;
  [field: string]: unknown;
}

/**
 * `signal` aborts when the client goes away (Ctrl-C on the command): long
 * work should stop then. `send` passes interim events to the client.
 */
export type CtlHandler = (req: CtlRequest, signal: AbortSignal, send: (e: CtlEvent) => void) => CtlReply | Promise<CtlReply>;

/** Where the sockets live: per user, mode 0700. */
function socketDir(uid: number): string {
  const base = process.env.RMAPFS_RUN_DIR ?? (uid === 0 ? '/run/rmapfs' : path.join(process.env.XDG_RUNTIME_DIR ?? '/tmp', `rmapfs-${uid}`));
  return base;
}

/** The socket of the daemon serving a mountpoint (a hash keeps the name short and safe). */
export function socketPath(mountpoint: string, uid = process.getuid?.() ?? 0): string {
  const id = crypto.createHash('sha256').update(path.resolve(mountpoint)).digest('hex').slice(0, 24);
  return path.join(socketDir(uid), `${id}.sock`);
}

export interface CtlServer {
  path: string;
  close(): void;
}

/** Listens for commands on the mountpoint's socket (owner-only). */
export function startCtlServer(mountpoint: string, handler: CtlHandler): CtlServer {
  const sock = socketPath(mountpoint);
  fs.mkdirSync(path.dirname(sock), { recursive: true, mode: 0o700 });
  fs.chmodSync(path.dirname(sock), 0o700);
  try {
    fs.unlinkSync(sock); // a stale socket from a daemon that died
  } catch {
    // none
  }
  const server = net.createServer((conn) => {
    let buffered = '';
    const gone = new AbortController();
    conn.on('close', () => gone.abort());
    conn.setEncoding('utf8');
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        const send = (e: CtlEvent): void => { if (!conn.destroyed) conn.write(`${JSON.stringify(e)}\n`); };
        void answer(line, gone.signal, send).then((reply) => { if (!conn.destroyed) conn.write(`${JSON.stringify(reply)}\n`); });
      }
    });
    conn.on('error', (e) => log('connection: %s', e.message));
  });
  const answer = async (line: string, signal: AbortSignal, send: (e: CtlEvent) => void): Promise<CtlReply> => {
    try {
      let req: CtlRequest;
      try {
        req = JSON.parse(line) as CtlRequest;
      } catch {
        throw new RmapfsError('EINVAL', 'a request that is not JSON');
      }
      if (typeof req.cmd !== 'string') throw new RmapfsError('EINVAL', 'request without a command');
      return await handler(req, signal, send);
    } catch (e) {
      return refusalFrom(e);
    }
  };
  server.listen(sock, () => fs.chmodSync(sock, 0o600));
  server.unref();
  log('listening on %s', sock);
  return {
    path: sock,
    close: () => {
      server.close();
      try {
        fs.unlinkSync(sock);
      } catch {
        // gone already
      }
    },
  };
}

/**
 * Sends one request to the daemon serving `mountpoint` and returns its reply;
 * interim events go to onEvent. `timeoutMs` bounds the wait for any line (0:
 * no bound, for a stream of events that may be quiet for days).
 */
export async function ctlRequest(mountpoint: string, req: CtlRequest, timeoutMs = 600_000,
  onEvent?: (e: CtlEvent) => void): Promise<CtlReply> {
  const entry = findMount(mountpoint);
  if (entry === null || entry.fstype !== 'fuse.rmapfs' || entry.mountpoint !== path.resolve(mountpoint)) {
    throw new RmapfsError('EINVAL', `${mountpoint} is not an rmapfs mount`);
  }
  const candidates = [socketPath(entry.mountpoint), socketPath(entry.mountpoint, 0)];
  let denied = false;
  const sock = candidates.find((p) => {
    try {
      fs.statSync(p);
      return true;
    } catch (e) {
      // Another user's socket directory is closed to us (0700): that is a refusal, not an absence.
      if ((e as NodeJS.ErrnoException).code === 'EACCES') denied = true;
      return false;
    }
  });
  if (sock === undefined) {
    if (mountpointDaemonGone(entry.mountpoint)) throw new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint));
    if (denied) throw new RmapfsError('EACCES', `permission denied: only the user who mounted ${mountpoint} (or root) may control it`);
    throw new RmapfsError('ENOENT', `no control socket for ${mountpoint} (is its daemon running, and yours?)`);
  }
  return new Promise<CtlReply>((resolve, reject) => {
    const conn = net.createConnection(sock);
    let buffered = '';
    const expire = (): void => {
      conn.destroy();
      reject(new RmapfsError('ETIMEDOUT', `the daemon of ${mountpoint} did not answer`));
    };
    const arm = (): NodeJS.Timeout | undefined => (timeoutMs > 0 ? setTimeout(expire, timeoutMs) : undefined);
    let timer = arm();
    conn.setEncoding('utf8');
    conn.on('connect', () => conn.write(`${JSON.stringify(req)}\n`));
    conn.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        clearTimeout(timer);
        let msg: Record<string, unknown>;
        try {
          msg = JSON.parse(line) as Record<string, unknown>;
        } catch (e) {
          conn.destroy();
          reject(new RmapfsError('EIO', `bad reply from the daemon: ${e instanceof Error ? e.message : String(e)}`));
          return;
        }
        if (typeof msg.event === 'string' && !('ok' in msg)) {
          timer = arm();
          onEvent?.(msg as CtlEvent);
          continue;
        }
        conn.end();
        resolve(msg as CtlReply);
        return;
      }
    });
    conn.on('close', () => {
      clearTimeout(timer);
      reject(new RmapfsError('EIO', `the daemon of ${mountpoint} closed the connection without answering`));
    });
    conn.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const code = e.code ?? 'EIO';
      // A daemon killed or crashed leaves its socket file behind, and its mount answering ENOTCONN.
      if ((code === 'ECONNREFUSED' || code === 'ENOENT') && mountpointDaemonGone(entry.mountpoint)) {
        reject(new RmapfsError('ENOTCONN', daemonGoneMessage(mountpoint)));
        return;
      }
      reject(new RmapfsError(code === 'EACCES' ? 'EACCES' : code, code === 'EACCES'
        ? `permission denied: only the user who mounted ${mountpoint} (or root) may control it`
        : `cannot reach the daemon of ${mountpoint}: ${e.message}`));
    });
  });
}
