/**
 * Pacing for background work that shares the daemon's one JS thread with
 * FUSE requests (online scrub and repair): the work runs in slices, and a
 * slice ends when its time budget is spent -- or at once when a foreground
 * request is waiting, so an application's I/O waits for at most one small
 * unit of background work, not a whole slice.
 *
 * The work loop calls `due()` after each unit (cheap: a clock read, and the
 * foreground probe at most every `probeUs`), and `pause()` when it says so.
 */
import { setImmediate as yieldToEventLoop } from 'timers/promises';

export interface PacerOptions {
  /**
   * Longest slice, in milliseconds (default 2). Infinity: slices end only by maxUnits or a waiting
   * foreground -- with neither (an unmounted filesystem: nothing else to serve), no clock is read at all.
   */
  sliceMs?: number;
  /** At most this many units per slice (tests use small numbers to force many slices). */
  maxUnits?: number;
  /** True while a foreground request waits to be served (the FUSE channel is readable). */
  foregroundWaiting?: () => boolean;
  /** How often to ask foregroundWaiting, in microseconds of work (default 50). */
  probeUs?: number;
}

export class Pacer {
  /** null: no time limit (sliceMs Infinity). */
  private readonly sliceNs: bigint | null;
  private readonly probeNs: bigint;
  private readonly maxUnits: number;
  private readonly waiting: (() => boolean) | null;
  private sliceStart = 0n;
  private lastProbe = 0n;
  private units = 0;
  /** due() said so: the slice is over until pause(). */
  private over = false;
  /** Slices ended so far. */
  slices = 0;
  /** Slices ended early because foreground work was waiting. */
  yieldsToForeground = 0;

  constructor(options: PacerOptions = {}) {
    const sliceMs = options.sliceMs ?? 2;
    this.sliceNs = sliceMs === Infinity ? null : BigInt(Math.round(sliceMs * 1e6));
    this.probeNs = BigInt(Math.round((options.probeUs ?? 50) * 1e3));
    this.maxUnits = options.maxUnits ?? Infinity;
    this.waiting = options.foregroundWaiting ?? null;
    this.start();
  }

  private start(): void {
    this.over = false;
    this.sliceStart = process.hrtime.bigint();
    this.lastProbe = this.sliceStart;
    this.units = 0;
  }

  /**
   * Counts one unit of work done; true when the slice should end now -- and
   * from then on until pause(), so a caller that asks again on its way out
   * (a nested work loop, say) cannot miss the answer: the foreground probe is
   * rate-limited and would not repeat it.
   */
  due(): boolean {
    if (this.over) return true;
    if (++this.units >= this.maxUnits) return (this.over = true);
    if (this.sliceNs === null && this.waiting === null) return false;
    const now = process.hrtime.bigint();
    if (this.sliceNs !== null && now - this.sliceStart >= this.sliceNs) return (this.over = true);
    if (this.waiting !== null && now - this.lastProbe >= this.probeNs) {
      this.lastProbe = now;
      if (this.waiting()) {
        this.yieldsToForeground++;
        return (this.over = true);
      }
    }
    return false;
  }

  /** Ends the slice: the event loop serves what waits, then the next slice starts. */
  async pause(): Promise<void> {
    this.slices++;
    await yieldToEventLoop();
    this.start();
  }
}
