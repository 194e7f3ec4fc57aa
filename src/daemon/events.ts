/**
 * The daemon's health events: every change of a structure's health
 * (alloc/health.ts) and every repair, as they happen, to each `rmapfs events`
 * client (a ctl connection kept open) and to syslog.
 *
 * Syslog goes through ONE logger(1) child for the life of the mount, fed a
 * line per event on its stdin (`--prio-prefix`: each line carries its own
 * priority). Node has no AF_UNIX datagram socket for /dev/log, and a native
 * sendto would add C++ the addon does not need; logger already knows where
 * the system logs (the /dev/log socket, journald) and what to do when there
 * is none, costs one process for the mount rather than one per event, and a
 * write to its pipe never blocks the thread that serves FUSE. What it has
 * not taken yet is bounded (SYSLOG_BACKLOG): past that, lines are dropped
 * and counted, never kept without limit.
 */
import { spawn } from 'child_process';
import type { ChildProcess } from 'child_process';
import createDebug from 'debug';
import type { HealthEvent } from '../alloc/health';
import { structureLabel } from '../alloc/health';
import { describeHealthEvent } from '../ctl/health-report';
import type { CtlEvent } from '../ctl/ctl';

const log = createDebug('rmapfs:daemon');

/** Bytes waiting for logger(1) beyond which events are dropped from syslog (still streamed to clients). */
const SYSLOG_BACKLOG = 1 << 20;

/** syslog(3) priorities of the daemon facility: warning for damage, notice for the rest. */
const LOG_DAEMON = 3 << 3;
const LOG_WARNING = 4;
const LOG_NOTICE = 5;

/** A health change as `rmapfs events --json` prints it: one flat object, camelCase. */
export function healthEventJson(e: HealthEvent): CtlEvent {
  return {
    event: 'health', at: new Date(e.at).toISOString(),
    agno: e.place.kind === 'filesystem' ? -1 : e.place.agno, ...(e.place.kind === 'inode' ? { ino: e.place.ino } : {}),
    structure: e.structure, name: structureLabel(e.structure), state: e.state, was: e.was,
    how: e.how, during: e.during, message: e.what, ...(e.repairFailed !== undefined ? { repairFailed: e.repairFailed } : {}),
  };
}

/**
 * What a repair request did, as an event: started (what was asked), finished (`succeeded`, and a
 * summary or the error's line). Never an `ok` field: that marks the reply that ends a ctl request.
 */
export interface RepairEvent extends CtlEvent {
  event: 'repair';
  at: string;
  phase: 'started' | 'finished';
}

/** One event's text line (without the time: the command adds it). */
export function eventLine(e: CtlEvent): string {
  if (e.event === 'repair') {
    const asked = [e.types !== null && e.types !== undefined ? `types ${String(e.types)}` : 'every structure',
      e.ag !== null && e.ag !== undefined ? `AG ${String(e.ag)}` : null, e.ino !== null && e.ino !== undefined ? `inode ${String(e.ino)}` : null]
      .filter((x) => x !== null).join(', ');
    const repair = e.automatic === true ? 'automatic repair' : 'repair';
    if (e.phase === 'started') return `${repair} started (${asked}${e.forceRebuild === true ? ', forced rebuild' : ''})`;
    return e.succeeded === true ? `${repair} finished (${asked}): ${String(e.summary)}` : `${repair} failed (${asked}): ${String(e.error)}`;
  }
  return String(e.line);
}

export class DaemonEvents {
  /** Each client's stream: its events, and what ends it at unmount. */
  private readonly clients = new Map<(e: CtlEvent) => void, () => void>();
  private logger: ChildProcess | null = null;
  private loggerFailed = false;
  private syslogDropped = 0;

  constructor(private readonly mountpoint: string, private readonly syslog = true) {}

  /** A client's stream: every event from now on, until the returned function is called; `ended` hears of an unmount. */
  subscribe(send: (e: CtlEvent) => void, ended: () => void): () => void {
    this.clients.set(send, ended);
    return () => { this.clients.delete(send); };
  }

  health(e: HealthEvent): void {
    const line = describeHealthEvent(e);
    this.publish({ ...healthEventJson(e), line }, e.state === 'sick' ? LOG_WARNING : LOG_NOTICE, line);
  }

  repair(e: { phase: RepairEvent['phase']; [field: string]: unknown }): void {
    const ev: RepairEvent = { event: 'repair', at: new Date().toISOString(), ...e };
    this.publish(ev, ev.phase === 'finished' && ev.succeeded !== true ? LOG_WARNING : LOG_NOTICE, eventLine(ev));
  }

  private publish(e: CtlEvent, priority: number, line: string): void {
    for (const send of this.clients.keys()) send(e);
    if (this.syslog) this.toSyslog(priority, `${this.mountpoint}: ${line}`);
  }

  private toSyslog(priority: number, line: string): void {
    if (this.loggerFailed) return;
    if (this.logger === null) {
      const child = spawn('logger', ['-t', 'rmapfs', `--id=${process.pid}`, '--prio-prefix'], { stdio: ['pipe', 'ignore', 'ignore'] });
      child.on('error', (err) => {
        this.loggerFailed = true;
        log('syslog: logger(1) failed, health events go to `rmapfs events` only: %s', err.message);
      });
      child.on('exit', () => { this.logger = null; });
      child.stdin?.on('error', () => undefined);
      // It must not keep the daemon alive at unmount.
      child.unref();
      (child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
      this.logger = child;
    }
    const stdin = this.logger.stdin;
    if (stdin === null || stdin.destroyed) return;
    if (stdin.writableLength > SYSLOG_BACKLOG) {
      if (this.syslogDropped++ === 0) log('syslog: logger(1) is not keeping up, dropping events');
      return;
    }
    stdin.write(`<${LOG_DAEMON | priority}>${line.replace(/\n/g, ' ')}\n`);
  }

  /** Unmount: every client's stream ends; logger(1) gets end of input and exits. */
  close(): void {
    const ended = [...this.clients.values()];
    this.clients.clear();
    for (const end of ended) end();
    this.logger?.stdin?.end();
    this.logger = null;
  }
}
