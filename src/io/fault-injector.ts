/**
 * Device fault injection, for tests: fails chosen reads, writes or flushes
 * with EIO, as a failing disk would. Rules (joined with '+'):
 *
 *   read:B1-B2    reads touching blocks B1..B2 (4 KiB filesystem blocks) fail
 *   write:B1-B2   writes touching those blocks fail
 *   write@N       the N-th write from now on fails, and every one after it
 *   write@N*M     M writes fail, from the N-th on (then the device recovers)
 *   read@N, read@N*M, sync@N, sync@N*M   the same for reads and flushes
 *
 * e.g. `write:2000-2100+sync@3`. A failed write leaves the device unchanged
 * (the simplest failing disk; a torn write is the write log's business).
 */
import createDebug from 'debug';
import { RmapfsError } from '../errors';
import type { DeviceInterposer } from './device';

const log = createDebug('rmapfs:faults');

type IoKind = 'read' | 'write' | 'sync';

interface RangeRule {
  kind: IoKind;
  first: number;
  last: number;
}

interface CountRule {
  kind: IoKind;
  /** Fails I/O number `from` (1-based, counted from when the rule was set) ... */
  from: number;
  /** ... and this many in all (Infinity: for good). */
  count: number;
}

const BLOCK = 4096;

export class FaultInjector implements DeviceInterposer {
  private ranges: RangeRule[] = [];
  private counts: CountRule[] = [];
  private readonly seen: Record<IoKind, number> = { read: 0, write: 0, sync: 0 };
  /** I/Os failed so far. */
  injected = 0;

  constructor(spec = '') {
    this.set(spec);
  }

  /** Replaces the rules ('' or 'off': none). Counting starts again from now. */
  set(spec: string): void {
    const ranges: RangeRule[] = [];
    const counts: CountRule[] = [];
    const text = spec.trim();
    if (text !== '' && text !== 'off') {
      for (const rule of text.split('+')) {
        const r = /^(read|write|sync):(\d+)-(\d+)$/.exec(rule);
        const c = /^(read|write|sync)@(\d+)(?:\*(\d+))?$/.exec(rule);
        if (r !== null && r[1] !== 'sync' && Number(r[2]) <= Number(r[3])) {
          ranges.push({ kind: r[1] as IoKind, first: Number(r[2]), last: Number(r[3]) });
        } else if (c !== null && Number(c[2]) >= 1) {
          counts.push({ kind: c[1] as IoKind, from: Number(c[2]), count: c[3] === undefined ? Infinity : Number(c[3]) });
        } else {
          throw new RmapfsError('EINVAL', `bad fault rule '${rule}' (want read|write:FIRST-LAST or read|write|sync@N[*COUNT])`);
        }
      }
    }
    this.ranges = ranges;
    this.counts = counts;
    this.seen.read = 0;
    this.seen.write = 0;
    this.seen.sync = 0;
    log('rules: %s', text === '' ? 'none' : text);
  }

  private check(kind: IoKind, pos: number, length: number): void {
    const n = ++this.seen[kind];
    let hit = this.counts.some((c) => c.kind === kind && n >= c.from && n < c.from + c.count);
    if (!hit && kind !== 'sync') {
      const first = Math.floor(pos / BLOCK);
      const last = Math.floor((pos + Math.max(1, length) - 1) / BLOCK);
      hit = this.ranges.some((r) => r.kind === kind && r.first <= last && first <= r.last);
    }
    if (hit) {
      this.injected++;
      log('injected EIO: %s #%d at byte %d (+%d)', kind, n, pos, length);
      throw new RmapfsError('EIO', kind === 'sync' ? 'injected fault: flush failed'
        : `injected fault: ${kind} of ${length} bytes at block ${Math.floor(pos / BLOCK)} failed`);
    }
  }

  beforeRead(pos: number, length: number): void {
    this.check('read', pos, length);
  }

  beforeWrite(pos: number, length: number): void {
    this.check('write', pos, length);
  }

  beforeSync(): void {
    this.check('sync', 0, 0);
  }
}
