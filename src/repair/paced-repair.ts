/** What every paced repair of one AG (or one file) takes and shares: options, the hook failure, the pause between slices. */
import { RmapfsError } from '../errors';
import type { Pacer, PacerOptions } from '../io/pacer';

export interface PacedRepairOptions extends PacerOptions {
  /** Checked between slices: true stops the repair before its commit (ECANCELED). */
  cancelled?: () => boolean;
  /** Run between two slices of the collection (tests change the filesystem there). */
  betweenSlices?: () => Promise<void> | void;
}

/**
 * The failure of a collection's live hook (CommitHooks removed it: what it
 * collected missed a change), kept until the collection next looks: then
 * the repair stops with the old structure in place.
 */
export class HookFailure {
  private error: unknown = null;

  /** `what`: the repair ("repair of AG 2"); `kept`: what stays ("the old structure is kept"). */
  constructor(private readonly what: string, private readonly kept: string) {}

  /** The hook's onFailure: the first failure is the one reported. */
  readonly note = (e: unknown): void => { this.error ??= e; };

  get failed(): boolean {
    return this.error !== null;
  }

  throwIfFailed(): void {
    if (this.error === null) return;
    const why = this.error instanceof Error ? this.error.message : String(this.error);
    throw new RmapfsError('EIO', `${this.what}: the live update hook failed: ${why}; ${this.kept}`);
  }
}

/**
 * Between two slices of a collection: the hook's failure looked at, the
 * event loop served (FUSE requests), the test's change made, the failure
 * looked at again, and a cancellation honoured -- all before the commit.
 */
export async function pauseBetweenSlices(pacer: Pacer, options: PacedRepairOptions, hook: HookFailure, what: string): Promise<void> {
  hook.throwIfFailed();
  await pacer.pause();
  await options.betweenSlices?.();
  hook.throwIfFailed();
  if (options.cancelled?.()) throw new RmapfsError('ECANCELED', `${what} cancelled before its commit`);
}
