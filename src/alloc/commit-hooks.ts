/**
 * Live hooks told of a transaction's changes once it commits: the seam
 * online repair uses to keep what it collects current while foreground
 * operations go on (the allocator's rmap updates, the inode allocator's
 * inode and chunk updates). Changes noted while a transaction runs wait
 * here; the transaction runner delivers them in order when it commits and
 * drops them when it aborts (they never happened).
 *
 * A hook that throws is unregistered and its owner told (`onFailure`): the
 * owner's copy missed a change, so whatever it was building must be
 * abandoned -- as XFS aborts the scan whose live hook failed. The user's
 * operation, already committed, never fails for it.
 */
import createDebug from 'debug';

const log = createDebug('rmapfs:alloc');

/** Told that the hook threw (and was unregistered): the owner's view is no longer complete. */
export type HookFailure = (error: unknown) => void;

export class CommitHooks<Update> {
  /** Each live hook with what to tell its owner when it fails. */
  private readonly hooks = new Map<(update: Update) => void, HookFailure>();
  private pending: Update[] = [];

  /** `what`: the kind of update, for the log. */
  constructor(private readonly what: string) {}

  /** Registers a hook; should it ever throw, it is unregistered and `onFailure` hears the error. */
  add(hook: (update: Update) => void, onFailure: HookFailure): void {
    this.hooks.set(hook, onFailure);
  }

  remove(hook: (update: Update) => void): void {
    this.hooks.delete(hook);
  }

  /** Whether any hook listens (callers skip building an update nobody would hear). */
  get listening(): boolean {
    return this.hooks.size > 0;
  }

  /** A change made by the running transaction (kept only while someone listens). */
  note(update: Update): void {
    if (this.hooks.size > 0) this.pending.push(update);
  }

  /** The transaction committed: tell the hooks what it changed, in order. */
  deliver(): void {
    const updates = this.pending;
    this.pending = [];
    if (this.hooks.size === 0) return;
    for (const u of updates) {
      for (const [hook, onFailure] of this.hooks) {
        try {
          hook(u);
        } catch (e) {
          // Never silently: a hook that missed this update would let its owner commit a stale copy.
          this.hooks.delete(hook);
          log('%s hook failed and was removed: %s', this.what, e instanceof Error ? e.message : String(e));
          onFailure(e);
        }
      }
    }
  }

  /** The transaction aborted: its changes never happened. */
  drop(): void {
    this.pending = [];
  }
}
